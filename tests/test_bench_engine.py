"""The engine benchmark's script on a tiny model and task: every configuration measured, exact ones exact.

Speed is never asserted (that is `make bench-engine`'s job); this keeps the script from breaking unnoticed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

WORDS = ["fox", "dog", "bank", "guitar", "river", "market", "storm", "garden", "violin", "harbour", "zebra"]


@pytest.fixture(scope="module")
def bench(benchmark_script):
    return benchmark_script("bench_engine")


@pytest.fixture(scope="module")
def report(bench, tiny_lens: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("bench-engine")
    task = root / "data" / "retrieval" / "Tiny"
    (task / "qrels").mkdir(parents=True)
    docs = [
        {
            "_id": f"d{i}",
            "title": WORDS[i % 11],
            "text": f"{WORDS[(3 * i) % 11]} near {WORDS[(7 * i) % 11]} {i}",
        }
        for i in range(300)
    ]
    (task / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = [{"_id": f"q{i}", "text": f"a {WORDS[i]} by the {WORDS[(i + 4) % 11]}"} for i in range(11)]
    (task / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (task / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{20 * i + 5}\t1\n" for i in range(10))
    )
    output = root / "out"
    rows = bench.main(
        [
            "--data",
            str(root / "data"),
            "--task",
            "Tiny",
            "--model",
            str(tiny_lens),
            "--output",
            str(output),
            "--max-docs",
            "250",
        ]
    )
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
