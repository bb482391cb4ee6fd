"""Single-stage contrastive fine-tuning of LENS (and any sentence-transformers) models.

``train(TrainConfig(...))`` runs the authors' recipe on sentence-transformers' trainer;
``mine_negatives(...)`` adds hard negatives to jsonl training data. ``python -m lens_embed.training``
is the launcher entry (torchrun / accelerate). Names resolve on first use, so importing the
package (or its CLI registration) loads neither torch nor sentence-transformers.
"""

from __future__ import annotations

from lens_embed.lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": ".config",
    "TYPE_KEYWORDS": ".data",
    "TaskData": ".data",
    "TrainingDataError": ".data",
    "load_tasks": ".data",
    "task_spec": ".data",
    "LoraSettings": ".lora",
    "apply_lora": ".lora",
    "merge_and_save": ".lora",
    "merge_lora": ".lora",
    "LensInfoNCELoss": ".losses",
    "info_nce": ".losses",
    "mine_negatives": ".negatives",
    "TaskHomogeneousBatchSampler": ".sampler",
    "LensTrainer": ".trainer",
    "build_trainer": ".trainer",
    "train": ".trainer",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
