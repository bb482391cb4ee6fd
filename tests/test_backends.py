"""CPU backends: a model's exported backbone on ONNX Runtime and OpenVINO gives torch's embeddings (float32)
or close ones (int8), on both sides; a missing, damaged or stale export is refused, never run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from interrupted import cli_env, has_file, kill_when, run_cli
from safetensors.torch import load_file, save_file

from lens_embed.commands import main
from lens_embed.models.export import export_model
from lens_embed.models.exported import ExportError
from lens_embed.models.loading import load_lens_model
from lens_embed.models.model import encode
from tiny_models import build_encoder

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the Reserve Bank of Australia (RBA)?",
    "a",
    "Lexicon-based embeddings map text onto vocabulary clusters, one cluster per dimension.",
]
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query."
# float32 exports compute the same products in other orders (fused attention and layer norms): hidden
# states move by ~1e-7 relative (measured 1.5e-7 on the embedded default). The masked max selects one
# of those values and the L2 norm only rescales, so unit vectors stay within 1e-5.
FLOAT32_TOLERANCE = 1e-5
# int8 rounds every weight (and, dynamically or from calibration, every activation) to 1/127 of its
# range, a relative error of ~1% per product; through two random layers the embeddings measured a
# cosine of 0.999 to torch's. 0.98 leaves room across platforms and still fails a broken graph (a lost
# mask or wrong input gives cosines far below).
INT8_MIN_COSINE = 0.98
CALIBRATION = TEXTS * 4


@pytest.fixture(scope="module")
def tiny_encoder_lens(minilm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LENS model on a tiny random BERT (MiniLM's architecture and tokenizer), K = 16."""
    from lens_embed import build_lens_model

    base = build_encoder(tmp_path_factory.mktemp("tiny-bert"), minilm_path)
    out = tmp_path_factory.mktemp("tiny-bert-lens")
    build_lens_model(base, n_clusters=16, output_dir=out)
    return out


