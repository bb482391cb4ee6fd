"""The LENS fine-tuning run, on sentence-transformers' trainer.

Everything distributed is the stock engine: ``SentenceTransformerTrainer`` is a transformers
``Trainer``, so ``torchrun`` / ``accelerate launch`` DDP, DeepSpeed ZeRO (``--deepspeed cfg.json``),
bf16/fp16, gradient checkpointing, checkpointing and resuming all work as they do there. This module
only adds what LENS needs on top:

* one dataset split and one loss per task, sampled so every step is a single task on all ranks;
* LoRA on the backbone with the head frozen; checkpoints hold just the adapter (plus the trainer's
  optimizer/scheduler state), and the final model is the base with the adapter merged in, saved as
  a sentence-transformers model, with the adapter kept beside it;
* negatives mined once, by the main process, for rows that have none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
from torch.utils.data import BatchSampler, ConcatDataset
from transformers import TrainerCallback, set_seed
from transformers.trainer_utils import get_last_checkpoint

from lens_embed.training.data import (
    TaskData,
    build_train_dataset,
    effective_group_size,
    load_task,
    load_tasks,
    rows_without_negatives,
    write_jsonl,
)
from lens_embed.training.lora import (
    ADAPTER_DIRNAME,
    LoraSettings,
    apply_lora,
    is_peft_backbone,
    load_adapter_weights,
    merge_and_save,
    save_adapter,
)
from lens_embed.training.losses import DEFAULT_TEMPERATURE, LensInfoNCELoss
from lens_embed.training.negatives import mine_task
from lens_embed.training.sampler import TaskHomogeneousBatchSampler

logger = logging.getLogger(__name__)

CHECKPOINT_DIRNAME = "checkpoints"
MINED_DIRNAME = "mined"


@dataclass
class TrainConfig:
    """Every knob of a run. Defaults are the paper's recipe (LR 1e-4, batch 32 per device,
    group 8, temperature 0.02, LoRA r32/alpha64/dropout 0.1, one epoch, negatives across devices)."""

    model: str
    data: list[str]
    output: str
    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 1e-4
    batch_size: int = 32
    group_size: int = 8
    temperature: float = DEFAULT_TEMPERATURE
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_length: int | None = None
    mini_batch_size: int | None = None
    negatives_cross_device: bool = True
    distill_weight: float = 1.0
    lora: bool = True
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.1
    lora_target_modules: list[str] | None = None
    gradient_checkpointing: bool = False
    bf16: bool = False
    fp16: bool = False
    deepspeed: str | None = None
    gradient_accumulation_steps: int = 1
    mine: str = "model"
    mining_batch_size: int = 64
    seed: int = 42
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 2
    resume: bool = True
    report_to: list[str] = field(default_factory=lambda: ["none"])
    dataloader_num_workers: int = 0
    extra_args: dict[str, Any] = field(default_factory=dict)

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.output) / CHECKPOINT_DIRNAME

    @property
    def adapter_dir(self) -> Path:
        return Path(self.output) / ADAPTER_DIRNAME


class LensTrainer(SentenceTransformerTrainer):
    """``SentenceTransformerTrainer`` with task-homogeneous global batches and adapter checkpoints."""

    def get_multi_dataset_batch_sampler(
        self,
        dataset: ConcatDataset,
        batch_samplers: list[BatchSampler],
        generator: torch.Generator | None = None,
        seed: int | None = 0,
    ) -> BatchSampler:
        return TaskHomogeneousBatchSampler(
            dataset, batch_samplers, generator=generator, seed=seed or 0, world_size=self.args.world_size
        )

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """With LoRA, a checkpoint is the adapter only: the base and the frozen head never change."""
        if not is_peft_backbone(self.model):
            super()._save(output_dir, state_dict)
            return
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        save_adapter(self.model, output_dir, state_dict=state_dict or None)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, checkpoint_path: str, model: torch.nn.Module | None = None) -> None:
        """Resume: put the checkpoint's adapter weights back into the live adapter."""
        if not is_peft_backbone(self.model):
            super()._load_from_checkpoint(checkpoint_path)
            return
        load_adapter_weights(self.model, checkpoint_path)


def training_device() -> str:
    """This process's accelerator (``cuda:LOCAL_RANK`` under torchrun/accelerate), else the CPU.
    Loading there (not on ``cuda:0`` for every rank) keeps mining and the trainer's move cheap."""
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return "cpu"


def load_base_model(
    path: str | Path, config: TrainConfig | None = None, device: str | None = None
) -> SentenceTransformer:
    """Load the model to fine-tune (LENS models need their remote module code trusted)."""
    model = SentenceTransformer(str(path), trust_remote_code=True, device=device or training_device())
    if config is not None and config.max_length is not None:
        model.max_seq_length = config.max_length
    return model


def prepare_model(model: SentenceTransformer, config: TrainConfig) -> SentenceTransformer:
    """LoRA on the backbone (everything else frozen), and gradient checkpointing if asked."""
    if config.lora:
        apply_lora(
            model,
            LoraSettings(config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_target_modules),
        )
    else:
        for module in list(model)[1:]:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def _mined_path(config: TrainConfig, task: TaskData, count: int) -> Path:
    """Cache file of a task's mined rows, keyed by the rows, the method, the count and the model,
    so changed data or settings never reuse stale negatives."""
    key = json.dumps([task.rows, config.mine, count, str(config.model)], sort_keys=True).encode("utf-8")
    digest = hashlib.sha256(key).hexdigest()[:12]
    return Path(config.output) / MINED_DIRNAME / f"{task.name}.{digest}.jsonl"


