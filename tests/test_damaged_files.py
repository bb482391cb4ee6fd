"""Damaged model folders are user errors: one line naming the file and what is wrong, exit code 2 from
every verb, no traceback, and never a pickle unpickled.

Weights are checked before sentence-transformers builds anything (safetensors headers, ``.bin`` files
with ``weights_only=True``); a tensor whose shape contradicts its config is named after the load fails.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from lens_embed import encode, load_lens_model
from lens_embed.commands import main
from lens_embed.models.backbone import CheckpointError
from lens_embed.models.convert import convert_checkpoint

HEAD = "1_LexiconPooling"


class Payload:
    """Unpickling this touches ``marker``: the stand-in for code planted in a weight file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"import pathlib; pathlib.Path({self.marker!r}).touch()",))


def plant_pickle(file: Path, marker: Path, names: tuple[str, ...]) -> None:
    """Replace ``file``'s folder weights with a ``pytorch_model.bin`` whose tensors are payloads."""
    file.unlink()
    torch.save({name: Payload(marker) for name in names}, file.with_name("pytorch_model.bin"))


def cut(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def reshape(file: Path, name: str, shape: tuple[int, ...]) -> None:
    tensors = load_file(file)
    tensors[name] = torch.zeros(shape)
    save_file(tensors, file, metadata={"format": "pt"})


# name -> (damage(folder, marker), the file the error must name, what it must say about it)
DAMAGES: dict[str, tuple[Callable[[Path, Path], None], str, str]] = {
    "truncated backbone": (
        lambda m, _: cut(m / "model.safetensors"),
        "model.safetensors",
        "corrupt safetensors file",
    ),
    "zero-byte backbone": (
        lambda m, _: (m / "model.safetensors").write_bytes(b""),
        "model.safetensors",
        "corrupt safetensors file",
    ),
    "garbage backbone": (
        lambda m, _: (m / "model.safetensors").write_bytes(b"\x93garbage" * 64),
        "model.safetensors",
        "corrupt safetensors file",
    ),
    "truncated head": (
        lambda m, _: cut(m / HEAD / "model.safetensors"),
        f"{HEAD}/model.safetensors",
        "corrupt safetensors file",
    ),
    "zero-byte head": (
        lambda m, _: (m / HEAD / "model.safetensors").write_bytes(b""),
        f"{HEAD}/model.safetensors",
        "corrupt safetensors file",
    ),
    "garbage head": (
        lambda m, _: (m / HEAD / "model.safetensors").write_bytes(b"{not weights}" * 64),
        f"{HEAD}/model.safetensors",
        "corrupt safetensors file",
    ),
    "pickled backbone": (
        lambda m, marker: plant_pickle(m / "model.safetensors", marker, ("embed_tokens.weight",)),
        "pytorch_model.bin",
        "refusing to load: not a plain tensor file",
    ),
    "pickled head": (
        lambda m, marker: plant_pickle(
            m / HEAD / "model.safetensors", marker, ("centroids", "token_clusters")
        ),
        f"{HEAD}/pytorch_model.bin",
        "refusing to load: not a plain tensor file",
    ),
    "backbone tensor of the wrong shape": (
        lambda m, _: reshape(m / "model.safetensors", "layers.0.mlp.up_proj.weight", (3, 3)),
        "model.safetensors",
        r"tensor layers\.0\.mlp\.up_proj\.weight has shape \[3, 3\], but .*config\.json makes it \[64, 32\]",
    ),
    "centroids of the wrong shape": (
        lambda m, _: reshape(m / HEAD / "model.safetensors", "centroids", (16, 8)),
        f"{HEAD}/model.safetensors",
        r"centroids have shape \(16, 8\), expected \(16, 32\)",
    ),
}
# One of each way a damaged file is caught (before the load, a pickle, after the load, by the head),
# through every verb; every damage goes through the loader and `info`.
EVERY_PATH = (
    "truncated backbone",
    "pickled head",
    "backbone tensor of the wrong shape",
    "centroids of the wrong shape",
)


def damage(folder: Path, marker: Path, kind: str) -> str:
    """Damage ``folder`` as ``kind`` says; returns the pattern of the one-line error that must follow."""
    apply, file, said = DAMAGES[kind]
    apply(folder, marker)
    return rf"{re.escape(str(folder / file))}: {said}"


def assert_one_line_error(verb: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The verb's stderr ends in exactly ``lens-embed VERB: error: <file>: ...`` on one line, and holds no
    traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.rstrip("\n").splitlines()[-1]
    assert re.match(rf"lens-embed {verb}: error: {expected}", last), err[-2000:]


@pytest.mark.parametrize("kind", DAMAGES)
@pytest.mark.parametrize("trust_remote_code", [False, True])
def test_a_damaged_weight_file_is_a_one_line_error_naming_it(copy, tmp_path, kind, trust_remote_code):
    marker = tmp_path / "ran"
    expected = damage(copy, marker, kind)
    with pytest.raises(
        ValueError, match=rf"^{expected}"
    ) as error:  # CheckpointError, or the head's ValueError
        load_lens_model(copy, trust_remote_code=trust_remote_code)
    assert "\n" not in str(error.value)
    assert not marker.exists()


@pytest.mark.parametrize("kind", DAMAGES)
def test_info_reports_every_damage_in_one_line_with_exit_code_2(copy, tmp_path, kind, capsys):
    marker = tmp_path / "ran"
    expected = damage(copy, marker, kind)
    assert main(["info", str(copy)]) == 2
    assert_one_line_error("info", expected, capsys)
    assert not marker.exists()


@pytest.mark.parametrize("kind", EVERY_PATH)
def test_every_verb_reports_a_damaged_model_in_one_line_with_exit_code_2(
    copy, tmp_path, kind, model_verb, capsys
):
    marker = tmp_path / "ran"
    expected = damage(copy, marker, kind)
    argv = model_verb(copy)
    assert main(argv) == 2
    assert_one_line_error(argv[0], expected, capsys)
    assert not marker.exists()


def test_the_planted_pickle_runs_code_when_unpickled_unsafely(tmp_path):
    """The payload the tests plant is real: only the loader's refusal keeps it from running."""
    weights = tmp_path / "model.safetensors"
    weights.touch()
    plant_pickle(weights, tmp_path / "ran", ("centroids",))
    torch.load(tmp_path / "pytorch_model.bin", weights_only=False)
    assert (tmp_path / "ran").exists()


def test_a_damaged_plain_sentence_transformers_model_is_named_too(minilm_path, tmp_path):
    model = Path(
        shutil.copytree(minilm_path, tmp_path / "minilm", ignore=shutil.ignore_patterns("onnx", "openvino"))
    )
    weights = next(
        path for path in (model / "model.safetensors", model / "pytorch_model.bin") if path.exists()
    )
    cut(weights)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(weights))}: "):
        load_lens_model(model)


