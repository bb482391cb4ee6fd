"""Single-stage contrastive fine-tuning of LENS (and any sentence-transformers) models.

``train(TrainConfig(...))`` runs the paper's recipe on sentence-transformers' trainer;
``mine_negatives(...)`` adds hard negatives to jsonl training data.
"""

from lens_embed.training.data import TASK_TYPES, TaskData, TrainingDataError, build_train_dataset, load_tasks
from lens_embed.training.lora import LoraSettings, apply_lora, merge_and_save, merge_lora
from lens_embed.training.losses import LensInfoNCELoss, info_nce
from lens_embed.training.negatives import mine_negatives
from lens_embed.training.sampler import TaskHomogeneousBatchSampler
from lens_embed.training.trainer import LensTrainer, TrainConfig, build_trainer, train

__all__ = [
    "TASK_TYPES",
    "LensInfoNCELoss",
    "LensTrainer",
    "LoraSettings",
    "TaskData",
    "TaskHomogeneousBatchSampler",
    "TrainConfig",
    "TrainingDataError",
    "apply_lora",
    "build_train_dataset",
    "build_trainer",
    "info_nce",
    "load_tasks",
    "merge_and_save",
    "merge_lora",
    "mine_negatives",
    "train",
]
