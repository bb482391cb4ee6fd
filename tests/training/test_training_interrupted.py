"""``lens-embed train`` killed for real (SIGKILL) while it saves a checkpoint's adapter, the final
adapter or the merged model: the output shows no part of a model, and the rerun of the same command
gives the uninterrupted run's files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from interrupted import contents, has_file, kill_when, leftovers, run_cli
from training_toy import retrieval_rows, write_jsonl

from lens_embed.training.config import CHECKPOINT_DIRNAME, FINAL_SAVE_DIRNAME
from lens_embed.training.negatives import MINED_DIRNAME
from lens_embed.training.trainer import RECORD_FILENAME

pytestmark = pytest.mark.slow  # each case trains twice through the command-line tool

# Outputs compared: everything but the trainer's checkpoints (their logs carry timings).
RESULTS = r"^checkpoints/"
# All a run folder may hold until its model is in place.
RUN_ENTRIES = {RECORD_FILENAME, CHECKPOINT_DIRNAME, MINED_DIRNAME, FINAL_SAVE_DIRNAME}


def _train(tiny_lens: Path, folder: Path) -> list:
    """The run, with paths relative to ``folder`` so every run records the same configuration."""
    write_jsonl(folder / "data" / "pairs.jsonl", retrieval_rows())
    return [
        "train",
        "--model",
        tiny_lens,
        "--data",
        "data/pairs.jsonl",
        "--output",
        "out",
        "--max-steps",
        "4",
        "--save-steps",
        "2",
        "--batch-size",
        "4",
        "--group-size",
        "3",
        "--lr",
        "1e-3",
        "--warmup-steps",
        "0",
        "--seed",
        "7",
    ]


@pytest.fixture(scope="module")
def trained(tiny_lens: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The files of an uninterrupted run."""
    folder = tmp_path_factory.mktemp("whole-run")
    run_cli(_train(tiny_lens, folder), cwd=folder)
    return contents(folder / "out", exclude=RESULTS)


KILL_POINTS = {
    "checkpoint adapter": lambda out: has_file(out / "checkpoints" / "checkpoint-*", "adapter_*"),
    "final adapter": lambda out: has_file(out / FINAL_SAVE_DIRNAME, "adapter_*"),
    # the merged model's first weights, written in the staging folder beside the output
    "merged model": lambda out: has_file(out.parent / f".{out.name}.staging-*", "*.safetensors"),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_run_killed_while_saving_reruns_to_the_uninterrupted_files(tiny_lens, trained, tmp_path, point):
    command = _train(tiny_lens, tmp_path)
    kill_when(command, lambda: KILL_POINTS[point](tmp_path / "out"), cwd=tmp_path)
    assert set(os.listdir(tmp_path / "out")) <= RUN_ENTRIES  # no part of a model is in place
    run_cli(command, cwd=tmp_path)
    assert contents(tmp_path / "out", exclude=RESULTS) == trained
    assert leftovers(tmp_path) == []  # the killed run's staging folder is gone
