"""End-to-end runs on the tiny LENS model: loss goes down, batches stay one task, resume, mining, CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from sentence_transformers.util import batch_to_device
from training_toy import StopAt, retrieval_rows, toy_config, write_jsonl
from transformers import TrainerCallback

from lens_embed import load_lens_model
from lens_embed.commands import main, parse
from lens_embed.commands.training_options import MineOptions
from lens_embed.modules import LexiconPooling
from lens_embed.training.config import (
    CHECKPOINT_DIRNAME,
    FINAL_SAVE_DIRNAME,
    TrainConfig,
)
from lens_embed.training.data import load_tasks
from lens_embed.training.lora import ADAPTER_DIRNAME
from lens_embed.training.losses import LensInfoNCELoss
from lens_embed.training.negatives import MINED_DIRNAME, mine_negatives, mine_task
from lens_embed.training.trainer import RECORD_FILENAME, build_trainer, load_base_model, train


def _config(tiny_lens: Path, data: list[Path], output: Path, **overrides) -> TrainConfig:
    return toy_config(tiny_lens, data, output, **{"symmetric_batch_size": 4, **overrides})


def _fixed_batch_loss(model, rows: list[dict]) -> float:
    """The training loss of a fixed batch (no dropout), the yardstick for 'the loss went down'."""
    from lens_embed.base.prompts import query_prompt

    model.eval()
    columns = [
        [query_prompt(row["prompt"]) + row["query"] for row in rows],
        [row["pos"][0] for row in rows],
        [row["neg"][0] for row in rows],
    ]
    with torch.no_grad():
        features = [batch_to_device(model.preprocess(column), model.device) for column in columns]
        return LensInfoNCELoss(model)(features, None).item()


class _TaskRecorder(TrainerCallback):
    """Records which loss (task) each step used, via the trainer's dataset_name routing."""

    def __init__(self) -> None:
        self.tasks: list[str] = []


def test_a_few_steps_lower_the_loss_and_each_batch_is_one_task(
    tiny_lens: Path, task_files, tmp_path: Path
) -> None:
    config = _config(tiny_lens, task_files, tmp_path / "out", max_steps=12)
    trainer = build_trainer(config)
    seen: list[str] = []
    original = trainer.compute_loss

    def recording_compute_loss(model, inputs, *args, **kwargs):
        seen.append(inputs["dataset_name"])
        return original(model, inputs, *args, **kwargs)

    trainer.compute_loss = recording_compute_loss
    rows = retrieval_rows()[:6]
    before = _fixed_batch_loss(trainer.model, rows)
    trainer.train()
    after = _fixed_batch_loss(trainer.model, rows)
    assert after < 0.5 * before
    assert set(seen) == {"toy_retrieval", "toy_class"}
    losses = trainer.loss
    assert losses["toy_retrieval"].in_batch_negatives and not losses["toy_class"].in_batch_negatives


def _adapter_weights(output: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(output / ADAPTER_DIRNAME / "adapter_model.safetensors"))


def test_resume_from_checkpoint_reproduces_the_uninterrupted_run(
    tiny_lens: Path, task_files, tmp_path: Path
) -> None:
    whole = train(_config(tiny_lens, task_files, tmp_path / "whole", max_steps=4))
    interrupted = _config(tiny_lens, task_files, tmp_path / "resumed", max_steps=4)
    train(interrupted, callbacks=[StopAt(2)])
    assert (interrupted.checkpoint_dir / "checkpoint-2" / "adapter_model.safetensors").is_file()
    resumed = train(interrupted)
    state = json.loads((interrupted.checkpoint_dir / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    expected, actual = _adapter_weights(whole), _adapter_weights(resumed)
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name])
    texts = ["the quick brown fox", "a red kite"]
    torch.testing.assert_close(
        torch.from_numpy(load_lens_model(resumed).encode(texts)),
        torch.from_numpy(load_lens_model(whole).encode(texts)),
    )


