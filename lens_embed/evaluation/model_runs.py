"""The model runs of an evaluation: MODEL= (a folder, a released LENS name or the embedded default) and
the --baselines, each as a :class:`~lens_embed.evaluation.runner.ModelRun`, with clear errors for bad
input."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lens_embed.base.defaults import BASELINE_CHOICES, EXPORT_FILES
from lens_embed.base.storage import is_released_name
from lens_embed.evaluation.encoders import (
    BM25_TASK_TYPES,
    DEFAULT_INSTRUCTIONS,
    MINILM_NAME,
    LoadedModelEncoder,
    PlainModelEncoder,
    bm25,
    dense_minilm,
    load_encoder,
    released_lens_meta,
)
from lens_embed.evaluation.runner import ModelRun
from lens_embed.models.embedded import DEFAULT_NAME, default_model_path


class ModelArgumentError(ValueError):
    """MODEL= names neither a model folder nor a released LENS model."""


@dataclass(frozen=True)
class LoadOptions:
    """How every model of a run is loaded: device, precision, attention kernel, instructions, and the
    pruning of the model under evaluation (never of a baseline)."""

    device: str | None = None
    dtype: str | None = None
    attn_implementation: str | None = None
    instructions: str = DEFAULT_INSTRUCTIONS
    max_active_dims: int | None = None
    backend: str = "torch"
    quantize: str | None = None

    def loader_kwargs(self) -> dict[str, str | int | None]:
        """The model under evaluation's loading keywords (its backend and export file when not torch)."""
        exported = (
            {}
            if self.backend == "torch"
            else {"backend": self.backend, "file_name": EXPORT_FILES[(self.backend, self.quantize)]}
        )
        return {
            "dtype": self.dtype,
            "attn_implementation": self.attn_implementation,
            "instructions": self.instructions,
            "max_active_dims": self.max_active_dims,
            **exported,
        }


def model_run(model: str | None, options: LoadOptions | None = None) -> ModelRun:
    """The ModelRun for MODEL= (a folder, a released LENS name, or None for the embedded default)."""
    options = options or LoadOptions()
    if model is None:
        path = Path(default_model_path())
        encoder = load_encoder(
            path,
            name=f"lens-embed/{DEFAULT_NAME}",
            device=options.device,
            adapted_from=MINILM_NAME,
            **options.loader_kwargs(),
        )
        return _loaded(encoder)
    if is_released_name(model):
        released_lens_meta(model)  # a clear error now if mteb's registry lacks it
        # loaded directly, not through ModelMeta.load_model, which would turn these options into an
        # mteb experiment and move the results out of the leaderboard's <revision>/ folder
        return ModelRun(
            model, lambda: load_encoder(model, name=model, device=options.device, **options.loader_kwargs())
        )
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelArgumentError(
            f"MODEL={model}: no such folder, "
            "and not a released LENS model (yibinlei/LENS-d4000, yibinlei/LENS-d8000)"
        )
    return _loaded(load_encoder(path, device=options.device, **options.loader_kwargs()))


def _loaded(encoder: LoadedModelEncoder | PlainModelEncoder) -> ModelRun:
    """Wrap an already-loaded encoder (loaded eagerly so a bad MODEL fails before any task runs)."""
    return ModelRun(str(encoder.mteb_model_meta.name), lambda: encoder)


def baseline_runs(
    which: str = "all", options: LoadOptions | None = None, exclude: str | None = None
) -> list[ModelRun]:
    """Dense all-MiniLM-L6-v2 (all task types) and/or BM25 (retrieval only).

    Args:
        which: ``none``, ``minilm``, ``bm25`` or ``all``.
        options: how MiniLM is loaded (device, dtype, attention).
        exclude: the label of the model under evaluation: a baseline of that name is not run twice.
    """
    if which not in BASELINE_CHOICES:
        raise ValueError(f"baselines must be one of {', '.join(BASELINE_CHOICES)}, got {which!r}")
    options = options or LoadOptions()
    runs = []
    if which in ("minilm", "all") and exclude != MINILM_NAME:
        runs.append(
            ModelRun(
                MINILM_NAME, lambda: dense_minilm(options.device, options.dtype, options.attn_implementation)
            )
        )
    if which in ("bm25", "all"):
        runs.append(ModelRun("BM25 (bm25s)", bm25, task_types=BM25_TASK_TYPES))
    return runs
