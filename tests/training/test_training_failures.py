"""Loud failures in training and mining: damaged data, foreign or reused outputs, partial
checkpoints and runs that could not train anything never pass silently."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from training_toy import StopAt, retrieval_rows, toy_config, write_jsonl

from lens_embed.cli import main
from lens_embed.training.config import TrainConfig
from lens_embed.training.data import TrainingDataError, read_training_rows
from lens_embed.training.trainer import (
    RECORD_FILENAME,
    build_trainer,
    prepare_output,
    resume_checkpoint,
    train,
)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_teacher_scores_are_rejected_naming_the_line(tmp_path: Path, literal: str) -> None:
    lines = [json.dumps({**row, "pos_scores": [1.0], "neg_scores": [0.5, 0.2]}) for row in retrieval_rows()[:4]]
    lines[2] = lines[2].replace('"neg_scores": [0.5', f'"neg_scores": [{literal}')
    path = tmp_path / "scored.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TrainingDataError, match=f"{path}:3: field 'neg_scores' holds a non-finite score"):
        read_training_rows(path)


@pytest.mark.parametrize("stem", ["train", "eval", "msmarco.v2.en"])
def test_any_data_file_name_trains(tiny_lens: Path, tmp_path: Path, stem: str) -> None:
    data = write_jsonl(tmp_path / f"{stem}.jsonl", retrieval_rows())
    trainer = build_trainer(toy_config(tiny_lens, [data], tmp_path / "out", max_steps=1))
    (key,) = trainer.loss
    assert key == stem.replace(".", "_") or key.startswith(stem)
    trainer.train()


def test_an_output_holding_another_run_is_refused(tmp_path: Path) -> None:
    first = TrainConfig(model="base", data=["a.jsonl"], output=str(tmp_path / "out"))
    prepare_output(first)
    prepare_output(first)  # the same run: resumable
    marker = tmp_path / "out" / "checkpoints" / "checkpoint-1" / "adapter_model.safetensors"
    marker.parent.mkdir(parents=True)
    marker.write_text("trained")
    changed = TrainConfig(model="base", data=["b.jsonl"], output=str(tmp_path / "out"), learning_rate=3e-4)
    with pytest.raises(FileExistsError, match="different data, learning_rate"):
        prepare_output(changed)
    changed.overwrite = True
    prepare_output(changed)  # --overwrite: start over in a cleared folder
    assert not marker.exists()
    assert json.loads((tmp_path / "out" / RECORD_FILENAME).read_text())["learning_rate"] == 3e-4


def test_a_run_that_never_trained_may_be_replaced(tmp_path: Path) -> None:
    """A failed start (bad data, batch too large) left only its record: fixing the command needs no --overwrite."""
    prepare_output(TrainConfig(model="base", data=["a.jsonl"], output=str(tmp_path / "out"), batch_size=64))
    prepare_output(TrainConfig(model="base", data=["a.jsonl"], output=str(tmp_path / "out"), batch_size=8))
    assert json.loads((tmp_path / "out" / RECORD_FILENAME).read_text())["batch_size"] == 8


def test_a_folder_with_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds no lens-embed training run"):
        prepare_output(TrainConfig(model="base", data=["a.jsonl"], output=str(tmp_path / "out"), overwrite=True))
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("where", ["same", "inside"])
def test_output_equal_to_or_inside_the_model_is_refused(tiny_lens: Path, tmp_path: Path, where: str) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_lens, model)
    before = sorted(path.name for path in model.iterdir())
    output = model if where == "same" else model / "trained"
    data = write_jsonl(tmp_path / "pairs.jsonl", retrieval_rows())
    with pytest.raises(ValueError, match=r"is \(or overlaps\) the model"):
        train(toy_config(model, [data], output, max_steps=1))
    assert sorted(path.name for path in model.iterdir()) == before


def test_resume_skips_a_checkpoint_written_only_in_part(tiny_lens: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", retrieval_rows())
    config = toy_config(tiny_lens, [data], tmp_path / "out", max_steps=3)
    train(config, callbacks=[StopAt(1)])
    partial = config.checkpoint_dir / "checkpoint-2"
    partial.mkdir()
    shutil.copy(config.checkpoint_dir / "checkpoint-1" / "adapter_model.safetensors", partial)  # crashed mid-save
    assert resume_checkpoint(config) == str(config.checkpoint_dir / "checkpoint-1")
    train(config)
    state = json.loads((config.checkpoint_dir / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3


def test_a_run_where_no_task_fills_a_batch_fails(tiny_lens: Path, tmp_path: Path, capsys) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", retrieval_rows())  # 12 rows < 32 per batch
    code = main(["train", "--model", str(tiny_lens), "--data", str(data), "--output", str(tmp_path / "out")])
    assert code != 0
    assert "no task has enough rows for one global batch (pairs: 12 < 32)" in capsys.readouterr().err
    assert not (tmp_path / "out" / "modules.json").exists()


def test_mine_negatives_refuses_an_existing_output_without_overwrite(tmp_path: Path, capsys) -> None:
    source = write_jsonl(tmp_path / "pairs.jsonl", retrieval_rows(with_negatives=False))
    target = tmp_path / "mined.jsonl"
    target.write_text("keep me\n")
    command = ["mine-negatives", "--data", str(source), "--output", str(target), "--method", "bm25", "--num-negatives", "2"]
    assert main(command) != 0
    assert "output exists" in capsys.readouterr().err and target.read_text() == "keep me\n"
    assert main([*command, "--overwrite"]) == 0
    assert all(len(json.loads(line)["neg"]) == 2 for line in target.read_text().splitlines())