def test_a_damaged_shard_index_is_named(copy):
    (copy / "model.safetensors.index.json").write_text('{"weight_map": ')
    with pytest.raises(CheckpointError, match=r"model\.safetensors\.index\.json: not a valid shard index"):
        load_lens_model(copy)


@pytest.mark.parametrize(
    "damaged",
    [
        "config_sentence_transformers.json",
        "sentence_bert_config.json",
        "config.json",
        f"{HEAD}/config.json",
        "modules.json",
    ],
)
@pytest.mark.parametrize("trust_remote_code", [False, True])
def test_bad_json_in_a_model_folder_is_named(copy, damaged, trust_remote_code):
    (copy / damaged).write_text('{"truncated": ')
    with pytest.raises(ValueError, match=rf"^{re.escape(str(copy / damaged))}: not valid JSON"):
        load_lens_model(copy, trust_remote_code=trust_remote_code)


@pytest.mark.parametrize(
    ("modules", "said"),
    [
        (
            {"0": {"path": "", "type": "lens_embed.modules.LensTransformer"}},
            "expected a JSON list of modules",
        ),
        (["lens_embed.modules.LensTransformer"], "module 0 must be an object with string name, path, type"),
        ([{"idx": 0, "name": "0", "path": ""}], "module 0 must be an object with string name, path, type"),
        (
            [{"idx": 0, "name": "0", "path": None, "type": "lens_embed.modules.LensTransformer"}],
            "module 0 must be",
        ),
    ],
)
@pytest.mark.parametrize("trust_remote_code", [False, True])
def test_a_modules_json_of_another_shape_is_named(copy, modules, said, trust_remote_code):
    (copy / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(copy / 'modules.json'))}: {said}"):
        load_lens_model(copy, trust_remote_code=trust_remote_code)


@pytest.fixture
def backbone_in_subfolder(copy) -> Path:
    """The tiny LENS model with its backbone moved to ``0_Transformer/``, as sentence-transformers may save
    it."""
    (copy / "0_Transformer").mkdir()
    for name in (
        "config.json",
        "model.safetensors",
        "sentence_bert_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ):
        shutil.move(copy / name, copy / "0_Transformer" / name)
    modules = json.loads((copy / "modules.json").read_text())
    modules[0]["path"] = "0_Transformer"
    (copy / "modules.json").write_text(json.dumps(modules))
    return copy


def test_damaged_files_of_a_backbone_in_a_subfolder_are_named(backbone_in_subfolder, tiny_lens):
    folder = backbone_in_subfolder / "0_Transformer"
    texts = ["what is rba", "fox"]
    assert np.array_equal(
        encode(load_lens_model(backbone_in_subfolder), texts), encode(load_lens_model(tiny_lens), texts)
    )
    original = (folder / "sentence_bert_config.json").read_text()
    (folder / "sentence_bert_config.json").write_text("{")
    with pytest.raises(
        ValueError, match=rf"^{re.escape(str(folder / 'sentence_bert_config.json'))}: not valid JSON"
    ):
        load_lens_model(backbone_in_subfolder)
    (folder / "sentence_bert_config.json").write_text(original)
    cut(folder / "model.safetensors")
    with pytest.raises(
        CheckpointError, match=rf"^{re.escape(str(folder / 'model.safetensors'))}: corrupt safetensors"
    ):
        load_lens_model(backbone_in_subfolder)


@pytest.mark.parametrize(
    ("kind", "file", "said"),
    [
        ("truncated", "model.safetensors", "corrupt safetensors file"),
        ("pickled", "lm_head.pth", "refusing to load: not a plain tensor file"),
    ],
)
def test_convert_names_a_damaged_file_of_a_released_checkpoint(released, tmp_path, kind, file, said, capsys):
    source = Path(shutil.copytree(released, tmp_path / "released"))
    marker = tmp_path / "ran"
    if kind == "truncated":
        cut(source / file)
    else:
        torch.save(Payload(marker), source / file)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(source / file))}: {said}"):
        convert_checkpoint(source, tmp_path / "out")
    assert main(["convert", str(source), str(tmp_path / "out")]) == 2
    assert_one_line_error("convert", rf"{re.escape(str(source / file))}: {said}", capsys)
    assert not marker.exists() and not (tmp_path / "out").exists()