def complete_negatives(
    tasks: list[TaskData], model: SentenceTransformer, config: TrainConfig, args: SentenceTransformerTrainingArguments
) -> list[TaskData]:
    """Mine negatives for rows that have none, once: the main process mines and writes
    ``OUTPUT/mined/<task>.<key>.jsonl``; the other processes (and resumed runs) read those files."""
    if not rows_without_negatives(tasks):
        return tasks
    completed = []
    with args.main_process_first(desc="mining hard negatives"):
        for task in tasks:
            completed.append(_complete_task(task, model, config))
    return completed


def _complete_task(task: TaskData, model: SentenceTransformer, config: TrainConfig) -> TaskData:
    """One task with every row holding negatives, from cache or freshly mined."""
    if not rows_without_negatives([task]):
        return task
    count = effective_group_size(task.spec, config.group_size) - 1
    cached = _mined_path(config, task, count)
    if cached.exists():
        (loaded,) = load_task(cached, name=task.name)
        return loaded
    logger.info("mining %d negatives per query for %s (%s)", count, task.name, config.mine)
    was_training = model.training
    model.eval()
    mined = mine_task(task, count, config.mine, model, config.mining_batch_size, only_missing=True)
    model.train(was_training)
    starved = [row for row in mined.rows if not row["neg"]]
    if starved:
        raise ValueError(f"{task.name}: {len(starved)} rows found no negative (task too small to mine from)")
    write_jsonl(mined.rows, cached)
    return mined


def build_losses(
    model: SentenceTransformer, tasks: list[TaskData], config: TrainConfig, world_size: int
) -> dict[str, LensInfoNCELoss]:
    """One loss per task: in-batch negatives (gathered across devices) unless the task is
    classification/clustering, where only the query's own group competes."""
    return {
        task.name: LensInfoNCELoss(
            model,
            temperature=config.temperature,
            in_batch_negatives=task.spec.in_batch_negatives,
            gather_across_devices=config.negatives_cross_device and world_size > 1 and task.spec.in_batch_negatives,
            mini_batch_size=config.mini_batch_size,
            distill_weight=config.distill_weight,
        )
        for task in tasks
    }


def training_arguments(config: TrainConfig) -> SentenceTransformerTrainingArguments:
    """The transformers/sentence-transformers arguments of a run."""
    return SentenceTransformerTrainingArguments(
        output_dir=str(config.checkpoint_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        warmup_ratio=config.warmup_ratio or None,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        bf16=config.bf16,
        fp16=config.fp16,
        deepspeed=config.deepspeed,
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        dataloader_drop_last=True,
        dataloader_num_workers=config.dataloader_num_workers,
        ddp_find_unused_parameters=False,
        report_to=config.report_to,
        disable_tqdm=False,
        **config.extra_args,
    )


def warn_small_tasks(tasks: list[TaskData], config: TrainConfig, world_size: int) -> None:
    """A task smaller than one global batch would silently contribute nothing: say so."""
    global_batch = config.batch_size * world_size
    for task in tasks:
        if len(task.rows) < global_batch:
            logger.warning(
                "%s has %d rows, fewer than one global batch (%d): it is skipped", task.name, len(task.rows), global_batch
            )


def build_trainer(
    config: TrainConfig, model: SentenceTransformer | None = None, callbacks: list[TrainerCallback] | None = None
) -> LensTrainer:
    """Everything up to ``trainer.train()``: model with LoRA, data with negatives, losses, trainer."""
    args = training_arguments(config)
    model = model if model is not None else load_base_model(config.model, config)
    tasks = load_tasks(config.data)
    tasks = complete_negatives(tasks, model, config, args)
    warn_small_tasks(tasks, config, args.world_size)
    set_seed(config.seed)  # the LoRA initialisation is then the same on every rank and every run
    prepare_model(model, config)
    dataset = build_train_dataset(tasks, config.group_size, seed=config.seed)
    losses = build_losses(model, tasks, config, args.world_size)
    return LensTrainer(model=model, args=args, train_dataset=dataset, loss=losses, callbacks=callbacks)


def resume_checkpoint(config: TrainConfig) -> str | None:
    """The last checkpoint of a previous run in the same output folder, if resuming."""
    if not config.resume or not config.checkpoint_dir.is_dir():
        return None
    return get_last_checkpoint(str(config.checkpoint_dir))


def save_final_model(trainer: LensTrainer, config: TrainConfig) -> Path:
    """Save the trained model to ``config.output``: merged with its adapter (kept in
    ``lora_adapter/``) when LoRA was used. The merge reloads the base on the main process so it
    works the same after DDP and after DeepSpeed ZeRO-3 (whose weights are sharded)."""
    output = Path(config.output)
    if not is_peft_backbone(trainer.model):
        trainer.save_model(str(output))
        return output
    trainer.save_model(str(config.adapter_dir))
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save:
        # Merge on the CPU: the trained copy may still occupy the accelerator.
        merge_and_save(load_base_model(config.model, config, device="cpu"), config.adapter_dir, output)
    trainer.accelerator.wait_for_everyone()
    return output


def train(
    config: TrainConfig, model: SentenceTransformer | None = None, callbacks: list[TrainerCallback] | None = None
) -> Path:
    """Fine-tune ``config.model`` on ``config.data``; returns the folder of the merged model."""
    trainer = build_trainer(config, model, callbacks)
    trainer.train(resume_from_checkpoint=resume_checkpoint(config))
    return save_final_model(trainer, config)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a flat dict (unknown keys are an error, naming them)."""
    known = {item.name for item in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
    return TrainConfig(**values)
