"""Single-stage contrastive fine-tuning of LENS (and any sentence-transformers) models.

``train(TrainConfig(...))`` runs the authors' recipe on sentence-transformers' trainer;
``mine_negatives(...)`` adds hard negatives to jsonl training data. ``python -m lens_embed.training``
is the launcher entry (torchrun / accelerate). Names resolve on first use, so importing the
package (or :mod:`~lens_embed.training.config`, which the command's options read) loads neither torch
nor sentence-transformers.
"""

from __future__ import annotations

from lens_embed.base.lazy import lazy_exports

# the module that defines each public name -> those names
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".config": ("TrainConfig",),
        ".data": ("TYPE_KEYWORDS", "TaskData", "TrainingDataError", "load_tasks", "task_spec"),
        ".lora": ("LoraSettings", "apply_lora", "merge_and_save", "merge_lora"),
        ".losses": ("LensInfoNCELoss", "info_nce"),
        ".negatives": ("mine_negatives",),
        ".sampler": ("TaskHomogeneousBatchSampler",),
        ".trainer": ("LensTrainer", "build_trainer", "train"),
    },
)
