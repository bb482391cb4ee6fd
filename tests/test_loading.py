"""The one loader: no code from a model runs unless asked, and damaged models fail loudly, naming the file."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from lens_embed import encode, load_lens_model
from lens_embed.commands import build_parser, main
from lens_embed.models import backbone
from lens_embed.models.backbone import CheckpointError
from lens_embed.models.safety import UntrustedCodeError


def edit_json(path: Path, **entries) -> None:
    data = json.loads(path.read_text())
    data.update(entries)
    path.write_text(json.dumps(data))


def plant_code(folder: Path, marker: Path) -> None:
    """A module that would leave ``marker`` behind if anything imported it."""
    (folder / "modeling_evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
        "from transformers import MistralModel as EvilModel\nEvilTokenizer = EvilModel\n"
    )


def test_an_intact_model_loads_through_lens_embeds_own_classes(tiny_lens):
    model = load_lens_model(tiny_lens)
    assert [type(module).__name__ for module in model] == ["LensTransformer", "LexiconPooling"]


def test_auto_map_in_config_is_refused_naming_the_file_and_nothing_runs(copy, tmp_path):
    marker = tmp_path / "ran"
    plant_code(copy, marker)
    edit_json(copy / "config.json", auto_map={"AutoModel": "modeling_evil.EvilModel"})
    with pytest.raises(UntrustedCodeError, match=r"config\.json: auto_map .*modeling_evil\.EvilModel"):
        load_lens_model(copy)
    assert not marker.exists()


def test_a_module_type_outside_the_trusted_packages_is_refused(copy, tmp_path):
    marker = tmp_path / "ran"
    plant_code(copy, marker)
    modules = json.loads((copy / "modules.json").read_text())
    modules[1]["type"] = "modeling_evil.EvilModel"
    (copy / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UntrustedCodeError, match=r"modules\.json: module type 'modeling_evil\.EvilModel'"):
        load_lens_model(copy)
    assert not marker.exists()


@pytest.mark.parametrize(
    "entries, asked",
    [
        ({"auto_map": {"AutoTokenizer": ["modeling_evil.EvilTokenizer", None]}}, "auto_map"),
        ({"tokenizer_class": "EvilTokenizer"}, "tokenizer_class 'EvilTokenizer'"),
    ],
)
def test_custom_tokenizer_code_is_refused(copy, tmp_path, entries, asked):
    marker = tmp_path / "ran"
    plant_code(copy, marker)
    edit_json(copy / "tokenizer_config.json", **entries)
    with pytest.raises(UntrustedCodeError, match=rf"tokenizer_config\.json: {asked}") as error:
        load_lens_model(copy)
    assert "trust_remote_code=True" in str(error.value)
    assert not marker.exists()


def name_foreign_module(folder: Path) -> None:
    """Make ``modules.json`` ask for the planted ``modeling_evil.EvilModel`` as its head."""
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["type"] = "modeling_evil.EvilModel"
    (folder / "modules.json").write_text(json.dumps(modules))


def test_model_code_is_refused_through_every_cli_verb(copy, tmp_path, model_verb, capsys):
    marker = tmp_path / "ran"
    plant_code(copy, marker)
    name_foreign_module(copy)
    argv = model_verb(copy)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"lens-embed {argv[0]}: error: {copy} asks to run code" in err and "Traceback" not in err
    assert "modules.json: module type 'modeling_evil.EvilModel'" in err
    assert not marker.exists()
    try:  # the hint names the option only where the verb has it
        build_parser().parse_args([*argv, "--trust-remote-code"])
        has_option = True
    except SystemExit:
        has_option = False
    capsys.readouterr()
    if has_option:
        assert err.endswith("Inspect that code, then pass --trust-remote-code to allow it.\n")
    else:
        assert "--trust-remote-code" not in err
        assert err.endswith(
            "Inspect that code, then load it from Python with trust_remote_code=True "
            f"(`lens-embed {argv[0]}` runs no model's own code) to allow it.\n"
        )


def test_custom_pipelines_in_config_are_refused(copy, tmp_path):
    marker = tmp_path / "ran"
    plant_code(copy, marker)
    pipeline = {"feature-extraction": {"impl": "modeling_evil.EvilModel", "pt": ["AutoModel"]}}
    edit_json(copy / "config.json", custom_pipelines=pipeline)
    with pytest.raises(
        UntrustedCodeError, match=r"/config\.json: custom_pipelines .*modeling_evil\.EvilModel"
    ):
        load_lens_model(copy)
    assert not marker.exists()


@pytest.mark.parametrize(
    "config",
    [
        "1_LexiconPooling/config.json",
        "preprocessor_config.json",
        "processor_config.json",
        "1_LexiconPooling/preprocessor_config.json",
        "1_LexiconPooling/processor_config.json",
    ],
)
def test_auto_map_in_any_config_transformers_reads_is_refused(copy, tmp_path, config):
    marker = tmp_path / "ran"
    plant_code(copy, marker)
    target = copy / config
    data = json.loads(target.read_text()) if target.exists() else {}
    target.write_text(json.dumps({**data, "auto_map": {"AutoProcessor": "modeling_evil.EvilModel"}}))
    with pytest.raises(
        UntrustedCodeError, match=rf"{re.escape(str(target))}: auto_map .*modeling_evil\.EvilModel"
    ):
        load_lens_model(copy)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module_type", "said"),
    [
        ("lens_embed.modules.LexiconPool", "is not a lens-embed module"),
        ("lens_embed.heads.LexiconPooling", "is not a lens-embed module"),
        ("sentence_transformers.models.LexiconPooling", "does not exist in sentence-transformers"),
        ("sentence_transformers.heads.Pooling", "does not exist in sentence-transformers"),
    ],
)
@pytest.mark.parametrize("trust_remote_code", [False, True])
def test_library_module_types_that_do_not_exist_are_named(copy, module_type, said, trust_remote_code):
    modules = json.loads((copy / "modules.json").read_text())
    modules[1]["type"] = module_type
    (copy / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(
        ValueError, match=rf"modules\.json: module type '{re.escape(module_type)}' {said}"
    ) as error:
        load_lens_model(copy, trust_remote_code=trust_remote_code)
    assert not isinstance(error.value, UntrustedCodeError)  # a broken folder, not a request to run code


def test_a_symlinked_modified_modeling_file_is_refused(copy, tmp_path):
    marker = tmp_path / "ran"
    outside = tmp_path / "elsewhere" / "modeling_lens.py"
    outside.parent.mkdir()
    original = (copy / "modeling_lens.py").read_text()
    outside.write_text(original)
    (copy / "modeling_lens.py").unlink()
    (copy / "modeling_lens.py").symlink_to(outside)
    assert load_lens_model(copy).get_embedding_dimension() == 16  # the link itself is no reason to refuse
    outside.write_text(original + f"\nimport pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    with pytest.raises(
        UntrustedCodeError, match="modeling_lens.py, which is not code that any lens-embed version wrote"
    ):
        load_lens_model(copy)
    assert not marker.exists()


def test_trusting_remote_code_lifts_the_refusal(copy):
    edit_json(copy / "tokenizer_config.json", tokenizer_class="EvilTokenizer")
    with pytest.raises(UntrustedCodeError):
        load_lens_model(copy)
    assert load_lens_model(copy, trust_remote_code=True).get_embedding_dimension() == 16


def test_a_missing_backbone_tensor_fails_instead_of_loading_random_weights(copy):
    weights = load_file(copy / "model.safetensors")
    del weights["layers.0.mlp.up_proj.weight"]
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors lack 1 backbone tensor.*layers\.0\.mlp\.up_proj"
    ):
        load_lens_model(copy)


def test_non_finite_backbone_weights_fail_naming_the_file_and_tensor(copy):
    weights = load_file(copy / "model.safetensors")
    weights["layers.1.self_attn.q_proj.weight"][0, 0] = float("inf")
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors: backbone tensor layers\.1\.self_attn\.q_proj"
    ):
        load_lens_model(copy)


def test_non_finite_centroids_fail_naming_the_head_file(copy):
    head_file = copy / "1_LexiconPooling" / "model.safetensors"
    head = load_file(head_file)
    head["centroids"][3, 1] = float("nan")
    save_file(head, head_file)
    with pytest.raises(CheckpointError, match=r"1_LexiconPooling/model\.safetensors: the centroids hold NaN"):
        load_lens_model(copy)


def test_a_token_mapped_outside_the_clusters_fails(copy):
    head_file = copy / "1_LexiconPooling" / "model.safetensors"
    head = load_file(head_file)
    head["token_clusters"][0] = 16
    save_file(head, head_file)
    with pytest.raises(
        CheckpointError, match=r"1_LexiconPooling/model\.safetensors: the token -> cluster map"
    ):
        load_lens_model(copy)


@pytest.mark.parametrize("is_causal", [True, None])
def test_a_lens_decoder_saved_as_causal_is_refused_naming_its_config(copy, is_causal):
    config = json.loads((copy / "config.json").read_text())
    if is_causal is None:
        del config["is_causal"]  # transformers' default for a decoder is causal
    else:
        config["is_causal"] = is_causal
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config\.json: a LENS decoder must be bidirectional"):
        load_lens_model(copy)


def test_dtype_and_attention_choices_reach_the_backbone(tiny_lens):
    model = load_lens_model(tiny_lens, dtype="float32", attn_implementation="eager")
    assert model[0].auto_model.dtype == torch.float32
    assert model[0].auto_model.config._attn_implementation == "eager"
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_lens_model(tiny_lens, dtype="float64")
    with pytest.raises(ValueError, match="attn_implementation must be one of"):
        load_lens_model(tiny_lens, attn_implementation="fast")


def test_plain_sentence_transformers_models_load_unchecked_by_lens_rules(minilm_path):
    model = load_lens_model(minilm_path)
    assert encode(model, ["a man plays a guitar"]).shape == (1, 384)
    assert np.isfinite(encode(model, ["a man plays a guitar"])).all()


def test_one_load_reads_each_file_of_the_folder_once(tiny_lens, monkeypatch):
    """The checks before and after the load share one manifest: modules.json, every JSON config and
    modeling_lens.py are read once, and each weight file's header is opened once."""
    reads: Counter[str] = Counter()
    read_text, safe_open = Path.read_text, backbone.safe_open

    def counted_read_text(path: Path, *args, **kwargs):
        if path.is_relative_to(tiny_lens):
            reads[str(path.relative_to(tiny_lens))] += 1
        return read_text(path, *args, **kwargs)

    def counted_safe_open(file, *args, **kwargs):
        reads[f"header of {Path(file).relative_to(tiny_lens)}"] += 1
        return safe_open(file, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted_read_text)
    monkeypatch.setattr(backbone, "safe_open", counted_safe_open)
    load_lens_model(tiny_lens, device="cpu")
    assert {
        "modules.json",
        "config_sentence_transformers.json",
        "config.json",
        "1_LexiconPooling/config.json",
        "modeling_lens.py",
        "header of model.safetensors",
        "header of 1_LexiconPooling/model.safetensors",
    } <= set(reads)
    assert [name for name, count in reads.items() if count > 1] == []
