"""The LENS fine-tuning run, on sentence-transformers' trainer.

Everything distributed is the stock engine: ``SentenceTransformerTrainer`` is a transformers
``Trainer``, so ``torchrun`` / ``accelerate launch`` DDP, DeepSpeed ZeRO (``--deepspeed cfg.json``),
fp16/bf16, gradient checkpointing, checkpointing and resuming all work as they do there. This module
only adds what LENS needs on top:

* one dataset split and one loss per task, sampled so every step is a single task on all ranks,
  with the task type's batch size (symmetric tasks: a total over all devices, as the authors);
* the query/document side of every column passed to the model by the collator (``router_mapping``):
  queries, and documents that carry the instruction (STS, clustering), are pooled as queries;
* LoRA on the backbone with the head frozen; checkpoints hold just the adapter (plus the trainer's
  optimizer/scheduler state), and the final model is the base with the adapter merged in, saved as
  a sentence-transformers model, with the adapter kept beside it, put in place in one rename;
* an output folder that belongs to one run: its configuration is recorded, a different run is
  refused, and resuming starts from the newest complete checkpoint;
* optionally SPLADE's FLOPS regulariser and the scale-invariant L1 term (sentence-transformers'
  ``SpladeLoss`` around the LENS loss, their weights warmed up quadratically by :class:`RegularizerWarmup`),
  with the mean active dimensions and L1 norms of queries and documents in the logs, so a run shows its
  vectors becoming sparse;
* optionally the per-position top-k pooling (``position_top_k``, set on the model before training, so the
  trainer pools as the saved model will; its straight-through temperature only while training).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import datasets
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
from sentence_transformers.sparse_encoder.callbacks.splade_callbacks import (
    SpladeRegularizerWeightSchedulerCallback,
)
from sentence_transformers.sparse_encoder.losses import SpladeLoss
from torch import nn
from torch.utils.data import BatchSampler, ConcatDataset
from transformers import TrainerCallback, set_seed

from lens_embed.base.defaults import TRAINING_RECORD, authors_dtype
from lens_embed.base.storage import check_writable, refuse_overlap
from lens_embed.models.model import LensSentenceTransformer
from lens_embed.training.config import TrainConfig, current_names, recorded_values
from lens_embed.training.data import (
    TaskData,
    TaskSpec,
    TrainingDataError,
    build_task_dataset,
    effective_group_size,
    has_teacher_scores,
    load_tasks,
    negative_columns,
    task_spec,
)
from lens_embed.training.lora import (
    LoraSettings,
    apply_lora,
    is_peft_backbone,
    load_adapter_weights,
    merge_and_save,
    save_adapter,
)
from lens_embed.training.losses import LensInfoNCELoss, LexiconFlopsLoss, LexiconL1Loss, sparsity_regularized
from lens_embed.training.negatives import MINED_DIRNAME, complete_task, load_model
from lens_embed.training.publish import link_tree, publish_folder
from lens_embed.training.sampler import TaskHomogeneousBatchSampler

logger = logging.getLogger(__name__)

RECORD_FILENAME = TRAINING_RECORD
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "adapter_model.bin", "pytorch_model.bin")


class LensTrainer(SentenceTransformerTrainer):
    """``SentenceTransformerTrainer`` with task-homogeneous global batches, a batch size per task,
    and adapter-only checkpoints."""

    def __init__(self, *args: Any, task_batch_sizes: list[int], **kwargs: Any) -> None:
        self.task_batch_sizes = task_batch_sizes
        super().__init__(*args, **kwargs)

    def get_multi_dataset_batch_sampler(
        self,
        dataset: ConcatDataset,
        batch_samplers: list[BatchSampler],
        generator: torch.Generator | None = None,
        seed: int | None = 0,
    ) -> BatchSampler:
        # The trainer builds every task's sampler with one batch size; each task gets its own here
        # (samplers arrive in the order of the train dataset's splits, as task_batch_sizes does).
        for sampler, size in zip(batch_samplers, self.task_batch_sizes, strict=True):
            sampler.batch_size = size
        return TaskHomogeneousBatchSampler(
            dataset, batch_samplers, generator=generator, seed=seed or 0, world_size=self.args.world_size
        )

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """With LoRA, a checkpoint is the adapter only: the base and the frozen head never change."""
        if not is_peft_backbone(self.model):
            super()._save(output_dir, state_dict)
            return
        if not self.args.should_save:  # as transformers' own _save: one process writes, the others wait
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

    def track_loss_components(self, loss: dict[str, torch.Tensor]) -> None:
        """The loss components, plus the mean active dimensions of this step's queries and documents as the
        FLOPS regularisers measured them and, with the L1 term, their unweighted L1 norms: logged like the
        components (averaged over the logging steps and the devices), as ``query_active_dims``,
        ``document_active_dims``, ``query_l1_norm`` and ``document_l1_norm``."""
        super().track_loss_components({**loss, **active_dimensions(self.loss)})


def active_dimensions(losses: nn.Module | dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """``{side}_active_dims`` measured by the FLOPS regularisers and ``{side}_l1_norm`` by the L1 term since
    they were last asked (the loss of the step just taken), then forgotten."""
    found: dict[str, torch.Tensor] = {}
    for loss in losses.values() if isinstance(losses, dict) else [losses]:
        for side in ("query", "document"):
            regularizer = getattr(loss, f"{side}_regularizer", None)
            active = regularizer.take_active_dims() if isinstance(regularizer, LexiconFlopsLoss) else None
            if active is not None:
                found[f"{side}_active_dims"] = active
        base = getattr(loss, "loss", None)
        if isinstance(base, LexiconL1Loss):
            found.update(base.take_l1_norms())
    return found


class RegularizerWarmup(SpladeRegularizerWeightSchedulerCallback):
    """sentence-transformers' warm-up of ``SpladeLoss``'s regulariser weights (SPLADE's quadratic one:
    ``weight * (step / warmup_steps) ** 2`` at the start of each step, the full weight from
    ``warmup_steps`` on), over a number of steps rather than only a ratio of all steps.

    Args:
        loss: the regularised loss.
        warmup_steps: steps (>= 1), a fraction of all steps (below 1, as the sentence-transformers
            callback's ``warmup_ratio``: at least one step), or 0 for the full weight from the first step.
    """

    def __init__(self, loss: SpladeLoss, warmup_steps: float) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        super().__init__(
            loss, scheduler_type="quadratic", warmup_ratio=warmup_steps if 0 < warmup_steps < 1 else 1.0
        )
        self.requested_warmup = warmup_steps
        base = loss.loss
        # the L1 term's full (document, query) weights, as the run configured them
        self.l1_weights = (
            (base.document_weight, base.query_weight) if isinstance(base, LexiconL1Loss) else None
        )

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        super().on_train_begin(args, state, control, **kwargs)
        if self.warmup_steps is not None and (self.requested_warmup == 0 or self.requested_warmup >= 1):
            self.warmup_steps = int(self.requested_warmup)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """The FLOPS weights (sentence-transformers' schedule), and the L1 term's on the same schedule."""
        super().on_step_begin(args, state, control, **kwargs)
        if self.l1_weights is not None and self.total_steps is not None:
            l1 = self.loss.loss
            l1.document_weight, l1.query_weight = (
                self._calculate_weight_value(state.global_step, weight) for weight in self.l1_weights
            )

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        super().on_log(args, state, control, logs=logs, **kwargs)
        if self.l1_weights is not None and logs is not None:
            logs["document_l1_weight"] = self.loss.loss.document_weight
            logs["query_l1_weight"] = self.loss.loss.query_weight


def training_device() -> str:
    """This process's accelerator (``cuda:LOCAL_RANK`` under torchrun/accelerate), else the CPU.
    Loading there (not on ``cuda:0`` for every rank) keeps mining and the trainer's move cheap."""
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return "cpu"


def load_base_model(config: TrainConfig, device: str | None = None) -> SentenceTransformer:
    """The model to fine-tune, through the one loader (released LENS names, lens-embed and
    sentence-transformers folders)."""
    model = load_model(
        config.model, device=device or training_device(), trust_remote_code=config.trust_remote_code
    )
    if config.max_seq_length is not None:
        model.max_seq_length = config.max_seq_length
    return apply_position_top_k(model, config)


def apply_position_top_k(model: SentenceTransformer, config: TrainConfig) -> SentenceTransformer:
    """The run's per-position top-k on the model's pooling (0: off; None keeps the model's), so the run
    trains, mines and saves with the pooling the trained model will serve with."""
    if config.position_top_k is None and config.topk_temperature is None:
        return model
    if not LensSentenceTransformer.is_lens_model(model):
        raise ValueError(
            f"position_top_k and topk_temperature set the LENS pooling; {config.model} is not a LENS model"
        )
    pooling = LensSentenceTransformer.lexicon(model)
    if config.position_top_k is not None:
        pooling.position_top_k = config.position_top_k or None
    if config.topk_temperature is not None and pooling.position_top_k is None:
        raise ValueError(
            f"topk_temperature relaxes the per-position top-k, which {config.model} does not use: "
            "set --position-top-k"
        )
    return model


def mixed_precision(config: TrainConfig, cuda: bool) -> tuple[bool, bool]:
    """``(fp16, bf16)`` of a run: ``auto`` is the authors' dtype (fp16 on a GPU) and fp32 on the CPU."""
    dtype = authors_dtype(cuda) if config.precision == "auto" else None
    return (config.precision == "fp16" or dtype == "float16"), config.precision == "bf16"


def uses_gradient_checkpointing(config: TrainConfig, cuda: bool) -> bool:
    """Gradient checkpointing unless set: on with a GPU (the authors'), off on the CPU."""
    return cuda if config.gradient_checkpointing is None else config.gradient_checkpointing


def prepare_model(
    model: SentenceTransformer, config: TrainConfig, gradient_checkpointing: bool
) -> SentenceTransformer:
    """LoRA on the backbone (everything else frozen, the special-token rows included), and
    gradient checkpointing if chosen."""
    if config.lora:
        apply_lora(
            model,
            LoraSettings(config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_target_modules),
        )
    else:
        for module in list(model)[1:]:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.topk_temperature is not None:  # training only: never saved, never changes a value
        LensSentenceTransformer.lexicon(model).topk_temperature = config.topk_temperature
    return model


def task_keys(tasks: list[TaskData]) -> list[str]:
    """A split/loss key per task: its name, made a valid and free module name (``train`` or
    ``eval.v2`` are file names torch's ModuleDict refuses), unique across the run."""
    keys: list[str] = []
    for task in tasks:
        key = task.name.replace(".", "_")
        while hasattr(nn.ModuleDict, key) or key in keys:
            key += "_"
        keys.append(key)
    return keys


def per_device_batch_size(spec: TaskSpec, config: TrainConfig, world_size: int) -> int:
    """Queries per device per step: ``batch_size`` for retrieval-type tasks, and for symmetric
    ones ``symmetric_batch_size`` shared by all devices (the authors' ``// num_processes``)."""
    if not spec.symmetric:
        return config.batch_size
    size = config.symmetric_batch_size // world_size
    if size < 1:
        raise ValueError(
            f"symmetric_batch_size {config.symmetric_batch_size} is smaller than the {world_size} devices"
        )
    return size


def distills(spec: TaskSpec, config: TrainConfig) -> bool:
    """Whether a task's teacher scores are used: by default only on in-batch tasks (the authors')."""
    return config.distill_weight > 0 and (config.distill_tasks == "all" or spec.in_batch_negatives)


def column_sides(spec: TaskSpec, group_size: int) -> dict[str, str]:
    """Column -> ``query``/``document`` for the collator: instructed documents are pooled as queries."""
    side = "query" if spec.instructed_documents else "document"
    return {"query": "query", "positive": side, **{column: side for column in negative_columns(group_size)}}


def fillable_tasks(tasks: list[TaskData], sizes: list[int], world_size: int) -> list[int]:
    """Indices of the tasks with at least one global batch; the others are named in a warning, and
    a run where none is left fails."""
    kept = []
    for index, (task, size) in enumerate(zip(tasks, sizes, strict=True)):
        if len(task.rows) >= size * world_size:
            kept.append(index)
        else:
            logger.warning(
                "%s has %d rows, fewer than one global batch (%d): it is skipped",
                task.name,
                len(task.rows),
                size * world_size,
            )
    if not kept:
        raise TrainingDataError(
            "no task has enough rows for one global batch ("
            + ", ".join(
                f"{task.name}: {len(task.rows)} < {size * world_size}"
                for task, size in zip(tasks, sizes, strict=True)
            )
            + "); lower --batch-size / --symmetric-batch-size or add data"
        )
    return kept


def regularized(config: TrainConfig) -> bool:
    """Whether the run adds the FLOPS regulariser or the L1 term (a weight above 0); else the loss is
    exactly the LENS loss."""
    return (
        max(
            config.document_regularizer_weight,
            config.query_regularizer_weight,
            config.document_l1_weight,
            config.query_l1_weight,
        )
        > 0
    )


def build_losses(
    model: SentenceTransformer, specs: dict[str, TaskSpec], config: TrainConfig, world_size: int
) -> dict[str, LensInfoNCELoss | SpladeLoss]:
    """One loss per task key: in-batch negatives (gathered across devices) unless the task is
    classification/clustering, where only the query's own group competes; with a regulariser weight,
    that loss inside SPLADE's (:func:`sparsity_regularized`), which then does the gradient caching."""
    scale = 1.0 / world_size if config.gathered_loss_scale == "devices" else 1.0
    sparse = regularized(config)
    if sparse and not LensSentenceTransformer.is_lens_model(model):
        flops = config.document_regularizer_weight > 0 or config.query_regularizer_weight > 0
        term = (
            "the FLOPS regulariser (--document/--query-regularizer-weight)"
            if flops
            else "the L1 sparsity term (--document/--query-l1-weight)"
        )
        raise ValueError(f"{term} acts on LENS lexicon vectors, and {config.model} is not a LENS model")
    losses: dict[str, LensInfoNCELoss | SpladeLoss] = {}
    for key, spec in specs.items():
        loss = LensInfoNCELoss(
            model,
            temperature=config.temperature,
            in_batch_negatives=spec.in_batch_negatives,
            gather_across_devices=config.negatives_cross_device
            and world_size > 1
            and spec.in_batch_negatives,
            mini_batch_size=None if sparse else config.mini_batch_size,
            distill_weight=config.distill_weight if distills(spec, config) else 0.0,
            gathered_gradient_scale=scale,
        )
        losses[key] = (
            sparsity_regularized(
                loss,
                LensSentenceTransformer.lexicon(model).n_clusters,
                config.document_regularizer_weight,
                config.query_regularizer_weight,
                config.mini_batch_size,
                config.document_l1_weight,
                config.query_l1_weight,
                config.sparsity_term,
                config.count_epsilon,
            )
            if sparse
            else loss
        )
    return losses


def training_arguments(
    config: TrainConfig, cuda: bool, router_mapping: dict[str, dict[str, str]] | None = None
) -> SentenceTransformerTrainingArguments:
    """The transformers/sentence-transformers arguments of a run."""
    fp16, bf16 = mixed_precision(config, cuda)
    return SentenceTransformerTrainingArguments(
        output_dir=str(config.checkpoint_dir),
        # Launched as several processes without a GPU, accelerate forms a process group (gloo) only when
        # told the run is on the CPU; otherwise every process would train alone and all of them would save.
        use_cpu=not cuda and int(os.environ.get("WORLD_SIZE", "1")) > 1,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        fp16=fp16,
        bf16=bf16,
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
        router_mapping=router_mapping or {},
        disable_tqdm=False,
        **config.extra_args,
    )


def check_output(config: TrainConfig) -> None:
    """Refuse an output that is the model (or holds it, or lies inside it): the merge would write
    over the base, and a rerun would merge the adapter into an already merged model. Refuse a mount
    point too, before training rather than after it: the model is put in place by renaming the run
    folder, which a mount point cannot be. A file, or a place this process cannot write in, is refused as
    every verb's output is (:func:`check_writable`)."""
    refuse_overlap(config.output, "--output", config.model, "the model")
    check_writable(config.output, "--output", folder=True)
    if os.path.ismount(Path(config.output).resolve()):
        raise ValueError(
            f"--output {config.output} is a mount point: "
            "the trained model is put in place by renaming the run folder, so use a folder inside it"
        )


def prepare_output(config: TrainConfig) -> None:
    """Make ``config.output`` this run's folder: a new or empty folder gets the run's recorded
    configuration; a folder recording the same run is resumed; a different run that trained
    (checkpoints or a saved model) is refused unless ``overwrite`` (then its folder is cleared
    first), one that never got that far is replaced; a folder with other files is refused."""
    check_output(config)
    output = Path(config.output)
    record = output / RECORD_FILENAME
    wanted = json.loads(json.dumps(recorded_values(config)))
    if record.is_file():
        previous = current_names(json.loads(record.read_text(encoding="utf-8")))
        if previous == wanted:
            return
        trained = config.checkpoint_dir.exists() or (output / "modules.json").exists()
        if trained and not config.overwrite:
            changed = sorted(
                key for key in set(previous) | set(wanted) if previous.get(key) != wanted.get(key)
            )
            raise FileExistsError(
                f"{output} holds another training run (different {', '.join(changed)}); "
                "use another --output, or --overwrite to start over"
            )
        if config.overwrite:
            shutil.rmtree(output)
    elif output.is_dir() and any(output.iterdir()):
        raise FileExistsError(
            f"{output} is not empty and holds no lens-embed training run; choose another --output"
        )
    output.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def is_complete_checkpoint(path: Path) -> bool:
    """A checkpoint the trainer finished writing: weights, optimizer state and a readable state."""
    state = path / "trainer_state.json"
    if not state.is_file() or not any((path / name).is_file() for name in WEIGHT_FILES):
        return False
    if not ((path / "optimizer.pt").is_file() or any(path.glob("global_step*"))):
        return False
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def resume_checkpoint(config: TrainConfig) -> str | None:
    """The newest complete checkpoint of this run, if resuming (incomplete newer ones are skipped)."""
    if not config.resume or not config.checkpoint_dir.is_dir():
        return None
    numbered = []
    for path in config.checkpoint_dir.iterdir():
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and path.is_dir():
            numbered.append((int(match.group(1)), path))
    for _, path in sorted(numbered, reverse=True):
        if is_complete_checkpoint(path):
            return str(path)
        logger.warning("%s was written only in part; resuming from an older checkpoint", path)
    return None


def build_trainer(
    config: TrainConfig,
    model: SentenceTransformer | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> LensTrainer:
    """Everything up to ``trainer.train()``: model with LoRA, data with negatives, one loss and one
    batch size per task, the column sides, the trainer.

    Args:
        config: the run.
        model: an already loaded model to train (default: ``config.model`` through the one loader).
        callbacks: extra transformers callbacks.
    """
    cuda = torch.cuda.is_available()
    args = training_arguments(config, cuda)
    with args.main_process_first(desc="preparing the output folder"):
        prepare_output(config)
    model = apply_position_top_k(model, config) if model is not None else load_base_model(config)
    tasks = load_tasks(config.data)
    with args.main_process_first(desc="mining hard negatives"):
        tasks = [
            complete_task(
                task,
                effective_group_size(task.spec, config.group_size) - 1,
                config.mine,
                model,
                Path(config.output) / MINED_DIRNAME,
                str(config.model),
                config.mining_batch_size,
            )
            for task in tasks
        ]
    specs = [task_spec(task.task_type, config.document_instructions) for task in tasks]
    sizes = [per_device_batch_size(spec, config, args.world_size) for spec in specs]
    kept = fillable_tasks(tasks, sizes, args.world_size)
    keys = task_keys(tasks)
    set_seed(config.seed)  # the LoRA initialisation is then the same on every rank and every run
    prepare_model(model, config, uses_gradient_checkpointing(config, cuda))
    dataset = datasets.DatasetDict(
        {
            keys[index]: build_task_dataset(
                tasks[index],
                config.group_size,
                config.seed,
                specs[index],
                with_scores=distills(specs[index], config) and has_teacher_scores(tasks[index].rows),
            )
            for index in kept
        }
    )
    args.router_mapping = {
        keys[index]: column_sides(specs[index], effective_group_size(specs[index], config.group_size))
        for index in kept
    }
    losses = build_losses(model, {keys[index]: specs[index] for index in kept}, config, args.world_size)
    trainer = LensTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=losses,
        callbacks=callbacks,
        task_batch_sizes=[sizes[index] for index in kept],
    )
    for loss in trainer.loss.values():
        if isinstance(loss, SpladeLoss):
            # Second in line, as sentence-transformers' sparse trainer places it: the weights it logs reach
            # the integrations after it.
            trainer.callback_handler.callbacks.insert(
                1, RegularizerWarmup(loss, config.regularizer_warmup_steps)
            )
    return trainer


def save_final_model(trainer: LensTrainer, config: TrainConfig) -> Path:
    """Put the trained model in ``config.output``: merged with its adapter (kept in ``lora_adapter/``)
    when LoRA was used, else as trained.

    Every process takes part in the trainer's final save (DeepSpeed ZeRO-3 gathers its shards
    there), which goes to ``config.final_save_dir``; the main process then builds the model beside
    the run folder and puts it in place with the run's own entries in one rename
    (:func:`publish_folder`), so ``config.output`` never holds part of a model and a killed save
    reruns from the newest checkpoint. The merge reloads the base on the main process so it works
    the same after DDP and after ZeRO-3 (whose weights are sharded), and on the CPU: the trained
    copy may still occupy the accelerator."""
    output, final = Path(config.output), config.final_save_dir
    lora = is_peft_backbone(trainer.model)
    trainer.save_model(str(final))
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save:
        if lora:
            merge_and_save(load_base_model(config, device="cpu"), final, output)
        else:
            publish_folder(output, lambda staging: link_tree(final, staging), consumed=[final.name])
    trainer.accelerator.wait_for_everyone()
    return output


def train(
    config: TrainConfig,
    model: SentenceTransformer | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> Path:
    """Fine-tune ``config.model`` on ``config.data``; returns the folder of the merged model.

    Args:
        config: the run (defaults are the authors' recipe, see :class:`TrainConfig`).
        model: an already loaded model to train instead of loading ``config.model``.
        callbacks: extra transformers callbacks (e.g. to stop early).

    Raises:
        FileExistsError: ``config.output`` holds another run (and ``overwrite`` is off).
        TrainingDataError: bad data (naming file and line), or no task fills one batch.
    """
    trainer = build_trainer(config, model, callbacks)
    trainer.train(resume_from_checkpoint=resume_checkpoint(config))
    return save_final_model(trainer, config)
