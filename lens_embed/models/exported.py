"""Exported backbones on CPU runtimes: where the files live, what they record, and running them.

A model folder's ONNX and OpenVINO exports sit where sentence-transformers puts its own
(``onnx/model.onnx``, ``onnx/model_qint8_avx512_vnni.onnx``, ``openvino/openvino_model.xml``,
``openvino/openvino_model_qint8_quantized.xml``) and are chosen the same way
(``model_kwargs={"file_name": ...}``). Only the backbone is exported (for a decoder, bidirectional as
saved): it is where the time goes, and the LENS head stays the module the folder configures, run in
torch on the exported hidden states, so every setting of ``LexiconPooling`` (and explain, pruning,
the query/document side) holds unchanged.

Each subfolder has a record (:data:`RECORD_FILE`) of every file an export wrote: its SHA-256, and the
SHA-256 of the backbone weights and config it was exported from. Opening an export checks both, so
a missing, damaged or stale file (the folder's weights changed since) is refused with a message
naming the file and the command that rebuilds it; it never runs against other weights.
:mod:`lens_embed.models.export` writes the files; this module reads and runs them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers.base.modules import Transformer
from transformers import PretrainedConfig
from transformers.modeling_outputs import BaseModelOutput

from lens_embed.base.defaults import BACKENDS, EXPORT_FILES, EXPORT_QUANTIZATIONS
from lens_embed.base.optional import require
from lens_embed.base.storage import atomic_write
from lens_embed.models.backbone import weight_files
from lens_embed.models.embedded import file_sha256

RECORD_FILE = "lens_export.json"
FORMAT = "lens-embed backbone export 1"
# The backbone's inputs an export takes, in this order, when its forward accepts them.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "last_hidden_state"


class ExportError(ValueError):
    """An export that cannot be used as it is: missing, damaged, or exported from other weights (the
    message names the file and the command that rebuilds it)."""


def check_backend(backend: str, quantize: str | None = None) -> None:
    """Refuse an unknown backend or quantisation (a ValueError naming the choices)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if quantize is not None and quantize not in EXPORT_QUANTIZATIONS:
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    if backend == "torch" and quantize is not None:
        raise ValueError("--quantize applies to the onnx and openvino backends")


def export_file_name(backend: str, quantize: str | None = None) -> str:
    """The file (relative to the model folder) an export of this backend and quantisation writes."""
    check_backend(backend, quantize)
    if backend == "torch":
        raise ValueError("the torch backend reads the model's own weights; it has no exported file")
    return EXPORT_FILES[(backend, quantize)]


def rebuild_command(folder: str | Path, backend: str, file_name: str) -> str:
    """The ``lens-embed export`` command that (re)writes ``file_name`` of ``folder``."""
    quantized = next((q for (b, q), name in EXPORT_FILES.items() if b == backend and name == file_name), None)
    return f"lens-embed export {folder} --backend {backend}" + (
        f" --quantize {quantized}" if quantized else ""
    )


def resolve_file_name(backend: str, file_name: str | None) -> str:
    """The export a load opens, relative to the model folder: ``file_name`` as sentence-transformers takes
    it (a bare name lies in the backend's subfolder), else the backend's float32 file."""
    if file_name is None:
        return export_file_name(backend)
    return file_name if "/" in file_name else f"{backend}/{file_name}"


@dataclass(frozen=True)
class Source:
    """What an export was made from: the SHA-256 of the backbone's weight files (names and bytes, in name
    order) and of its ``config.json`` (architecture, bidirectional attention)."""

    weights_sha256: str
    config_sha256: str


def backbone_source(folder: str | Path, subfolder: str = "") -> Source:
    """The :class:`Source` of the backbone saved in ``folder/subfolder`` as it is now."""
    digest = hashlib.sha256()
    for file in sorted(weight_files(folder, subfolder), key=lambda path: path.name):
        digest.update(file.name.encode("utf-8") + b"\0" + file_sha256(file).encode("ascii"))
    return Source(digest.hexdigest(), file_sha256(Path(folder, subfolder, "config.json")))


def read_record(subfolder: Path) -> dict[str, Any]:
    """The export record of a backend subfolder (``{}`` when there is none); a damaged record is refused."""
    path = subfolder / RECORD_FILE
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ExportError(f"{path}: not a readable export record ({error})") from None
    if (
        not isinstance(record, dict)
        or record.get("format") != FORMAT
        or not isinstance(record.get("files"), dict)
    ):
        raise ExportError(f"{path}: not an export record of format {FORMAT!r}")
    return record["files"]


def write_record(subfolder: Path, name: str, entry: Mapping[str, Any]) -> None:
    """Add (or replace) ``name``'s entry in the subfolder's export record, written atomically."""
    files = {**read_record(subfolder), name: dict(entry)}
    text = json.dumps({"format": FORMAT, "files": files}, indent=2, sort_keys=True) + "\n"
    atomic_write(subfolder / RECORD_FILE, lambda stream: stream.write(text.encode("utf-8")))


