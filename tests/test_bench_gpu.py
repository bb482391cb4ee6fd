"""The GPU benchmark's script, run on the CPU with tiny shapes: the three pipelines agree, the report is
whole.

Speed is never asserted here (that is `make bench-gpu`'s job on a GPU); this keeps the script the
GPU session will run once from breaking unnoticed.
"""

from __future__ import annotations

import pytest

BENCHMARK = "bench_gpu"  # the script under test, the `bench` fixture


@pytest.fixture(scope="module")
def report(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-gpu") / "report.json"
    return bench.main(
        [
            "--scale",
            "tiny",
            "--dtype",
            "float32",
            "--texts",
            "9",
            "--max-tokens",
            "256",
            "--device",
            "cpu",
            "--json",
            str(out),
        ]
    )


def test_three_pipelines_embed_the_same_texts_alike(report):
    assert [row["pipeline"] for row in report["pipelines"]] == ["authors", "lens-embed", "lens-embed-best"]
    assert len(report["max_abs_diff"]) == 3
    assert all(diff <= 1e-5 for diff in report["max_abs_diff"].values()), report["max_abs_diff"]


def test_report_has_every_measurement(report):
    for row in report["pipelines"]:
        for field in (
            "tokens_per_s",
            "queries_tokens_per_s",
            "passages_tokens_per_s",
            "documents_tokens_per_s",
            "mfu",
            "documents_mfu",
            "peak_gpu_memory_gib",
            "time_to_first_embedding_s",
        ):
            assert field in row
        assert row["tokens_per_s"] > 0 and row["time_to_first_embedding_s"] > 0
    assert report["tokens"]["documents"] == 3 * 64  # max-length documents: 64 tokens each in tiny mode
    assert report["device"] == "cpu"


def test_mfu_is_computed_when_a_peak_is_given(bench):
    args = bench.parse_args(["--scale", "tiny", "--peak-tflops", "1"])
    assert bench.device_peak("cpu", args.peak_tflops) == ("cpu", 1.0)


def test_model_flops_follow_the_layer_shapes(bench):
    shape = bench.SHAPES["7b"]
    per_token = bench.model_flops([1], shape, layers=32, clusters=8000)
    # ~2 x 7.0e9 non-embedding parameters (Mistral-7B: 7.24e9 with embeddings) plus the 8000-way head
    assert 1.3e10 < per_token < 1.5e10
    assert bench.model_flops([2], shape, 32, 8000) > 2 * per_token  # attention grows with length squared


def test_markdown_table_names_the_device_and_peak(bench, report):
    table = bench.markdown(report)
    assert "device: cpu" in table and "| lens-embed-best |" in table
