"""The sparse-LENS benchmark's script on a tiny model and tiny tasks: every level and every per-position k
measured, pruning keeps at most N dimensions, a per-position row is the model saved with that k, and the
unpruned sparse row scores exactly as the exact dense one.

Speed is never asserted; this keeps the script from breaking unnoticed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tiny_models import WORDS

BENCHMARK = "bench_sparse"  # the script under test, the `bench` fixture


@pytest.fixture(scope="module")
def report(bench, retrieval_task, tiny_lens: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("bench-sparse")
    retrieval_task(root, "SciFact", 60, 6, {i: 7 * i + 2 for i in range(6)})  # the task this script reads
    data = root / "data"
    sts = data / "sts" / "TinySTS"
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
    banking = data / "classification" / "Banking77Classification"
    banking.mkdir(parents=True)
    for split, offset in (("train", 0), ("test", 5)):
        examples = [
            {"text": f"my {WORDS[i % 11]} {word} number {i + offset}", "label": word}
            for word in ("card", "transfer", "refund")
            for i in range(10)
        ]
        (banking / f"{split}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    output = root / "out"
    argv = ["--data", str(data), "--output", str(output), "--model", f"tiny={tiny_lens}"]
    rows = bench.main([*argv, "--max-docs", "50", "--levels", "8", "4", "--position-top-k", "1", "3"])
    return rows, output


def test_every_level_and_every_per_position_k_is_measured(report):
    rows, output = report
    assert [row["config"] for row in rows] == [
        "dense float32, exact",
        "sparse, all",
        "sparse, top 8",
        "sparse, top 4",
        "sparse, per-position top 1",
        "sparse, per-position top 3",
    ]
    assert [row["position_top_k"] for row in rows] == [None, None, None, None, 1, 3]
    for row in rows[2:4]:  # whole-vector top N: documents and queries keep at most N dimensions
        n = int(row["config"].rsplit(" ", 1)[1])
        assert row["doc_active_dims"] <= row["doc_active_dims_p90"] <= n
        assert row["query_active_dims_p90"] <= n
    assert rows[1]["doc_active_dims"] <= 16 and rows[0]["doc_active_dims"] == 16
    # per position: one cluster each at k = 1, so fewer than with k = 3, and fewer than with all of them
    assert rows[4]["doc_active_dims"] < rows[5]["doc_active_dims"] <= rows[1]["doc_active_dims"]
    assert rows[4]["query_active_dims"] < rows[1]["query_active_dims"]
    for row in rows:
        assert "bytes_per_doc" in row and set(row["sts"]) == {"TinySTS"}
        assert set(row["classification"]) == {"Banking77Classification"}
        assert 0 <= row["classification"]["Banking77Classification"] <= 100
    assert json.loads((output / "sparse.json").read_text()) == rows
    table = (output / "sparse.md").read_text()
    assert "| tiny | sparse, per-position top 3 |" in table and "Banking77Classification |" in table


def test_a_per_position_row_scores_as_the_model_saved_with_that_k(report, tiny_lens: Path, tmp_path: Path):
    """The k set on the loaded model is the k a saved folder would carry: STS of the k = 3 row equals the
    model's own after set-pooling, through the same script."""
    import shutil

    from lens_embed.models.build import set_position_top_k

    rows, output = report
    saved = Path(shutil.copytree(tiny_lens, tmp_path / "k3"))
    set_position_top_k(saved, 3)
    bench = sys.modules["bench_sparse"]
    data = output.parent / "data"
    argv = ["--data", str(data), "--output", str(tmp_path / "out"), "--model", f"k3={saved}"]
    again = bench.main([*argv, "--max-docs", "50", "--levels", "--classification-tasks"])
    assert again[1]["config"] == "sparse, all" and again[1]["position_top_k"] == 3
    # nDCG is left out: the tiny model embeds many documents alike, and which of the documents tied at the
    # 10th place the engine returns changes from run to run (recall counts every tie with the 10th as a hit)
    for key in ("doc_active_dims", "doc_active_dims_p90", "query_active_dims", "recall_at_10", "sts_average"):
        assert again[1][key] == rows[5][key], key


def test_all_active_dimensions_find_the_exact_top_10_and_score_sts_as_the_dense_vectors(report):
    rows, _ = report
    dense, sparse = rows[0], rows[1]
    assert dense["recall_at_10"] == sparse["recall_at_10"] == 1.0  # ties with the exact 10th count as hits
    assert sparse["sts_average"] == dense["sts_average"]
