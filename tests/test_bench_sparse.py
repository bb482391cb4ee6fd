"""The sparse-LENS benchmark's script on a tiny model and tiny tasks: every level measured, pruning keeps at
most N dimensions, and the unpruned sparse row scores exactly as the exact dense one.

Speed is never asserted; this keeps the script from breaking unnoticed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

WORDS = ["fox", "dog", "bank", "guitar", "river", "market", "storm", "garden", "violin", "harbour", "zebra"]


@pytest.fixture(scope="module")
def report(benchmark_script, tiny_lens: Path, tmp_path_factory: pytest.TempPathFactory):
    bench = benchmark_script("bench_sparse")
    root = tmp_path_factory.mktemp("bench-sparse")
    task = root / "data" / "retrieval" / "SciFact"
    (task / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": WORDS[i % 11], "text": f"{WORDS[(3 * i) % 11]} {i}"} for i in range(60)]
    (task / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = [{"_id": f"q{i}", "text": f"a {WORDS[i]} by the {WORDS[(i + 4) % 11]}"} for i in range(6)]
    (task / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (task / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{7 * i + 2}\t1\n" for i in range(6))
    )
    sts = root / "data" / "sts" / "TinySTS"
    sts.mkdir(parents=True)
    pairs = [
        {
            "sentence1": f"the {WORDS[i]} and the {WORDS[j]}",
            "sentence2": f"a {WORDS[j]}",
            "score": (i * j) % 5,
        }
        for i in range(5)
        for j in range(5)
    ]
    (sts / "test.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    output = root / "out"
    argv = ["--data", str(root / "data"), "--output", str(output), "--model", f"tiny={tiny_lens}"]
    rows = bench.main([*argv, "--max-docs", "50", "--levels", "8", "4"])
    return rows, output


def test_every_level_is_measured_and_pruning_keeps_at_most_n_dimensions(report):
    rows, output = report
    assert [row["config"] for row in rows] == [
        "dense float32, exact",
        "sparse, all",
        "sparse, top 8",
        "sparse, top 4",
    ]
    assert rows[2]["doc_active_dims"] <= 8 and rows[3]["doc_active_dims"] <= 4
    assert rows[1]["doc_active_dims"] <= 16 and rows[0]["doc_active_dims"] == 16
    assert all("bytes_per_doc" in row and set(row["sts"]) == {"TinySTS"} for row in rows)
    assert json.loads((output / "sparse.json").read_text()) == rows
    assert "| tiny | sparse, top 4 |" in (output / "sparse.md").read_text()


def test_all_active_dimensions_find_the_exact_top_10_and_score_sts_as_the_dense_vectors(report):
    rows, _ = report
    dense, sparse = rows[0], rows[1]
    assert dense["recall_at_10"] == sparse["recall_at_10"] == 1.0  # ties with the exact 10th count as hits
    assert sparse["sts_average"] == dense["sts_average"]