@pytest.fixture(scope="module", params=["tiny_lens", "tiny_hybrid", "tiny_encoder_lens"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of each tiny model (decoder LENS, hybrid, encoder LENS) with its float32 exports."""
    folder = Path(shutil.copytree(request.getfixturevalue(request.param), tmp_path_factory.mktemp("x") / "m"))
    export_model(folder, "onnx")
    export_model(folder, "openvino")
    return folder


@pytest.fixture(scope="module")
def int8_exported(tiny_lens: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the decoder LENS model with both int8 exports (the recipes do not depend on the
    architecture)."""
    folder = Path(shutil.copytree(tiny_lens, tmp_path_factory.mktemp("int8") / "m"))
    export_model(folder, "onnx", "int8")
    export_model(folder, "openvino", "int8", CALIBRATION)
    return folder


def both_sides(model) -> np.ndarray:
    """Queries (instructed) then documents, as lens-embed's router embeds them."""
    return np.concatenate([encode(model, TEXTS, query=True, instruction=INSTRUCTION), encode(model, TEXTS)])


@pytest.fixture(scope="module")
def torch_embeddings(exported: Path) -> np.ndarray:
    return both_sides(load_lens_model(exported))


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_a_float32_export_gives_torchs_embeddings_on_both_sides(exported, torch_embeddings, backend):
    model = load_lens_model(exported, backend=backend)
    found = both_sides(model)
    assert found.shape == torch_embeddings.shape
    assert np.abs(found - torch_embeddings).max() <= FLOAT32_TOLERANCE
    assert model.settings()["backend"] == backend


@pytest.mark.parametrize(
    ("backend", "file_name"),
    [
        ("onnx", "onnx/model_qint8_avx512_vnni.onnx"),
        ("openvino", "openvino/openvino_model_qint8_quantized.xml"),
    ],
)
def test_an_int8_export_runs_close_to_torch(int8_exported, backend, file_name):
    model = load_lens_model(int8_exported, backend=backend, model_kwargs={"file_name": file_name})
    found = both_sides(model)
    cosines = (found * both_sides(load_lens_model(int8_exported))).sum(axis=1)  # both L2-normalised
    assert cosines.min() >= INT8_MIN_COSINE, cosines
    assert model.settings()["file_name"] == file_name


def test_explain_and_pruning_work_on_an_exported_backbone(tiny_lens, tmp_path):
    folder = Path(shutil.copytree(tiny_lens, tmp_path / "m"))
    export_model(folder, "onnx")
    reference, exported = load_lens_model(folder), load_lens_model(folder, backend="onnx")
    for model in (reference, exported):
        pruned = encode(model, TEXTS, max_active_dims=3)
        assert ((pruned > 0).sum(axis=1) <= 3).all()
    ours = exported.top_dimensions(encode(exported, TEXTS[:1])[0], k=4)
    theirs = reference.top_dimensions(encode(reference, TEXTS[:1])[0], k=4)
    assert [d.index for d in ours] == [d.index for d in theirs]
    assert [d.tokens for d in ours] == [d.tokens for d in theirs]


@pytest.fixture
def onnx_copy(tiny_lens: Path, tmp_path: Path) -> Path:
    folder = Path(shutil.copytree(tiny_lens, tmp_path / "model"))
    export_model(folder, "onnx")
    return folder


def test_a_missing_export_is_refused_with_the_command_that_builds_it(tiny_lens, tmp_path):
    folder = Path(shutil.copytree(tiny_lens, tmp_path / "model"))
    with pytest.raises(
        ExportError,
        match=rf"{folder}/openvino/openvino_model.xml: missing; export it with "
        rf"`lens-embed export {folder} --backend openvino`",
    ):
        load_lens_model(folder, backend="openvino")


def test_an_export_of_other_weights_is_refused_as_stale(onnx_copy):
    weights = load_file(onnx_copy / "model.safetensors")
    name = next(iter(sorted(weights)))
    weights[name] = weights[name] + 1.0
    save_file(weights, onnx_copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        ExportError,
        match=rf"{onnx_copy}/onnx/model.onnx: stale: exported from other backbone "
        r"weights .* rebuild it with `lens-embed export .* --backend onnx`",
    ):
        load_lens_model(onnx_copy, backend="onnx")
    export_model(onnx_copy, "onnx")  # the rebuild the message names
    assert load_lens_model(onnx_copy, backend="onnx") is not None


def test_a_damaged_export_is_refused(onnx_copy):
    graph = onnx_copy / "onnx" / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(
        ExportError, match=rf"{graph}: damaged or modified .* `lens-embed export .* --backend onnx`"
    ):
        load_lens_model(onnx_copy, backend="onnx")


def test_an_unrecorded_export_file_is_refused(onnx_copy):
    (onnx_copy / "onnx" / "lens_export.json").unlink()
    with pytest.raises(ExportError, match="model.onnx: not recorded in .*lens_export.json"):
        load_lens_model(onnx_copy, backend="onnx")


def test_backend_options_that_an_export_cannot_honour_are_refused_before_loading(onnx_copy):
    with pytest.raises(ValueError, match="the onnx backend runs on the CPU"):
        load_lens_model(onnx_copy, backend="onnx", device="cuda")
    with pytest.raises(ValueError, match="--dtype applies to torch"):
        load_lens_model(onnx_copy, backend="onnx", dtype="bfloat16")
    with pytest.raises(ValueError, match="backend must be one of torch, onnx, openvino"):
        load_lens_model(onnx_copy, backend="tensorrt")


@pytest.mark.parametrize(
    "argv",
    [
        ["encode", "M", "texts.txt", "--out", "e.npy", "--quantize", "int8"],
        ["export", "M", "--backend", "openvino", "--quantize", "int8"],
        ["export", "M", "--calibration", "texts.txt"],
    ],
)
def test_cli_backend_misuse_exits_2_in_one_line(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "texts.txt").write_text("a text\n")
    assert main(argv) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_missing_runtime_names_its_extra(onnx_copy):
    code = (
        "import sys; sys.modules['onnxruntime'] = sys.modules['openvino'] = None\n"
        "from lens_embed.models.loading import load_lens_model\n"
        "from lens_embed.models.export import export_model\n"
        f"for run in (lambda: load_lens_model({str(onnx_copy)!r}, backend='onnx'),\n"
        f"            lambda: export_model({str(onnx_copy)!r}, 'openvino')):\n"
        "    try:\n        run()\n"
        "    except ImportError as error:\n        print(type(error).__name__, error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), check=True
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    for line, (module, extra) in zip(lines, [("onnxruntime", "onnx"), ("openvino", "openvino")], strict=True):
        assert line.startswith(f"MissingExtraError {module} is not installed"), line
        assert f"needs the lens-embed[{extra}] extra" in line


@pytest.mark.slow
def test_a_killed_export_leaves_no_file_and_the_rerun_exports(tiny_lens, tmp_path):
    folder = Path(shutil.copytree(tiny_lens, tmp_path / "model"))
    export = ["export", folder, "--backend", "openvino"]
    kill_when(export, lambda: has_file(folder / ".lens-export-*", "model.onnx"), cwd=tmp_path)
    assert not (folder / "openvino").exists() or not any((folder / "openvino").iterdir())
    with pytest.raises(ExportError, match="missing"):
        load_lens_model(folder, backend="openvino")
    run_cli(export, cwd=tmp_path)
    assert not list(folder.glob(".lens-export-*"))
    torch.testing.assert_close(
        torch.from_numpy(encode(load_lens_model(folder, backend="openvino"), TEXTS)),
        torch.from_numpy(encode(load_lens_model(folder), TEXTS)),
        atol=FLOAT32_TOLERANCE,
        rtol=0,
    )


def test_lens_embed_default_exports_once_into_its_cache_entry(tiny_lens, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LENS_EMBED_CACHE", str(tmp_path))
    entry = Path(shutil.copytree(tiny_lens, tmp_path / "lens-minilm-k16"))  # a cached build is reused
    command = ["default", "--untrained", "--clusters", "16", "--backend", "onnx", "--quantize", "int8"]
    assert main(command) == 0
    assert capsys.readouterr().out.strip() == str(entry)
    graph = entry / "onnx" / "model_qint8_avx512_vnni.onnx"
    written = graph.stat()
    assert main(command) == 0  # current: kept as it is
    assert (graph.stat().st_ino, graph.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    assert load_lens_model(entry, backend="onnx", model_kwargs={"file_name": graph.name}) is not None
