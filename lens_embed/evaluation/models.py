"""Turning a MODEL= argument into something mteb can run, with clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

from lens_embed.build import default_model_path
from lens_embed.evaluation.baselines import BM25_TASK_TYPES, MINILM_NAME, bm25, dense_minilm
from lens_embed.evaluation.mteb_model import LensEncoder, load_encoder, released_lens_meta
from lens_embed.evaluation.runner import ModelRun

RELEASED_PREFIX = "yibinlei/LENS-"


class ModelArgumentError(ValueError):
    """MODEL= names neither a model folder nor a released LENS model."""


def model_run(model: str | None, device: str | None = None) -> ModelRun:
    """The ModelRun for MODEL= (a folder, a released LENS name, or None for the embedded default)."""
    if model is None:
        path = Path(default_model_path())
        encoder = load_encoder(path, name=f"lens-embed/{path.name}", device=device, adapted_from=MINILM_NAME)
        return _loaded(encoder)
    if model.startswith(RELEASED_PREFIX) and not Path(model).exists():
        meta = released_lens_meta(model)
        return ModelRun(model, lambda: meta.load_model(device=device))
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelArgumentError(
            f"MODEL={model}: no such folder, and not a released LENS model ({RELEASED_PREFIX}d4000, {RELEASED_PREFIX}d8000)"
        )
    return _loaded(load_encoder(path, device=device))


def _loaded(encoder: LensEncoder) -> ModelRun:
    """Wrap an already-loaded encoder (loaded eagerly so a bad MODEL fails before any task runs)."""
    return ModelRun(str(encoder.mteb_model_meta.name), lambda: encoder)


def baseline_runs(device: str | None = None) -> list[ModelRun]:
    """Dense all-MiniLM-L6-v2 (all task types) and BM25 (retrieval only)."""
    return [
        ModelRun(MINILM_NAME, lambda: dense_minilm(device)),
        ModelRun("BM25 (bm25s)", bm25, task_types=BM25_TASK_TYPES),
    ]
