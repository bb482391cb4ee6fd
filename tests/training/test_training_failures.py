"""Loud failures in training and mining: damaged data, foreign or reused outputs, partial
checkpoints and runs that could not train anything never pass silently."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from training_toy import StopAt, retrieval_rows, toy_config, write_jsonl

from lens_embed.commands import main
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
    lines = [
        json.dumps({**row, "pos_scores": [1.0], "neg_scores": [0.5, 0.2]}) for row in retrieval_rows()[:4]
    ]
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
    """A failed start (bad data, batch too large) left only its record: fixing the command needs no
    --overwrite."""
    prepare_output(TrainConfig(model="base", data=["a.jsonl"], output=str(tmp_path / "out"), batch_size=64))
    prepare_output(TrainConfig(model="base", data=["a.jsonl"], output=str(tmp_path / "out"), batch_size=8))
    assert json.loads((tmp_path / "out" / RECORD_FILENAME).read_text())["batch_size"] == 8


def test_a_folder_with_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds no lens-embed training run"):
        prepare_output(
            TrainConfig(model="base", data=["a.jsonl"], output=str(tmp_path / "out"), overwrite=True)
        )
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
    shutil.copy(
        config.checkpoint_dir / "checkpoint-1" / "adapter_model.safetensors", partial
    )  # crashed mid-save
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
    command = [
        "mine-negatives",
        "--data",
        str(source),
        "--output",
        str(target),
        "--method",
        "bm25",
        "--num-negatives",
        "2",
    ]
    assert main(command) != 0
    assert "output exists" in capsys.readouterr().err and target.read_text() == "keep me\n"
    assert main([*command, "--overwrite"]) == 0
    assert all(len(json.loads(line)["neg"]) == 2 for line in target.read_text().splitlines())


@pytest.mark.parametrize("cut", ["mid-line", "at-a-line-end"])
def test_a_damaged_mined_cache_is_mined_again_never_trained_on(
    tiny_lens: Path, tmp_path: Path, cut: str, caplog
) -> None:
    """A cache entry cut short (a full disk, a crash, an older version writing in place) is reported
    and replaced; training sees every row of the task either way."""
    data = write_jsonl(tmp_path / "pairs.jsonl", retrieval_rows(with_negatives=False))
    config = toy_config(tiny_lens, [data], tmp_path / "out", max_steps=1, mine="bm25")
    build_trainer(config)
    (cached,) = (tmp_path / "out" / "mined").glob("pairs.*.jsonl")
    complete = cached.read_bytes()
    lines = complete.splitlines(keepends=True)
    cached.write_bytes(b"".join(lines[:5]) + (lines[5][:20] if cut == "mid-line" else b""))
    trainer = build_trainer(config)
    assert "damaged or incomplete cache of mined negatives" in caplog.text and str(cached) in caplog.text
    assert trainer.train_dataset["pairs"].num_rows == len(retrieval_rows())
    assert cached.read_bytes() == complete  # mined again, the same way, and written whole
    assert [path.name for path in cached.parent.iterdir()] == [cached.name]


def test_a_cache_entry_of_other_rows_is_not_reused(tmp_path: Path) -> None:
    from lens_embed.training.data import load_tasks
    from lens_embed.training.negatives import cached_task, mine_task

    (task,) = load_tasks([write_jsonl(tmp_path / "pairs.jsonl", retrieval_rows(with_negatives=False))])
    mined = mine_task(task, count=2, method="bm25")
    entry = write_jsonl(tmp_path / "entry.jsonl", mined.rows)
    assert cached_task(entry, task).rows == mined.rows
    reordered = write_jsonl(tmp_path / "reordered.jsonl", mined.rows[1:] + mined.rows[:1])
    assert cached_task(reordered, task) is None
    unmined = write_jsonl(tmp_path / "unmined.jsonl", task.rows)
    assert cached_task(unmined, task) is None


def test_jsonl_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    from lens_embed.training.data import write_jsonl as write_rows

    target = write_rows(retrieval_rows()[:3], tmp_path / "rows.jsonl")
    before = target.read_bytes()

    def rows_then_a_full_disk():
        yield from retrieval_rows()[:2]
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_rows(rows_then_a_full_disk(), target)
    assert target.read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == ["rows.jsonl"]


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link", "folder"])
def test_mine_negatives_refuses_to_write_over_its_input(tmp_path: Path, capsys, how: str) -> None:
    source = write_jsonl(tmp_path / "data" / "pairs.jsonl", retrieval_rows(with_negatives=False))
    before = source.read_bytes()
    if how == "same path":
        data, output = source, source
    elif how == "symlink":
        data, output = source, tmp_path / "link.jsonl"
        output.symlink_to(source)
    elif how == "hard link":
        data, output = source, tmp_path / "link.jsonl"
        output.hardlink_to(source)
    else:
        data, output = source.parent, source.parent
    command = [
        "mine-negatives",
        "--data",
        str(data),
        "--output",
        str(output),
        "--method",
        "bm25",
        "--overwrite",
    ]
    assert main(command) == 2
    assert "is (or overlaps) the input file" in capsys.readouterr().err
    assert source.read_bytes() == before


def test_mining_zero_negatives_is_refused(tmp_path: Path) -> None:
    from lens_embed.training.negatives import mine_negatives

    source = write_jsonl(tmp_path / "pairs.jsonl", retrieval_rows(with_negatives=False))
    with pytest.raises(ValueError, match="negatives to mine must be an integer >= 1, got 0"):
        mine_negatives([source], tmp_path / "out.jsonl", method="bm25", num_negatives=0)
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("gradient_accumulation_steps", 0, "must be >= 1, got 0"),
        ("max_seq_length", 0, "must be >= 1, got 0"),
        ("distill_weight", -1.0, "must be a finite number >= 0.0, got -1.0"),
        ("group_size", 1, "must be >= 2, got 1"),
        ("temperature", 0.0, "must be a finite number > 0.0"),
        ("learning_rate", float("nan"), "must be a finite number > 0.0"),
        ("lora_dropout", 1.5, "must be a finite number >= 0.0 and <= 1.0"),
        ("batch_size", 2.5, "expected an integer"),
        ("precision", "fp8", "must be one of auto, fp16, bf16, fp32"),
    ],
)
def test_train_config_refuses_values_out_of_bounds_naming_the_field(field: str, value, message: str) -> None:
    with pytest.raises(ValueError, match=rf"TrainConfig {field}: {re.escape(message)}"):
        TrainConfig(model="m", data=["d.jsonl"], output="o", **{field: value})


def test_the_cli_bounds_are_the_config_bounds(capsys, tmp_path: Path, monkeypatch) -> None:
    """One declaration: --max-seq-length 0 fails at parse time with the same words as
    TrainConfig(max_seq_length=0)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "m", "--data", "d.jsonl", "--output", "o", "--max-seq-length", "0"])
    assert exit_info.value.code == 2
    assert "argument --max-seq-length: must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="TrainConfig max_seq_length: must be >= 1, got 0"):
        TrainConfig(model="m", data=["d.jsonl"], output="o", max_seq_length=0)


