"""argparse ``type=`` validators shared by every ``lens-embed`` verb, so a bad number fails at parse time,
and the option groups several verbs share (:class:`PrecisionOptions`, :class:`LoadOptions`,
:class:`ClusterOptions`, :class:`QueryOptions`: dataclasses of :mod:`lens_embed.base.options`).

Each validator returns the converted value or raises ``argparse.ArgumentTypeError``, which argparse reports
as ``lens-embed VERB: error: argument --NAME: ...`` with exit code 2. Importing this is instant.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

from lens_embed.base.defaults import (
    ATTN_IMPLEMENTATIONS,
    BACKENDS,
    DTYPES,
    EXPORT_FILES,
    EXPORT_QUANTIZATIONS,
    QDRANT_API_KEY_ENV,
)
from lens_embed.base.options import option


def bounded_int(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type accepting integers ``>= minimum`` (and ``<= maximum`` when one is given).

    Args:
        minimum: the smallest accepted value.
        maximum: the largest accepted value (none by default).
    """
    wanted = f">= {minimum}" if maximum is None else f">= {minimum} and <= {maximum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
        return value

    parse.__name__ = f"integer {wanted}"
    return parse


def bounded_float(
    minimum: float, *, inclusive: bool = True, maximum: float | None = None
) -> Callable[[str], float]:
    """An argparse type accepting finite floats ``>= minimum`` (``> minimum`` unless ``inclusive``),
    and ``<= maximum`` when one is given.

    Args:
        minimum: the lower bound.
        inclusive: whether ``minimum`` itself is accepted.
        maximum: the upper bound, accepted itself (none by default).
    """
    lower = f"{'>=' if inclusive else '>'} {minimum}"
    wanted = lower if maximum is None else f"{lower} and <= {maximum}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value < minimum or (value == minimum and not inclusive)
        if not math.isfinite(value) or too_low or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be a finite number {wanted}, got {text}")
        return value

    parse.__name__ = f"number {wanted}"
    return parse


positive_int = bounded_int(1)
"""Batch sizes, iteration counts, lengths, ``--top``."""
non_negative_int = bounded_int(0)
"""Seeds, warm-up steps."""
cluster_count = bounded_int(2)
"""K: at least two clusters."""
non_negative_float = bounded_float(0.0)
"""Weights."""
positive_float = bounded_float(0.0, inclusive=False)
"""Temperatures, learning rates, epochs."""
probability = bounded_float(0.0, maximum=1.0)
"""Dropout rates."""


def top_k_or_none(text: str) -> int | None:
    """``--position-top-k`` of ``set-pooling``: a positive integer, or ``none`` to turn it off."""
    return None if text.strip().lower() == "none" else positive_int(text)


top_k_or_none.__name__ = "positive integer or 'none'"


@dataclass(kw_only=True)
class PrecisionOptions:
    """``--dtype`` and ``--attn-implementation``, named and valued as transformers names them: every verb
    that loads or builds a model has them (:data:`lens_embed.base.defaults.DTYPES`,
    ``ATTN_IMPLEMENTATIONS``)."""

    dtype: str | None = option(None, "backbone precision", choices=DTYPES, default_text="the saved one")
    attn_implementation: str | None = option(
        None, "attention kernel", choices=ATTN_IMPLEMENTATIONS, default_text="transformers' choice"
    )

    def load_keywords(self) -> dict[str, object]:
        """The loader's keywords (:func:`lens_embed.models.loading.load_lens_model`) of these options."""
        return {"dtype": self.dtype, "attn_implementation": self.attn_implementation}


@dataclass(kw_only=True)
class LoadOptions(PrecisionOptions):
    """Also ``--backend`` and ``--quantize``: which export runs the backbone, as sentence-transformers'
    ``backend`` and ``file_name`` (verbs that use a model, not those that build or save one)."""

    backend: str = option(
        "torch",
        "run the backbone on torch, or from the folder's export (lens-embed export) on ONNX Runtime or "
        "OpenVINO (CPU)",
        choices=BACKENDS,
    )
    quantize: str | None = option(
        None,
        "with --backend onnx|openvino: run the int8 export",
        choices=EXPORT_QUANTIZATIONS,
        default_text="the float32 one",
    )

    def load_keywords(self) -> dict[str, object]:
        """The loader's keywords: none for the backend on torch (the call stays as it was), else ``backend``
        and sentence-transformers' ``model_kwargs={"file_name": ...}``."""
        return {**super().load_keywords(), **backend_options(self)}


def backend_options(args: LoadOptions) -> dict[str, object]:
    """The loader's keywords for a verb's ``--backend`` / ``--quantize``: none for torch (the call stays
    as it was), else ``backend`` and sentence-transformers' ``model_kwargs={"file_name": ...}``."""
    backend, quantize = getattr(args, "backend", "torch"), getattr(args, "quantize", None)
    if backend == "torch":
        if quantize is not None:
            raise ValueError("--quantize needs --backend onnx or openvino")
        return {}
    return {"backend": backend, "model_kwargs": {"file_name": EXPORT_FILES[(backend, quantize)]}}


API_KEY_HELP = "the cluster's API key"


@dataclass(kw_only=True)
class ClusterOptions:
    """``--url`` (a Qdrant server or cluster) and ``--api-key``. ``--url`` excludes the verb's other
    places (``--path``: the exclusive group ``place``)."""

    url: str | None = option(
        None,
        "a Qdrant server or cluster, e.g. http://host:6333",
        exclusive="place",
        default_text="the in-process engine",
    )
    api_key: str | None = option(None, API_KEY_HELP, default_text=f"${QDRANT_API_KEY_ENV}")


@dataclass(kw_only=True)
class InstructionOptions:
    """``--instruction``: the instruction of queries."""

    instruction: str | None = option(None, "query instruction", default_text="the model's 'query' prompt")


@dataclass(kw_only=True)
class QueryOptions(InstructionOptions):
    """``--query`` and ``--instruction``: which side a verb embeds its texts as."""

    query: bool = option(False, "embed as instructed queries", negatable=False, default_text="documents")


def api_key(args: ClusterOptions) -> str | None:
    """``--api-key``, else the environment's key for a cluster."""
    return args.api_key or os.environ.get(QDRANT_API_KEY_ENV)
