"""Optional dependency stacks (``pip install 'lens-embed[EXTRA]'``), imported on first use.

The core package embeds, evaluates and indexes; training, BM25 and charts, AIR-Bench, Qdrant
servers and the CPU backends (ONNX Runtime, OpenVINO) are extras. :func:`require` imports a module
of an extra or stops with an error that names the extra, so a missing stack is one clear line rather
than a ``ModuleNotFoundError`` from deep inside a run.
This module imports nothing heavy.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Extra -> how to install it (air-benchmark declares a dependency that does not build offline).
INSTALL_HINTS = {
    "train": "pip install 'lens-embed[train]'",
    "eval": "pip install 'lens-embed[eval]'",
    "airbench": "pip install 'lens-embed[airbench]' && pip install --no-deps air-benchmark==0.1.0",
    "cluster": "pip install 'lens-embed[cluster]'",
    "onnx": "pip install 'lens-embed[onnx]'",
    "openvino": "pip install 'lens-embed[openvino]'",
}


class MissingExtraError(ImportError):
    """A feature needs an optional stack that is not installed."""


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` (part of the ``extra`` stack), or raise :class:`MissingExtraError` naming the
    extra."""
    if extra not in INSTALL_HINTS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(INSTALL_HINTS)}")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or module.split(".")[0] != error.name.split(".")[0]:
            raise  # the module exists but something it imports is broken: not a missing extra
        raise MissingExtraError(
            f"{module} is not installed: "
            f"this feature needs the lens-embed[{extra}] extra ({INSTALL_HINTS[extra]})"
        ) from error
