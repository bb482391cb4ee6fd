"""The embedded default: the package's parameter file, its hash check, and the assembly of a trained LENS
model from a base and that file (the shipped file on the real MiniLM; the whole train-package-assemble path
on a tiny model)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

import lens_embed
from lens_embed.base.storage import MANIFEST_FILE
from lens_embed.models import embedded
from lens_embed.models.embedded import (
    PARAMETERS_FILE,
    PARAMETERS_SHA256,
    PROVENANCE_FILE,
    SERVED_POSITION_TOP_K,
    ParameterFileError,
    TrainedParameters,
    assemble,
    base_weights_sha256,
    cluster_means,
    file_sha256,
    read_parameters,
    write_parameters,
)
from lens_embed.models.loading import load_lens_model

REPO = Path(__file__).resolve().parents[1]


def tiny_parameters(tiny_mistral: Path, tiny_lens: Path, lora_layers: int = 1) -> TrainedParameters:
    """Parameters on the tiny decoder: the tiny LENS model's clusters and rows, random LoRA factors."""
    lens = load_lens_model(tiny_lens, device="cpu")
    vocab = lens[1].token_clusters.shape[0]
    generator = torch.Generator().manual_seed(0)
    lora = {
        f"layers.{layer}.self_attn.{name}": (
            torch.randn(4, 32, generator=generator) * 0.1,
            torch.randn(32, 4, generator=generator) * 0.1,
        )
        for layer in range(lora_layers)
        for name in ("q_proj", "o_proj")
    }
    return TrainedParameters(
        lora=lora,
        lora_scaling=2.0,
        token_clusters=lens[1].token_clusters.clone(),
        added_tokens=lens[0].tokenizer.convert_ids_to_tokens(list(range(vocab, len(lens[0].tokenizer)))),
        added_embeddings=lens[0].auto_model.get_input_embeddings().weight[vocab:].detach().clone(),
        n_clusters=lens[1].n_clusters,
        max_seq_length=64,
        base_sha256=base_weights_sha256(tiny_mistral),
    )


def test_centroids_are_the_exact_means_of_their_clusters_and_an_empty_one_is_zero() -> None:
    matrix = torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.1, 0.2], [0.2, 0.4], [0.3, 0.3]])
    clusters = torch.tensor([0, 0, 2, 2, 2])
    means = cluster_means(matrix, clusters, 4)
    assert means.dtype == torch.float32
    expected = np.array([[2.0, 3.0], [0.0, 0.0], [0.6 / 3, 0.9 / 3], [0.0, 0.0]])
    assert np.array_equal(means.numpy(), expected.astype(np.float32))
    with pytest.raises(ValueError, match="outside"):
        cluster_means(matrix, torch.tensor([0, 0, 2, 2, 4]), 4)


def test_a_parameter_file_round_trips_and_a_tampered_one_is_refused_naming_it(
    tiny_mistral, tiny_lens, tmp_path
):
    parameters = tiny_parameters(tiny_mistral, tiny_lens)
    path = tmp_path / "params.safetensors"
    sha256 = write_parameters(parameters, path)
    assert sha256 == file_sha256(path)
    read = read_parameters(path, sha256)
    assert read.lora.keys() == parameters.lora.keys()
    assert all(torch.equal(read.lora[k][1], parameters.lora[k][1]) for k in parameters.lora)
    assert torch.equal(read.token_clusters, parameters.token_clusters)
    assert (read.added_tokens, read.n_clusters, read.base_sha256) == (
        parameters.added_tokens,
        parameters.n_clusters,
        parameters.base_sha256,
    )
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(ParameterFileError, match=rf"{path}: SHA-256 \w+ is not the expected {sha256}"):
        read_parameters(path, sha256)
    with pytest.raises(ParameterFileError, match="no such parameter file"):
        read_parameters(tmp_path / "absent.safetensors", sha256)
    other = tmp_path / "other.safetensors"
    write_parameters(TrainedParameters(**{**vars(parameters), "dense_pooling": "max"}), other)
    with pytest.raises(ParameterFileError, match=f"{other}: dense_pooling 'max', expected one of mean, last"):
        read_parameters(other, None)


def test_assembly_refuses_another_base(tiny_mistral, tiny_lens, tmp_path):
    parameters = tiny_parameters(tiny_mistral, tiny_lens)
    parameters.base_sha256 = "0" * 64
    with pytest.raises(ParameterFileError, match="not the base the parameters were trained on"):
        assemble(tiny_mistral, parameters)


def test_assembly_merges_the_lora_factors_as_peft_does(tiny_mistral, tiny_lens):
    from lens_embed.training.lora import LoraSettings, apply_lora, backbone, merge_lora

    parameters = tiny_parameters(tiny_mistral, tiny_lens, lora_layers=2)
    plain = assemble(tiny_mistral, TrainedParameters(**{**vars(parameters), "lora": {}}))
    apply_lora(plain, LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "o_proj"]))
    peft_model = backbone(plain)
    for name, (lora_a, lora_b) in parameters.lora.items():
        layer = peft_model.base_model.model.get_submodule(name)
        layer.lora_A["default"].weight.data = lora_a.clone()
        layer.lora_B["default"].weight.data = lora_b.clone()
    merge_lora(plain)
    assembled = assemble(tiny_mistral, parameters)
    for (name, mine), (_, theirs) in zip(
        assembled[0].auto_model.state_dict().items(), plain[0].auto_model.state_dict().items(), strict=True
    ):
        assert torch.equal(mine, theirs), name