def test_bm25_mining_never_returns_a_positive_or_the_query(tmp_path: Path) -> None:
    (task,) = load_tasks([write_jsonl(tmp_path / "pairs.jsonl", retrieval_rows(with_negatives=False))])
    mined = mine_task(task, count=3, method="bm25")
    for row in mined.rows:
        assert len(row["neg"]) == 3
        assert not set(row["neg"]) & {row["query"], *row["pos"]}


def test_model_mining_skips_known_positives_and_writes_jsonl(lens_model, tmp_path: Path) -> None:
    rows = retrieval_rows(with_negatives=False)
    rows[0]["pos"].append(rows[1]["pos"][0])  # a second known positive must never come back as a negative
    source = write_jsonl(tmp_path / "pairs.jsonl", rows)
    (written,) = mine_negatives([source], tmp_path / "with_negs.jsonl", model=lens_model, num_negatives=2)
    mined = [json.loads(line) for line in written.read_text().splitlines()]
    assert len(mined) == len(rows)
    for row in mined:
        assert len(row["neg"]) == 2
        assert not set(row["neg"]) & {row["query"], *row["pos"]}


def test_training_mines_missing_negatives_once(tiny_lens: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", retrieval_rows(with_negatives=False))
    config = _config(tiny_lens, [data], tmp_path / "out", max_steps=1, mine="bm25")
    build_trainer(config)
    (mined_file,) = (Path(config.output) / "mined").glob("pairs.*.jsonl")
    rows = [json.loads(line) for line in mined_file.read_text().splitlines()]
    assert all(len(row["neg"]) == config.group_size - 1 for row in rows)
    stamp = mined_file.stat().st_mtime_ns
    build_trainer(config)  # same data and settings: the cache is reused, not mined again
    assert mined_file.stat().st_mtime_ns == stamp
    build_trainer(
        _config(tiny_lens, [data], tmp_path / "out", max_steps=1, mine="bm25", group_size=4, overwrite=True)
    )
    (remined,) = (Path(config.output) / "mined").glob("pairs.*.jsonl")
    assert remined.name != mined_file.name  # new settings, new cache key


def test_teacher_scores_add_the_distillation_term(tiny_lens: Path, tmp_path: Path) -> None:
    rows = retrieval_rows()
    for row in rows:
        row["pos_scores"], row["neg_scores"] = [5.0], [1.0, 0.5]
    data = write_jsonl(tmp_path / "scored.jsonl", rows)
    trainer = build_trainer(_config(tiny_lens, [data], tmp_path / "out", max_steps=1))
    trainer.model.eval()
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["label"].shape == (4, 3)
    with torch.no_grad():
        with_kl = trainer.compute_loss(trainer.model, dict(batch)).item()
        trainer.loss["scored"].distill_weight = 0.0
        without_kl = trainer.compute_loss(trainer.model, dict(batch)).item()
    assert with_kl > without_kl + 1e-4


def test_cli_verbs_parse_into_the_api(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = parse(
        [
            "train",
            "--model",
            "m",
            "--data",
            "a.jsonl",
            "b.jsonl",
            "--output",
            "o",
            "--group-size",
            "4",
            "--mini-batch-size",
            "16",
            "--no-negatives-cross-device",
            "--lora-target-modules",
            "q_proj",
            "v_proj",
        ]
    )
    assert isinstance(config, TrainConfig)
    assert (config.data, config.group_size, config.mini_batch_size) == (["a.jsonl", "b.jsonl"], 4, 16)
    assert config.negatives_cross_device is False and config.lora_target_modules == ["q_proj", "v_proj"]
    assert (config.temperature, config.lora_r, config.lora_alpha, config.learning_rate) == (
        0.02,
        32,
        64,
        1e-4,
    )
    mine = parse(["mine-negatives", "--data", "p.jsonl", "--output", "o.jsonl", "--method", "bm25"])
    assert isinstance(mine, MineOptions) and (mine.data, mine.method, mine.num_negatives) == (
        ["p.jsonl"],
        "bm25",
        7,
    )
    with pytest.raises(SystemExit):
        parse(["train", "--model", "m", "--output", "o"])  # --data is required
    data = write_jsonl(tmp_path / "p.jsonl", retrieval_rows())
    assert main(["mine-negatives", "--data", str(data), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "--model is required with --method model" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


# What a run folder holds before its model is in place (the trainer's final save only for a moment).
RUN_ENTRIES = {RECORD_FILENAME, CHECKPOINT_DIRNAME, MINED_DIRNAME, FINAL_SAVE_DIRNAME}


@pytest.mark.parametrize("lora", [True, False], ids=["lora-merged", "full"])
def test_the_trained_model_appears_whole_with_the_usual_file_mode(
    tiny_lens: Path, tmp_path: Path, monkeypatch, lora: bool
) -> None:
    """While the model is being written the output shows the run only, never part of a model; then
    the whole model is there, beside the run's checkpoints and mined negatives, every file of it with
    mode 0666 minus the umask (safetensors itself writes 0600)."""
    data = write_jsonl(tmp_path / "pairs.jsonl", retrieval_rows(with_negatives=False))
    config = _config(tiny_lens, [data], tmp_path / "out", max_steps=2, save_steps=1, mine="bm25", lora=lora)
    seen: list[list[str]] = []
    original = LexiconPooling.save

    def watched_save(self, output_path: str, *args, **kwargs) -> None:  # the head: saved after the backbone
        seen.append(sorted(os.listdir(config.output)))
        original(self, output_path, *args, **kwargs)

    monkeypatch.setattr(LexiconPooling, "save", watched_save)
    umask = os.umask(0o027)
    try:
        output = train(config)
    finally:
        os.umask(umask)
    assert seen and all(set(listing) <= RUN_ENTRIES for listing in seen), seen
    files = [path for path in output.rglob("*") if path.is_file()]
    modes = {
        path.relative_to(output).as_posix(): path.stat().st_mode & 0o777
        for path in files
        if path.relative_to(output).parts[0] != CHECKPOINT_DIRNAME
    }
    assert {"model.safetensors", "1_LexiconPooling/model.safetensors", RECORD_FILENAME} <= modes.keys()
    assert set(modes.values()) == {0o640}, modes
    assert (config.checkpoint_dir / "checkpoint-2" / "trainer_state.json").is_file()
    assert len(list((output / MINED_DIRNAME).glob("pairs.*.jsonl"))) == 1
    assert not (output / FINAL_SAVE_DIRNAME).exists()
    assert (output / ADAPTER_DIRNAME / "adapter_model.safetensors").is_file() == lora
    assert load_lens_model(output, device="cpu").encode(["a red kite"]).shape == (1, 16)


def test_max_seq_length_truncates_the_trained_model_texts(tiny_lens: Path, tmp_path: Path) -> None:
    config = _config(tiny_lens, [tmp_path / "unused.jsonl"], tmp_path / "out", max_seq_length=7)
    assert load_lens_model(tiny_lens, device="cpu").max_seq_length != 7
    assert load_base_model(config, device="cpu").max_seq_length == 7


def test_only_the_saving_process_writes_an_adapter(
    tiny_lens: Path, task_files, tmp_path: Path, monkeypatch
) -> None:
    """Under DDP every rank calls the save: the others must not write the same files at the same time."""
    trainer = build_trainer(_config(tiny_lens, task_files, tmp_path / "out", max_steps=1))
    trainer.save_model(str(tmp_path / "main"))
    assert (tmp_path / "main" / "adapter_model.safetensors").is_file()
    monkeypatch.setattr(type(trainer.args), "should_save", property(lambda self: False))  # another rank
    trainer.save_model(str(tmp_path / "other"))
    assert not (tmp_path / "other").exists()
