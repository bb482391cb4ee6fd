"""The engine benchmark's script on a tiny model and task: every configuration measured, exact ones exact.

Speed is never asserted (that is `make bench-engine`'s job); this keeps the script from breaking unnoticed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiny_models import WORDS

BENCHMARK = "bench_engine"  # the script under test, the `bench` fixture


@pytest.fixture(scope="module")
def report(bench, retrieval_task, tiny_lens: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("bench-engine")
    task = retrieval_task(
        root,
        "Tiny",
        300,
        11,
        {i: 20 * i + 5 for i in range(10)},
        text=lambda i: f"{WORDS[(3 * i) % 11]} near {WORDS[(7 * i) % 11]} {i}",
    )
    output = root / "out"
    rows = bench.main([*task, "--model", str(tiny_lens), "--output", str(output), "--max-docs", "250"])
    return rows, output


def test_every_configuration_is_measured(bench, report):
    rows, output = report
    assert [row["config"] for row in rows] == [label for label, _, _ in bench.CONFIGS]
    assert json.loads((output / "engine.json").read_text()) == rows
    assert all(0 <= row["ndcg_at_10"] <= 1 and row["search_ms_per_query"] > 0 for row in rows)
    assert not list(output.glob("bench-engine-*"))  # the collections are gone


def test_exact_configurations_find_the_exact_top_10_and_float16_halves_memory(report):
    rows = {row["config"]: row for row in report[0]}
    assert rows["dense float32, exact"]["recall_at_10"] == 1.0
    # K = 16: no document has more active dimensions than any pruning level keeps
    assert all(rows[label]["recall_at_10"] == 1.0 for label in rows if label.startswith("sparse"))
    assert rows["dense float16, exact"]["bytes_per_doc"] < rows["dense float32, exact"]["bytes_per_doc"]


def test_max_docs_keeps_every_judged_document_first(bench, report):
    documents, queries, _ = bench.load_task(Path(report[1]).parent / "data", "Tiny", 12)
    assert list(documents) == [f"d{20 * i + 5}" for i in range(10)] + ["d0", "d1"] and len(queries) == 10
