"""Exporting a model's backbone for the CPU backends: ONNX Runtime and OpenVINO, float32 or int8.

The backbone (for a LENS decoder, bidirectional as saved) is traced with ``torch.onnx.export`` on a
padded batch, so the graph keeps the attention mask. int8 follows sentence-transformers' recipes:
ONNX Runtime's dynamic quantisation (what its ``export_dynamic_quantized_onnx_model`` runs through
optimum), OpenVINO's static post-training quantisation with nncf on calibration texts (what its
``export_static_quantized_openvino_model`` runs through optimum-intel). The files go where those
functions put them (:data:`lens_embed.base.defaults.EXPORT_FILES`).

Every export is checked before it is kept: a float32 export must give the torch backbone's hidden states
(:data:`EXPORT_TOLERANCE`), an int8 one finite values. It is built in a scratch folder inside the model
folder, each file renamed into place when whole, then recorded with the hash of the weights it came
from (:func:`lens_embed.models.exported.write_record`): a killed export leaves no partial file, and one that
never got recorded is refused at load time.
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers.base.modules import Transformer

from lens_embed.base.optional import require
from lens_embed.base.storage import scratch_directory
from lens_embed.models.embedded import file_sha256
from lens_embed.models.exported import (
    INPUT_NAMES,
    OUTPUT_NAME,
    ExportedBackbone,
    ExportError,
    backbone_source,
    check_backend,
    checked_export,
    export_file_name,
    write_record,
)
from lens_embed.models.loading import load_lens_model

logger = logging.getLogger(__name__)
# Largest difference of a float32 export's hidden states from torch's, relative to their largest
# magnitude: float32 kernels add in other orders (ONNX Runtime and OpenVINO fuse attention and layer
# norms), which moves the last bits of a layer's output; 1e-4 leaves room for a deep backbone and
# catches any real difference (a lost mask, causal attention, a wrong input).
EXPORT_TOLERANCE = 1e-4
ONNX_OPSET = 17
# The texts an export is traced and checked on: of different lengths, so that the batch is padded.
PROBE_TEXTS = (
    "A short text.",
    "A longer text, so that the batch is padded and the export keeps the attention mask.",
    "What does a lexicon-based embedding of this sentence look like?",
)
CALIBRATION_BATCH = 8


def export_model(
    model_path: str | Path,
    backend: str = "onnx",
    quantize: str | None = None,
    calibration_texts: Sequence[str] | None = None,
) -> Path:
    """Export the backbone of a model folder for ``backend`` into the folder; returns the exported file.

    An export already there, whole and made from the folder's current weights, is kept as it is; a
    missing, damaged or stale one is (re)built.

    Args:
        model_path: a local lens-embed (or sentence-transformers) model folder.
        backend: ``"onnx"`` or ``"openvino"``.
        quantize: None (float32) or ``"int8"``.
        calibration_texts: the texts OpenVINO's static int8 calibrates its activation ranges on (a few
            hundred typical inputs); required for that export only.
    """
    check_backend(backend, quantize)
    if backend == "torch":
        raise ValueError("export writes the onnx or openvino backend; torch runs the folder as it is")
    folder = Path(model_path)
    if not (folder / "modules.json").is_file():
        raise ValueError(f"{folder} is not a local model folder (no modules.json); export needs one")
    static = backend == "openvino" and quantize == "int8"
    if static and not calibration_texts:
        raise ValueError(
            "OpenVINO int8 is calibrated on texts: pass some typical inputs (--calibration FILE)"
        )
    if not static and calibration_texts:
        raise ValueError("calibration texts apply to --backend openvino --quantize int8 only")
    require("onnx", backend)
    require("onnxruntime" if backend == "onnx" else "openvino", backend)
    relative = export_file_name(backend, quantize)
    try:
        return checked_export(folder, backend, relative)[0]
    except ExportError as why:
        logger.info("exporting %s: %s", relative, why)
    model = load_lens_model(folder, device="cpu", dtype="float32").eval()  # no dropout in the references
    module = model[0]
    if not isinstance(module, Transformer):
        raise ValueError(
            f"{folder}: its first module is {type(module).__name__}, not a transformers backbone"
        )
    source = backbone_source(folder)
    target = folder / relative
    with scratch_directory(folder, ".lens-export-") as scratch:
        graph = scratch / "model.onnx"
        inputs = export_onnx(module, graph)
        check_export(module, ExportedBackbone("onnx", graph, inputs, module.auto_model.config), exact=True)
        produced = scratch / target.name
        if backend == "onnx" and quantize == "int8":
            quantization = require("onnxruntime.quantization", "onnx")
            quantization.quantize_dynamic(graph, produced, weight_type=quantization.QuantType.QInt8)
        elif backend == "openvino":
            ov = require("openvino", "openvino")
            converted = ov.convert_model(graph)
            if static:
                converted = quantize_openvino(module, converted, inputs, calibration_texts)
            ov.save_model(converted, produced, compress_to_fp16=False)
        written = sorted(path for path in scratch.iterdir() if path.stem == produced.stem)
        check_export(
            module,
            ExportedBackbone(backend, produced, inputs, module.auto_model.config),
            exact=quantize is None,
        )
        entry = {
            "sha256": {path.name: file_sha256(path) for path in written},
            "weights_sha256": source.weights_sha256,
            "config_sha256": source.config_sha256,
            "inputs": list(inputs),
            "quantization": quantize,
            "backend": backend,
        }
        target.parent.mkdir(exist_ok=True)
        for path in sorted(written, key=lambda path: path == produced):  # the file a load opens goes last
            os.replace(path, target.parent / path.name)
    write_record(target.parent, target.name, entry)
    return checked_export(folder, backend, relative)[0]


def probe_features(module: Transformer, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    """The backbone inputs ``module`` makes of ``texts`` (documents, right-padded), those the backbone
    takes."""
    accepted = inspect.signature(module.auto_model.forward).parameters
    features = module.preprocess(list(texts), task="document")
    return {name: features[name] for name in INPUT_NAMES if name in features and name in accepted}


class _Backbone(torch.nn.Module):
    """The backbone as a function of positional inputs to its last hidden state (what is traced)."""

    def __init__(self, backbone: torch.nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.backbone = backbone
        self.names = tuple(names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.backbone(**dict(zip(self.names, inputs, strict=True))).last_hidden_state


def export_onnx(module: Transformer, path: Path) -> tuple[str, ...]:
    """Trace the module's backbone into ``path`` (float32, dynamic batch and length); its input names."""
    features = probe_features(module, PROBE_TEXTS[:2])
    names = tuple(features)
    axes = {name: {0: "batch", 1: "length"} for name in (*names, OUTPUT_NAME)}
    backbone = module.auto_model.float()
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer notes each Python branch it fixes; check_export then runs another batch shape
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            _Backbone(backbone, names).eval(),  # torch.onnx.export restores the wrapper's mode afterwards
            tuple(features[name] for name in names),
            str(path),
            input_names=list(names),
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return names


