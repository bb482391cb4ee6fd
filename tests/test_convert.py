"""The converter refuses checkpoints it cannot convert exactly, and never runs pickled code."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lens_embed.models.convert import CheckpointError, convert_checkpoint, read_head


def copy_of(released: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ckpt"
    shutil.copytree(released, target)
    return target


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/lens_embed_pwned",))


def test_pickled_code_in_the_head_file_is_refused_and_not_run(released, tmp_path):
    ckpt = copy_of(released, tmp_path)
    torch.save(Exploit(), ckpt / "lm_head.pth")
    with pytest.raises(CheckpointError, match="refusing to load"):
        convert_checkpoint(ckpt, tmp_path / "out")
    assert not Path("/tmp/lens_embed_pwned").exists()


def test_head_may_be_a_plain_tensor(tmp_path):
    torch.save(torch.ones(4, 3), tmp_path / "head.pth")
    assert read_head(tmp_path / "head.pth").shape == (4, 3)


def test_missing_head_is_named(released, tmp_path):
    ckpt = copy_of(released, tmp_path)
    (ckpt / "lm_head.pth").unlink()
    with pytest.raises(CheckpointError, match="lm_head.pth is missing"):
        convert_checkpoint(ckpt, tmp_path / "out")


def rewrite_weights(ckpt: Path, change) -> None:
    tensors = load_file(ckpt / "model.safetensors")
    change(tensors)
    save_file(tensors, ckpt / "model.safetensors")


def test_a_missing_backbone_tensor_fails_loudly(released, tmp_path):
    ckpt = copy_of(released, tmp_path)
    rewrite_weights(ckpt, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match="missing tensors: layers.1.mlp.up_proj.weight"):
        convert_checkpoint(ckpt, tmp_path / "out")


def test_a_mismatched_backbone_tensor_fails_loudly(released, tmp_path):
    ckpt = copy_of(released, tmp_path)
    rewrite_weights(ckpt, lambda t: t.update({"model.norm.weight": torch.ones(7)}))
    with pytest.raises(CheckpointError, match="mismatched shapes: norm.weight"):
        convert_checkpoint(ckpt, tmp_path / "out")


def test_a_corrupt_weight_file_is_named(released, tmp_path):
    ckpt = copy_of(released, tmp_path)
    (ckpt / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: corrupt safetensors file"):
        convert_checkpoint(ckpt, tmp_path / "out")


def test_head_of_the_wrong_width_is_refused(released, tmp_path):
    ckpt = copy_of(released, tmp_path)
    torch.save(torch.nn.Linear(5, 24, bias=False), ckpt / "lm_head.pth")
    with pytest.raises(CheckpointError, match="head width 5"):
        convert_checkpoint(ckpt, tmp_path / "out")


def test_config_advertising_k_does_not_shrink_the_embeddings(released, tmp_path):
    model = convert_checkpoint(released, tmp_path / "out")
    assert json.loads((released / "config.json").read_text())["vocab_size"] == 24
    embeddings = model[0].auto_model.get_input_embeddings().weight
    original = load_file(released / "model.safetensors")["model.embed_tokens.weight"]
    assert torch.equal(embeddings, original)


def test_missing_source_directory_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        convert_checkpoint(tmp_path / "absent", tmp_path / "out")


def test_released_names_load_through_the_converter_not_as_raw_mistral(released, tmp_path, monkeypatch):
    from lens_embed import load_lens_model
    from lens_embed.models import convert

    monkeypatch.setenv("LENS_EMBED_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(convert, "resolve_checkpoint", lambda name: released)
    model = load_lens_model("yibinlei/LENS-d8000")
    assert model.get_embedding_dimension() == 24 and model[1].n_clusters == 24
    assert (tmp_path / "cache" / "converted" / "yibinlei__LENS-d8000" / "modules.json").is_file()
    monkeypatch.setattr(convert, "resolve_checkpoint", lambda name: pytest.fail("converted twice"))
    assert load_lens_model("yibinlei/LENS-d8000").get_embedding_dimension() == 24
