"""The GPU training check's script, run on the CPU with tiny shapes: the report is whole, the loss goes down.

Speed is never asserted here (that is `make train-check`'s job on a GPU); this keeps the script the
GPU session will run once from breaking unnoticed.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

BENCHMARK = "train_check"  # the script under test, the `bench` fixture


@pytest.fixture(scope="module")
def report_file(bench, tmp_path_factory):
    # One thread: the tiny model gains nothing from more, and on a busy 2-core box the threads'
    # spinning makes each small matmul ~50x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("train-check") / "report.json"
    try:
        bench.main(["--scale", "tiny", "--precision", "fp32", "--json", str(out)])
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def report(report_file):
    return json.loads(report_file.read_text(encoding="utf-8"))


def test_report_has_every_measurement(report):
    cuda = torch.cuda.is_available()
    assert report["device"] == (torch.cuda.get_device_name() if cuda else "cpu")
    assert report["scale"] == "tiny" and report["precision"] == "fp32" and report["lora"] is True
    assert report["shape"]["hidden_size"] == 32 and report["shape"]["clusters"] == 32
    assert report["gradient_checkpointing"] is cuda  # the trainer's default: on with a GPU only
    assert (report["steps"], report["batch_size"], report["group_size"]) == (12, 8, 4)
    assert report["texts_per_step"] == 8 * 5 and report["distinct_rows"] == 4 * 8
    # every text has at least BOS + one word + EOS, queries also their instruction
    assert report["tokens"] > report["steps"] * report["texts_per_step"] * 3
    assert report["train_seconds"] > 0 and report["tokens_per_s"] > 0
    assert report["tokens_per_s_after_first_step"] > 0
    if cuda:
        assert report["peak_gpu_memory_gib"] > 0
    else:
        assert report["peak_gpu_memory_gib"] is None


def test_the_loss_goes_down(report):
    assert len(report["losses"]) == report["steps"]
    assert all(math.isfinite(loss) for loss in report["losses"])
    assert report["first_losses"] == report["losses"][:5] and report["last_losses"] == report["losses"][-5:]
    assert report["loss_went_down"] is True
    # 32 candidates per query (ln 32 = 3.5 at chance); the rows repeat, so the model learns them
    assert report["last_loss_mean"] < 0.7 * report["first_loss_mean"]
    assert report["fixed_batch_loss_after"] < 0.5 * report["fixed_batch_loss_before"]


def test_loss_summary_never_overlaps_its_windows(bench):
    summary = bench.loss_summary([{"loss": 3.0}, {"loss": 2.0}, {"loss": 1.0}, {"train_runtime": 1.0}])
    assert (summary["first_losses"], summary["last_losses"], summary["loss_went_down"]) == (
        [3.0],
        [1.0],
        True,
    )
    with pytest.raises(RuntimeError, match="at least 2"):
        bench.loss_summary([{"loss": 1.0}])


def test_synthetic_positives_hold_their_query_words(bench):
    rows = bench.synthetic_rows(6, 3, (2, 4), (5, 9), seed=0)
    assert rows == bench.synthetic_rows(6, 3, (2, 4), (5, 9), seed=0)
    for row in rows:
        assert set(row["query"].split()) <= set(row["pos"][0].split())
        assert len(row["neg"]) == 2 and row["pos"][0] not in row["neg"]
        assert row["type"] == "retrieval" and row["prompt"]


def test_markdown_row_names_the_device(bench, report):
    table = bench.markdown(report)
    assert f"device: {report['device']}" in table and f"| 12 x 8 x 4 | {report['tokens']} |" in table