def test_a_run_recorded_before_the_max_seq_length_rename_still_resumes(tmp_path: Path) -> None:
    config = TrainConfig(model="base", data=["a.jsonl"], output=str(tmp_path / "out"), max_seq_length=64)
    prepare_output(config)
    record = tmp_path / "out" / RECORD_FILENAME
    recorded = json.loads(record.read_text())
    recorded["max_length"] = recorded.pop("max_seq_length")  # as lens-embed recorded it before the rename
    record.write_text(json.dumps(recorded))
    (config.checkpoint_dir / "checkpoint-1").mkdir(parents=True)  # it trained: another run would be refused
    prepare_output(config)
    with pytest.raises(FileExistsError, match="different max_seq_length"):
        prepare_output(
            TrainConfig(model="base", data=["a.jsonl"], output=str(tmp_path / "out"), max_seq_length=32)
        )


def test_the_old_option_names_are_refused_naming_the_new_ones(capsys, tmp_path: Path, monkeypatch) -> None:
    from lens_embed.training.config import config_from_dict

    with pytest.raises(ValueError, match=r"unknown training option\(s\): max_length \(now max_seq_length\)"):
        config_from_dict({"model": "m", "data": ["d.jsonl"], "output": "o", "max_length": 64})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "m", "--data", "d.jsonl", "--output", "o", "--max-length", "64"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --max-length 64" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_output_that_is_a_mount_point_is_refused_before_training(tmp_path: Path, monkeypatch) -> None:
    """The model is put in place by renaming the run folder, which a mount point cannot be: say so
    before any work rather than after training."""
    output = tmp_path / "volume"
    output.mkdir()
    monkeypatch.setattr("os.path.ismount", lambda path: Path(path) == output.resolve())
    with pytest.raises(
        ValueError, match=rf"--output {re.escape(str(output))} is a mount point.*use a folder inside it"
    ):
        prepare_output(TrainConfig(model="base", data=["a.jsonl"], output=str(output)))
    assert not any(output.iterdir())


def test_bm25_mining_without_bm25s_names_the_eval_extra(tmp_path: Path) -> None:
    # bm25s made unimportable for one interpreter: mine-negatives --method bm25 says which extra to install.
    source = write_jsonl(tmp_path / "pairs.jsonl", retrieval_rows(with_negatives=False))
    code = (
        "import sys; sys.modules['bm25s'] = None\n"
        "from lens_embed.commands import main\n"
        f"sys.exit(main(['mine-negatives', '--data', {str(source)!r}, "
        "'--output', 'out.jsonl', '--method', 'bm25']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2
    assert "bm25s is not installed: this feature needs the lens-embed[eval] extra" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.jsonl").exists()