def check_export(module: Transformer, exported: ExportedBackbone, exact: bool) -> None:
    """Refuse an export that does not reproduce the torch backbone on :data:`PROBE_TEXTS` (another
    batch than the traced one): within :data:`EXPORT_TOLERANCE` when ``exact``, else finite."""
    features = probe_features(module, PROBE_TEXTS)
    with torch.no_grad():
        expected = module.auto_model(**features).last_hidden_state
    found = exported(**features).last_hidden_state
    real = features["attention_mask"].bool()
    if not bool(torch.isfinite(found[real]).all()):
        raise ExportError(f"the {exported.backend} export gives non-finite hidden states")
    difference = float((found - expected)[real].abs().max())
    scale = float(expected[real].abs().max())
    if exact and difference > EXPORT_TOLERANCE * scale:
        raise ExportError(
            f"the {exported.backend} export differs from the torch backbone by {difference:.3g} "
            f"(largest hidden value {scale:.3g}, tolerance {EXPORT_TOLERANCE} of it)"
        )


def quantize_openvino(module: Transformer, model: Any, inputs: Sequence[str], texts: Sequence[str]) -> Any:
    """OpenVINO's static int8 (nncf post-training quantisation, transformer preset) calibrated on
    ``texts`` embedded as documents."""
    nncf = require("nncf", "openvino")
    batches = [
        {name: tensor.numpy().astype(np.int64) for name, tensor in probe_features(module, chunk).items()}
        for chunk in (
            texts[start : start + CALIBRATION_BATCH] for start in range(0, len(texts), CALIBRATION_BATCH)
        )
    ]
    return nncf.quantize(
        model, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches)
    )
