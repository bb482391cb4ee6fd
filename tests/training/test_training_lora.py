"""LoRA: only adapter weights train, the head stays frozen, merging reloads identically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lens_embed import load_lens_model
from lens_embed.training.lora import (
    ADAPTER_DIRNAME,
    DECODER_TARGETS,
    LoraSettings,
    apply_lora,
    default_target_modules,
    merge_and_save,
    save_adapter,
    trainable_parameter_names,
)
from lens_embed.training.losses import LensInfoNCELoss

TEXTS = ["<instruct>Find\n<query>the fox", "the quick brown fox", "a red kite", "the bank raised rates"]


def _train_steps(model, steps: int = 2) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss_fn = LensInfoNCELoss(model)
    for _ in range(steps):
        features = [model.preprocess(TEXTS[:2]), model.preprocess(TEXTS[1:3]), model.preprocess(TEXTS[2:])]
        optimizer.zero_grad()
        loss_fn(features, None).backward()
        optimizer.step()


def test_lora_targets_every_decoder_projection(lens_model) -> None:
    targets = default_target_modules(lens_model[0].auto_model)
    assert targets == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_lora_targets_encoder_projections(minilm_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(str(minilm_path), device="cpu")[0].auto_model
    assert default_target_modules(encoder) == ["query", "key", "value", "dense"]


def test_only_adapter_weights_train_and_head_stays_frozen(lens_model) -> None:
    head_before = {name: buffer.clone() for name, buffer in lens_model[1].named_buffers()}
    apply_lora(lens_model, LoraSettings())
    trainable = trainable_parameter_names(lens_model)
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    assert not any(p.requires_grad for p in lens_model[1].parameters())
    config = lens_model[0].auto_model.peft_config["default"]
    assert (config.r, config.lora_alpha, config.lora_dropout) == (32, 64, 0.1)
    frozen_before = {n: p.detach().clone() for n, p in lens_model.named_parameters() if not p.requires_grad}
    adapters_before = {n: p.detach().clone() for n, p in lens_model.named_parameters() if p.requires_grad}
    _train_steps(lens_model)
    params = dict(lens_model.named_parameters())
    assert all(torch.equal(params[name], value) for name, value in frozen_before.items())
    assert any(not torch.equal(params[name], value) for name, value in adapters_before.items())
    for name, buffer in lens_model[1].named_buffers():
        assert torch.equal(buffer, head_before[name])


def test_merge_and_save_reloads_with_identical_embeddings(
    lens_model, tiny_lens: Path, tmp_path: Path
) -> None:
    apply_lora(lens_model)
    _train_steps(lens_model)
    lens_model.eval()
    trained = lens_model.encode(TEXTS, convert_to_numpy=True)
    adapter = save_adapter(lens_model, tmp_path / "adapter")
    output = merge_and_save(load_lens_model(tiny_lens, device="cpu"), adapter, tmp_path / "merged")
    reloaded = load_lens_model(output, device="cpu")
    assert not hasattr(reloaded[0].auto_model, "peft_config")
    assert (output / ADAPTER_DIRNAME / "adapter_config.json").is_file()
    np.testing.assert_allclose(reloaded.encode(TEXTS, convert_to_numpy=True), trained, rtol=1e-5, atol=1e-6)
    base = load_lens_model(tiny_lens, device="cpu").encode(TEXTS, convert_to_numpy=True)
    assert not np.allclose(base, trained, atol=1e-4)  # the adapter really changed the model


def test_merging_into_a_folder_keeps_its_other_entries_and_replaces_its_model(
    lens_model, tiny_lens: Path, tmp_path: Path
) -> None:
    """A run folder: its own entries survive the merge (an adapter saved in it becomes lora_adapter),
    and a model already there is replaced whole."""
    apply_lora(lens_model)
    _train_steps(lens_model)
    folder = tmp_path / "run"
    adapter = save_adapter(lens_model, folder / ".final-save")
    (folder / "notes.txt").write_text("mine")
    (folder / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-1" / "trainer_state.json").write_text("{}")
    (folder / "model.safetensors").write_text("an older model")
    (folder / "stale.bin").write_text("kept: the merge knows only what it writes")
    merge_and_save(load_lens_model(tiny_lens, device="cpu"), adapter, folder)
    assert (folder / "notes.txt").read_text() == "mine"
    assert (folder / "checkpoints" / "checkpoint-1" / "trainer_state.json").read_text() == "{}"
    assert (folder / "stale.bin").is_file() and not adapter.exists()
    assert (folder / ADAPTER_DIRNAME / "adapter_model.safetensors").is_file()
    lens_model.eval()
    np.testing.assert_allclose(
        load_lens_model(folder, device="cpu").encode(TEXTS), lens_model.encode(TEXTS), rtol=1e-5, atol=1e-6
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]  # no staging folder left beside it


def test_a_saved_adapter_config_lists_its_modules_in_one_order(lens_model, tmp_path: Path) -> None:
    apply_lora(lens_model)
    saved = json.loads((save_adapter(lens_model, tmp_path / "adapter") / "adapter_config.json").read_text())
    # peft keeps them in a set, written in the process's hash order: every run would write another file
    assert saved["target_modules"] == sorted(DECODER_TARGETS)


def test_second_adapter_is_refused(lens_model) -> None:
    apply_lora(lens_model)
    with pytest.raises(ValueError, match="already carries"):
        apply_lora(lens_model)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_lens: Path) -> None:
    from lens_embed.training.config import TrainConfig
    from lens_embed.training.trainer import prepare_model

    grads = []
    for checkpointing in (False, True):
        model = load_lens_model(tiny_lens, device="cpu")
        torch.manual_seed(0)  # same LoRA initialisation in both models
        prepare_model(model, TrainConfig(model="", data=[], output=""), gradient_checkpointing=checkpointing)
        assert model[0].auto_model.get_base_model().is_gradient_checkpointing is checkpointing
        model.eval()
        for name, parameter in model.named_parameters():
            if "lora_B" in name:  # non-zero B so that lora_A receives gradient as well
                torch.nn.init.normal_(parameter, std=0.02)
        loss = LensInfoNCELoss(model)([model.preprocess(TEXTS[:2]), model.preprocess(TEXTS[2:])], None)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-7)