def test_the_package_ships_the_trained_default_with_its_hash_and_provenance() -> None:
    assert PARAMETERS_FILE.stat().st_size <= 10 * 2**20
    assert file_sha256(PARAMETERS_FILE) == PARAMETERS_SHA256
    record = json.loads(PROVENANCE_FILE.read_text(encoding="utf-8"))
    assert record["parameters_sha256"] == PARAMETERS_SHA256
    assert record["training_data"] and all(len(digest) == 64 for digest in record["training_data"].values())
    # the command as it was run: the recipe module was named training.embedded then (now the verb
    # lens-embed train-default over training.default_recipe)
    assert record["command"].startswith("python -m lens_embed.training.embedded --data DATA --output OUTPUT")
    assert not any(path.startswith("/") for path in [*record["training_data"], *record["command"].split()])
    assert record["recipe"] and record["commit"]
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert '"data/*.safetensors"' in pyproject and '"data/*.provenance.json"' in pyproject
    with safe_open(str(PARAMETERS_FILE), framework="pt") as handle:
        assert handle.metadata()["base_sha256"] == base_weights_sha256(embedded.minilm_path())
    assert read_parameters(PARAMETERS_FILE, PARAMETERS_SHA256).dense_pooling is None  # lexicon only


def lens_embed_default(tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    """``lens-embed default OPTIONS`` with the cache in ``tmp_path/cache`` (it must succeed)."""
    env = {"LENS_EMBED_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "lens_embed.commands", "default", *options],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )


def test_lens_embed_default_assembles_the_trained_model_once_and_caches_it(tmp_path) -> None:
    path = Path(lens_embed_default(tmp_path).stdout.strip())
    assert path.parent == tmp_path / "cache" and PARAMETERS_SHA256[:12] in path.name
    model = load_lens_model(path, device="cpu")
    parameters = read_parameters(PARAMETERS_FILE, PARAMETERS_SHA256)
    assert model[1].n_clusters == 4000
    assert torch.equal(model[1].token_clusters, parameters.token_clusters)
    # trained pooling every logit, served with the per-position top-k (an entry of its own)
    assert parameters.position_top_k is None and model[1].position_top_k == SERVED_POSITION_TOP_K == 20
    assert path.name.endswith(f"-top{SERVED_POSITION_TOP_K}")
    card = (path / "README.md").read_text(encoding="utf-8")
    assert "stsb_train.jsonl" in card and "Banking77Classification/train.jsonl" in card
    assert lens_embed.default_model_path(cache=tmp_path / "cache") == path  # reused


def flip_last_byte(path: Path) -> None:
    """Change one bit of a file's last byte (a weight): the file keeps its size and stays readable."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def entry_bytes(entry: Path) -> dict[str, bytes]:
    return {p.relative_to(entry).as_posix(): p.read_bytes() for p in sorted(entry.rglob("*")) if p.is_file()}


def test_a_damaged_default_entry_is_assembled_again_saying_why(tmp_path, caplog) -> None:
    entry = Path(lens_embed_default(tmp_path).stdout.strip())
    written = entry_bytes(entry)
    assert json.loads((entry / MANIFEST_FILE).read_text())["checked_on_use"] == [
        "1_LexiconPooling/config.json",
        "1_LexiconPooling/model.safetensors",
    ]
    # every use: the sizes and the head's hash
    flip_last_byte(entry / "1_LexiconPooling" / "model.safetensors")
    with caplog.at_level(logging.WARNING, logger="lens_embed.base.storage"):
        assert lens_embed.default_model_path(cache=tmp_path / "cache") == entry
    assert [r.getMessage() for r in caplog.records] == [
        f"rebuilding {entry}: 1_LexiconPooling/model.safetensors changed since it was written (SHA-256)"
    ]
    assert entry_bytes(entry) == written
    # --verify: every file's hash (a backbone weight changed in place is found only there)
    flip_last_byte(entry / "model.safetensors")
    plain = lens_embed_default(tmp_path)
    assert plain.stdout.strip() == str(entry) and "rebuilding" not in plain.stderr
    verified = lens_embed_default(tmp_path, "--verify")
    assert verified.stdout.strip() == str(entry)
    assert [line for line in verified.stderr.splitlines() if "rebuilding" in line] == [
        f"WARNING rebuilding {entry}: model.safetensors changed since it was written (SHA-256)"
    ]
    assert entry_bytes(entry) == written


def test_a_file_where_the_default_entry_goes_is_refused_before_assembly(tmp_path, monkeypatch, capsys):
    from lens_embed.commands import main

    monkeypatch.setenv("LENS_EMBED_CACHE", str(tmp_path))
    entry = tmp_path / f"lens-minilm-k4000-trained-{PARAMETERS_SHA256[:12]}-top{SERVED_POSITION_TOP_K}"
    entry.write_text("not a model")
    monkeypatch.setattr(embedded, "assemble", lambda *args, **kwargs: pytest.fail("assembled"))
    assert main(["default"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"lens-embed default: error: the cache entry {entry} is a file, not a folder"
    )
    assert main(["default", "--untrained", "--verify"]) == 2
    assert "--verify checks the trained default's cache entry; not --untrained" in capsys.readouterr().err


def test_the_untrained_construction_stays_reachable(tmp_path, monkeypatch, capsys) -> None:
    from lens_embed.commands import main

    monkeypatch.setenv("LENS_EMBED_CACHE", str(tmp_path))
    (tmp_path / "lens-minilm-k64").mkdir()  # a cached untrained build is reused as it is
    assert main(["default", "--untrained", "--clusters", "64"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "lens-minilm-k64")
    assert main(["default", "--clusters", "64"]) == 2
    assert "--clusters needs --untrained" in capsys.readouterr().err