def checked_export(
    folder: str | Path, backend: str, file_name: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """The export file a load would open and its record entry, after every check: recorded by an export,
    every file it wrote present with its recorded SHA-256, and exported from the backbone the folder holds
    now (weights and config).

    Raises:
        ExportError: naming the file and the ``lens-embed export`` command that rebuilds it.
    """
    check_backend(backend)
    root = Path(folder)
    relative = resolve_file_name(backend, file_name)
    path = root / relative
    rebuild = rebuild_command(folder, backend, relative)
    if relative not in EXPORT_FILES.values() or not relative.startswith(f"{backend}/"):
        names = ", ".join(name for (b, _), name in EXPORT_FILES.items() if b == backend)
        raise ExportError(f"{path}: not a {backend} export lens-embed writes ({names})")
    if not path.is_file():
        raise ExportError(f"{path}: missing; export it with `{rebuild}`")
    entry = read_record(path.parent).get(path.name)
    if entry is None:
        raise ExportError(
            f"{path}: not recorded in {path.parent / RECORD_FILE} (an interrupted or foreign export); "
            f"rebuild it with `{rebuild}`"
        )
    for name, recorded in sorted(entry["sha256"].items()):
        part = path.parent / name
        found = file_sha256(part) if part.is_file() else "missing"
        if found != recorded:
            raise ExportError(
                f"{part}: damaged or modified (SHA-256 {found[:16]}, recorded {recorded[:16]}); "
                f"rebuild it with `{rebuild}`"
            )
    now = backbone_source(root)
    if now.weights_sha256 != entry["weights_sha256"]:
        raise ExportError(
            f"{path}: stale: exported from other backbone weights (SHA-256 {entry['weights_sha256'][:16]}, "
            f"the folder's are {now.weights_sha256[:16]}); rebuild it with `{rebuild}`"
        )
    if now.config_sha256 != entry["config_sha256"]:
        raise ExportError(
            f"{path}: stale: exported with another {root / 'config.json'}; rebuild it with `{rebuild}`"
        )
    return path, entry


def onnx_session(path: Path) -> Any:
    """An ONNX Runtime CPU session for ``path`` with torch's thread count (so backends compare fairly)."""
    ort = require("onnxruntime", "onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def openvino_model(path: Path) -> Any:
    """An OpenVINO model compiled for the CPU in float32 (never a lower-precision hint: a float32 export
    must give torch's numbers) with torch's thread count."""
    ov = require("openvino", "openvino")
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": torch.get_num_threads()}
    return core.compile_model(core.read_model(str(path)), "CPU", config)


class ExportedBackbone(torch.nn.Module):
    """An exported backbone where a transformers model would sit in sentence-transformers' ``Transformer``:
    ``forward(input_ids, attention_mask, ...)`` returns ``last_hidden_state`` as a float32 CPU tensor.

    Args:
        backend: ``"onnx"`` or ``"openvino"``.
        path: the checked export file (:func:`checked_export`).
        inputs: the graph's input names, as recorded.
        config: the backbone's transformers config (hidden size, model type).
    """

    def __init__(self, backend: str, path: Path, inputs: Sequence[str], config: PretrainedConfig) -> None:
        super().__init__()
        self.backend = backend
        self.file_name = f"{path.parent.name}/{path.name}"
        self.inputs = tuple(inputs)
        self.config = config
        self.runner = onnx_session(path) if backend == "onnx" else openvino_model(path)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> BaseModelOutput:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        if token_type_ids is None and "token_type_ids" in self.inputs:
            given["token_type_ids"] = torch.zeros_like(input_ids)
        feed = {name: given[name].detach().cpu().numpy().astype(np.int64) for name in self.inputs}
        if self.backend == "onnx":
            hidden = self.runner.run([OUTPUT_NAME], feed)[0]
        else:
            hidden = self.runner(feed)[self.runner.output(0)]
        return BaseModelOutput(
            last_hidden_state=torch.from_numpy(np.ascontiguousarray(hidden, dtype=np.float32))
        )


class ExportedMixin:
    """Makes a sentence-transformers ``Transformer`` (LENS' or the library's) run its backbone from a
    checked export when loaded with ``backend="onnx"`` or ``"openvino"``; ``model_kwargs["file_name"]``
    picks the file, as in sentence-transformers. sentence-transformers' own loaders for these backends
    need optimum, which cannot be installed beside the transformers lens-embed runs on."""

    def _load_model(
        self,
        model_name_or_path: str,
        transformer_task: str,
        config: PretrainedConfig,
        backend: str,
        is_peft_model: bool,
        **model_kwargs: Any,
    ) -> torch.nn.Module:
        if backend == "torch":
            return super()._load_model(  # type: ignore[misc]
                model_name_or_path, transformer_task, config, backend, is_peft_model, **model_kwargs
            )
        folder = Path(model_name_or_path, model_kwargs.get("subfolder") or "")
        path, entry = checked_export(folder, backend, model_kwargs.get("file_name"))
        return ExportedBackbone(backend, path, entry["inputs"], config)


@cache
def exported_module_class(module_class: type[Transformer]) -> type[Transformer]:
    """``module_class`` able to run an exported backbone (one class per module class)."""
    return type(module_class.__name__, (ExportedMixin, module_class), {"__module__": module_class.__module__})


def is_exported(module: torch.nn.Module) -> bool:
    """Whether a ``Transformer`` module runs an exported backbone."""
    return isinstance(getattr(module, "auto_model", None), ExportedBackbone)
