"""Evaluation options: precision and attention, baselines (never twice), model names, one CLI entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lens_embed.commands import build_parser
from lens_embed.evaluation.encoders import MINILM_NAME, evaluation_dtype, load_encoder
from lens_embed.evaluation.model_runs import baseline_runs
from lens_embed.evaluation.offline import offline_tasks
from lens_embed.evaluation.results import PROTOCOL_FILE
from lens_embed.evaluation.runner import evaluate_runs

REPO = Path(__file__).resolve().parents[2]


def test_half_precision_by_default_on_cuda_only() -> None:
    assert evaluation_dtype(None, "cuda:0") == "float16"
    assert evaluation_dtype(None, "cpu") == "float32"
    assert evaluation_dtype("bfloat16", "cuda") == "bfloat16"


@pytest.mark.parametrize("verb", ["mteb", "offline", "airbench", "check-harness"])
def test_every_verb_takes_dtype_and_attention(verb: str) -> None:
    args = build_parser().parse_args(
        ["evaluate", verb, "--model", "m", "--dtype", "bfloat16", "--attn-implementation", "eager"]
    )
    assert (args.dtype, args.attn_implementation) == ("bfloat16", "eager")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", verb, "--model", "m", "--dtype", "float64"])


def test_baselines_choice_and_never_the_model_twice() -> None:
    assert [r.label for r in baseline_runs("all")] == [MINILM_NAME, "BM25 (bm25s)"]
    assert [r.label for r in baseline_runs("bm25")] == ["BM25 (bm25s)"]
    assert baseline_runs("none") == []
    assert [r.label for r in baseline_runs("all", exclude=MINILM_NAME)] == ["BM25 (bm25s)"]
    with pytest.raises(ValueError, match="baselines must be one of"):
        baseline_runs("dense")


def test_a_plain_sentence_transformers_folder_is_named_after_its_model(minilm_path: Path) -> None:
    encoder = load_encoder(minilm_path, device="cpu", dtype="bfloat16", attn_implementation="eager")
    assert encoder.mteb_model_meta.name == MINILM_NAME  # from its model card, not lens-embed/<folder>
    assert next(encoder.model.parameters()).dtype == torch.bfloat16
    assert encoder.protocol()["dtype"] == "bfloat16" and encoder.protocol()["attn_implementation"] == "eager"


def test_the_protocol_is_recorded_and_guards_the_results(
    tiny_lens: Path, small_data_dir: Path, tmp_path: Path
) -> None:
    from lens_embed.evaluation.model_runs import LoadOptions, model_run

    tasks = offline_tasks(small_data_dir, names=["SliceSTS16"])
    run = model_run(str(tiny_lens), LoadOptions(device="cpu"))
    evaluate_runs([run], tasks, tmp_path)
    [record] = list(tmp_path.rglob(PROTOCOL_FILE))
    protocol = json.loads(record.read_text())
    assert protocol["instructions"] == "authors" and protocol["dtype"] == "float32"
    bf16 = model_run(str(tiny_lens), LoadOptions(device="cpu", dtype="bfloat16"))
    with pytest.raises(ValueError, match="another protocol.*dtype: 'float32' there, 'bfloat16' now"):
        evaluate_runs([bf16], tasks, tmp_path)
    other = model_run(str(tiny_lens), LoadOptions(device="cpu", instructions="mteb"))
    evaluate_runs([other], tasks, tmp_path)  # an mteb experiment of its own, beside the default results
    assert len(list(tmp_path.rglob("experiments/instructions_mteb/SliceSTS16.json"))) == 1


def test_one_cli_entry_and_light_options() -> None:
    code = (
        "import sys; import lens_embed; before = set(sys.modules); "
        "import lens_embed.commands.evaluation_options; "
        "print(sorted(m for m in set(sys.modules) - before "
        "if m.split('.')[0] in ('mteb', 'torch', 'sentence_transformers')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's lens_embed, not an installed one
    usage = subprocess.run(
        [sys.executable, "eval/evaluate.py", "compare", str(REPO / "no-such-folder")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert usage.returncode == 2 and "lens-embed evaluate: error: results folder not found" in usage.stderr


def test_a_released_name_runs_in_the_leaderboards_folder(released: Path, tmp_path: Path, monkeypatch) -> None:
    """No experiment sub-folder for the default protocol: results land where the leaderboard reads them."""
    from lens_embed.evaluation.model_runs import LoadOptions, model_run
    from lens_embed.evaluation.runner import result_folder
    from lens_embed.evaluation.tasks import resolve_tasks
    from lens_embed.models import convert

    monkeypatch.setenv("LENS_EMBED_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(convert, "resolve_checkpoint", lambda name: released)  # no hub
    run = model_run("yibinlei/LENS-d8000", LoadOptions(device="cpu", dtype="float32"))
    meta = run.model.mteb_model_meta
    assert meta.name == "yibinlei/LENS-d8000" and meta.experiment_kwargs is None
    assert run.model.protocol()["truncation_keeps_eos"] is False
    folder = result_folder(tmp_path / "out", meta, resolve_tasks(["SciFact"])[0])
    assert folder == (tmp_path / "out" / "results" / "yibinlei__LENS-d8000" / meta.revision).resolve()
