"""The options of a training run, declared once.

:class:`TrainConfig` is the single declaration: every field carries its help text in its metadata
(:func:`lens_embed.base.options.option`), and :func:`lens_embed.base.options.add_arguments` generates the
``lens-embed train`` / ``python -m lens_embed.training`` options from it (``learning_rate`` ->
``--learning-rate``, booleans as ``--x/--no-x``), so the API, the CLI and the recorded run configuration
can never drift apart. A numeric field's bounds are
declared once too, as its :mod:`lens_embed.base.cli_args` validator: the CLI refuses a bad value at parse
time (exit 2) and ``TrainConfig(...)`` with a ``ValueError`` naming the field, before anything loads.
Imports only the standard library, :mod:`lens_embed.base.cli_args`, :mod:`lens_embed.base.options` and
:mod:`lens_embed.base.vocabulary`.

Defaults are the authors' recipe (LENS, Lei et al. 2025; their public training code): LR 1e-4 with 100
warmup steps then linear decay, 32 queries per device for retrieval (512 on their 16 GPUs) and 256 in
total for symmetric tasks, group 8, temperature 0.02, LoRA r32/alpha64/dropout 0.1, one epoch,
negatives gathered across devices, fp16 and gradient checkpointing on GPU. What trains sparse LENS vectors
is off by default: the FLOPS regulariser (SPLADE's, as sentence-transformers' ``SpladeLoss``), the
scale-invariant L1 term, and the per-position top-k pooling (with its straight-through temperature).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lens_embed.base.cli_args import (
    bounded_int,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
)
from lens_embed.base.options import check_values, option
from lens_embed.base.vocabulary import DENSE_POOLING_MODES

DEFAULT_TEMPERATURE = 0.02
CHECKPOINT_DIRNAME = "checkpoints"
ADAPTER_DIRNAME = "lora_adapter"
FINAL_SAVE_DIRNAME = ".final-save"
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
MINING_METHODS = ("model", "bm25")
DISTILL_TASKS = ("in-batch", "all")
SPARSITY_TERMS = ("l1", "count")
"""The per-vector sparsity terms of ``--document/--query-l1-weight``: the L1 norm of the L2-normalised lexicon
vector, or a smooth count of its active dimensions (:mod:`lens_embed.training.losses`)."""
DEFAULT_COUNT_EPSILON = 0.01
DOCUMENT_INSTRUCTIONS = ("sts-clustering", "symmetric")
GATHERED_LOSS_SCALES = ("devices", "global")
NO_DENSE = "none"  # the recipe's spelling of a lexicon-only LENS model (the build's dense_pooling=None)


@dataclass
class TrainConfig:
    """Every knob of a training run (see the module docstring for the recipe the defaults are)."""

    model: str = option(
        help="model to fine-tune: a lens-embed / sentence-transformers folder or a released "
        "LENS name (yibinlei/LENS-d4000|d8000)"
    )
    data: list[str] = option(
        help="jsonl files, folders of them (searched recursively, e.g. bge-full-data), "
        "saved datasets, hf:NAME[:SPLIT]"
    )
    output: str = option(
        help="folder for the merged model, adapter, checkpoints and the recorded configuration",
        output="folder",
    )
    epochs: float = option(1.0, "passes over the data", check=positive_float)
    max_steps: int = option(
        -1, "stop after this many optimizer steps (overrides --epochs; -1: no limit)", check=bounded_int(-1)
    )
    learning_rate: float = option(1e-4, "peak learning rate", flags=("--lr",), check=positive_float)
    warmup_steps: float = option(
        100,
        "linear warmup steps (a fraction of all steps when below 1), then "
        "linear decay to 0 (the authors: 100 steps)",
        check=non_negative_float,
    )
    lr_scheduler: str = option("linear", "transformers scheduler name (linear = the authors' decay)")
    weight_decay: float = option(0.0, "AdamW weight decay", check=non_negative_float)
    max_grad_norm: float = option(1.0, "gradient clipping norm (0: no clipping)", check=non_negative_float)
    batch_size: int = option(
        32,
        "queries per device per step for retrieval-type tasks (the authors: 32 x 16 GPUs)",
        check=positive_int,
    )
    symmetric_batch_size: int = option(
        256,
        "queries per step IN TOTAL (all devices) for symmetric tasks "
        "(type containing 'symmetric'); per device: this // number of devices",
        check=positive_int,
    )
    group_size: int = option(
        8, "1 positive + (group size - 1) hard negatives per query", check=bounded_int(2)
    )
    temperature: float = option(DEFAULT_TEMPERATURE, "InfoNCE temperature", check=positive_float)
    max_seq_length: int | None = option(
        None, "truncate texts to this many tokens (default: the model's)", check=positive_int
    )
    mini_batch_size: int | None = option(
        None, "gradient caching: embed in chunks of this many texts", check=positive_int
    )
    negatives_cross_device: bool = option(True, "gather in-batch negatives across devices")
    gathered_loss_scale: str = option(
        "devices",
        "gradient under gathered negatives: 'devices' = global loss / number of devices (the "
        "authors'), 'global' = the global loss",
        choices=GATHERED_LOSS_SCALES,
    )
    distill_weight: float = option(
        1.0, "weight of the KL term on teacher scores (pos_scores/neg_scores)", check=non_negative_float
    )
    document_regularizer_weight: float = option(
        0.0,
        "FLOPS regulariser (SPLADE) weight on the documents (positive and negative columns): > 0 trains "
        "sparse LENS vectors; 0: off, the plain LENS loss",
        check=non_negative_float,
    )
    query_regularizer_weight: float = option(
        0.0,
        "FLOPS regulariser (SPLADE) weight on the queries (first column); 0: queries unregularised",
        check=non_negative_float,
    )
    regularizer_warmup_steps: float = option(
        1 / 3,
        "the regulariser weights grow quadratically from 0 over this many steps "
        "(SPLADE's warm-up; a fraction of all steps when below 1, sentence-transformers' 1/3 by default; "
        "0: full weight from the first step)",
        check=non_negative_float,
    )
    position_top_k: int | None = option(
        None,
        "sparse LENS: train (and save) the model with each pooled position keeping only its K largest "
        "cluster logits before the max over positions, queries and documents alike; 0: off; default: the "
        "model's own setting",
        check=non_negative_int,
    )
    topk_temperature: float | None = option(
        None,
        "straight-through top-k: the forward pass keeps the exact top K, the backward pass takes the "
        "gradient of a sigmoid relaxation around each position's K-th logit at this temperature (logit "
        "units), so clusters just outside the top K learn whether to enter; default: the gradient passes "
        "through the kept logits only",
        check=positive_float,
    )
    document_l1_weight: float = option(
        0.0,
        "scale-invariant sparsity term on the documents: the L1 norm of the L2-normalised lexicon vector "
        "(1 one-hot, sqrt(K) flat), warmed up as the FLOPS weights; 0: off",
        check=non_negative_float,
    )
    query_l1_weight: float = option(
        0.0, "the same term on the queries (first column); 0: off", check=non_negative_float
    )
    sparsity_term: str = option(
        "l1",
        "the term those weights weigh: 'l1' (above) or 'count', sum_j u_j / (u_j + --count-epsilon) of the "
        "unit lexicon vector u, a smooth count of its active dimensions that pushes small weights out",
        choices=SPARSITY_TERMS,
    )
    count_epsilon: float = option(
        DEFAULT_COUNT_EPSILON, "the count term's scale (a unit vector's weight)", check=positive_float
    )
    distill_tasks: str = option(
        "in-batch",
        "which tasks distil: 'in-batch' (the authors': only tasks with "
        "in-batch negatives) or 'all' scored tasks",
        choices=DISTILL_TASKS,
    )
    document_instructions: str = option(
        "sts-clustering",
        "which tasks' documents carry the instruction: 'sts-clustering' (the authors') or "
        "every 'symmetric' type",
        choices=DOCUMENT_INSTRUCTIONS,
    )
    lora: bool = option(True, "train a LoRA adapter (else every backbone weight)")
    lora_r: int = option(32, "LoRA rank", check=positive_int)
    lora_alpha: int = option(64, "LoRA alpha", check=positive_int)
    lora_dropout: float = option(0.1, "LoRA dropout", check=probability)
    lora_target_modules: list[str] | None = option(None, "modules LoRA wraps (default: every projection)")
    precision: str = option(
        "auto", "mixed precision: auto = fp16 on GPU (the authors'), fp32 on CPU", choices=PRECISIONS
    )
    gradient_checkpointing: bool | None = option(
        None, "recompute activations in backward (default: on with a GPU)"
    )
    deepspeed: str | None = option(
        None, "DeepSpeed config json (e.g. lens_embed/training/configs/zero2.json)"
    )
    gradient_accumulation_steps: int = option(
        1, "gradient accumulation steps", flags=("--grad-accum",), check=positive_int
    )
    mine: str = option("model", "how to mine negatives for rows that have none", choices=MINING_METHODS)
    mining_batch_size: int = option(64, "encoding batch size when mining", check=positive_int)
    seed: int = option(42, "seed of sampling, LoRA initialisation and data order", check=non_negative_int)
    logging_steps: int = option(10, "log every this many steps", check=positive_int)
    save_steps: int = option(500, "checkpoint every this many steps", check=positive_int)
    save_total_limit: int | None = option(2, "checkpoints kept", check=positive_int)
    resume: bool = option(True, "resume from the newest complete checkpoint of the same run in --output")
    overwrite: bool = option(False, "start over in an --output that holds another run")
    trust_remote_code: bool = option(False, "allow a model to run its own code when loaded")
    report_to: list[str] = option(help="transformers integrations to report to", factory=lambda: ["none"])
    dataloader_num_workers: int = option(0, "data loader worker processes", check=non_negative_int)
    extra_args: dict[str, Any] = option(
        help="more SentenceTransformerTrainingArguments", factory=dict, cli=False
    )

    def __post_init__(self) -> None:
        """Refuse a value out of its field's bounds or choices (the CLI's parse-time checks, for the API)."""
        check_values(self)
        if self.topk_temperature is not None and self.position_top_k == 0:
            raise ValueError(
                "TrainConfig topk_temperature: needs a per-position top-k, and position_top_k is 0 (off)"
            )

    @property
    def checkpoint_dir(self) -> Path:
        """Where the trainer writes ``checkpoint-N`` folders."""
        return Path(self.output) / CHECKPOINT_DIRNAME

    @property
    def adapter_dir(self) -> Path:
        """Where the trained LoRA adapter is kept beside the merged model."""
        return Path(self.output) / ADAPTER_DIRNAME

    @property
    def final_save_dir(self) -> Path:
        """Where the trainer's final save (the adapter, or the whole model without LoRA) waits until
        the model is put in place, which removes it."""
        return Path(self.output) / FINAL_SAVE_DIRNAME


# Fields that do not change what a run computes: a rerun may differ in them and still resume.
NOT_RECORDED = frozenset(
    {
        "resume",
        "overwrite",
        "logging_steps",
        "save_steps",
        "save_total_limit",
        "report_to",
        "dataloader_num_workers",
        "mining_batch_size",
        "trust_remote_code",
    }
)


# Fields added since runs were first recorded, with the value that reproduces a run recorded without them:
# a run folder recorded before they existed still resumes.
ADDED = {
    "document_regularizer_weight": 0.0,
    "query_regularizer_weight": 0.0,
    "regularizer_warmup_steps": 1 / 3,
    "position_top_k": None,
    "topk_temperature": None,
    "document_l1_weight": 0.0,
    "query_l1_weight": 0.0,
    "sparsity_term": "l1",
    "count_epsilon": DEFAULT_COUNT_EPSILON,
}


# Fields renamed since they were first recorded, old name -> name now (``max_seq_length`` as
# sentence-transformers names it): a run folder recorded before the rename still resumes.
RENAMED = {"max_length": "max_seq_length"}


def recorded_values(config: TrainConfig) -> dict[str, Any]:
    """The configuration that identifies a run (JSON-ready), compared when an output is reused."""
    values = dataclasses.asdict(config)
    return {key: value for key, value in values.items() if key not in NOT_RECORDED}


def current_names(recorded: dict[str, Any]) -> dict[str, Any]:
    """A recorded configuration with every renamed field under its name now, and every field added since at
    the value that reproduces the recorded run."""
    return {**ADDED, **{RENAMED.get(key, key): value for key, value in recorded.items()}}


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """The knobs of the embedded default's training (:mod:`lens_embed.training.default_recipe`,
    ``lens-embed train-default``); the defaults are the shipped model's. Most are the :class:`TrainConfig`
    options of the run it makes; sparse LENS: ``position_top_k`` and ``topk_temperature`` (0: off) and
    the L1 weights; a hybrid: ``dense_pooling`` (the base built with a dense part, trained with it)."""

    steps: int = option(150, "optimizer steps", check=positive_int)
    batch_size: int = option(32, "queries per step, every task alike", check=positive_int)
    group_size: int = option(4, "1 positive + (group size - 1) hard negatives per query", check=positive_int)
    learning_rate: float = option(2e-4, "peak learning rate", check=positive_float)
    warmup: float = option(
        0.1, "linear warmup steps (a fraction of all steps when below 1)", check=positive_float
    )
    max_seq_length: int = option(256, "truncate texts to this many tokens", check=positive_int)
    teacher_temperature: float = option(
        0.05, "the teacher's scores are its cosines divided by this", check=positive_float
    )
    distill_weight: float = option(1.0, "weight of the KL term on the teacher's scores", check=positive_float)
    negatives: int = option(
        7, "the teacher's hardest negatives given to a row without any", check=positive_int
    )
    banking_per_label: int = option(40, "Banking77 queries per label", check=positive_int)
    banking_positives: int = option(8, "same-label positives per Banking77 query", check=positive_int)
    lora_r: int = option(32, "LoRA rank", check=positive_int)
    lora_alpha: int = option(64, "LoRA alpha", check=positive_int)
    document_instructions: str = option(
        "sts-clustering", "which tasks' documents carry the instruction", choices=DOCUMENT_INSTRUCTIONS
    )
    document_regularizer_weight: float = option(
        1.0, "FLOPS regulariser weight on the documents (0: off)", check=non_negative_float
    )
    query_regularizer_weight: float = option(
        0.5, "FLOPS regulariser weight on the queries (0: off)", check=non_negative_float
    )
    position_top_k: int = option(0, "per-position top-k of the pooling (0: off)", check=non_negative_int)
    topk_temperature: float = option(
        0.0, "straight-through top-k temperature (0: off; needs --position-top-k)", check=non_negative_float
    )
    document_l1_weight: float = option(
        0.0, "scale-invariant L1 term on the documents (0: off)", check=non_negative_float
    )
    query_l1_weight: float = option(
        0.0, "scale-invariant L1 term on the queries (0: off)", check=non_negative_float
    )
    sparsity_term: str = option(
        "l1", "the term the L1 weights weigh: 'l1' or 'count' (a smooth count)", choices=SPARSITY_TERMS
    )
    count_epsilon: float = option(DEFAULT_COUNT_EPSILON, "the count term's scale", check=positive_float)
    dense_pooling: str = option(
        NO_DENSE,
        "train a hybrid: the LENS vector with a normalised dense vector of this pooling appended "
        "(the sparsity terms act on the lexicon part only); none: lexicon only",
        choices=(NO_DENSE, *DENSE_POOLING_MODES),
    )
    seed: int = option(42, "seed of the data, the sampling and LoRA", check=non_negative_int)

    def __post_init__(self) -> None:
        """Refuse a value out of its field's bounds or choices (the CLI's parse-time checks, for the API)."""
        check_values(self)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a flat dict (unknown keys are an error, naming them)."""
    known = {item.name for item in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        named = (f"{key} (now {RENAMED[key]})" if key in RENAMED else key for key in unknown)
        raise ValueError(f"unknown training option(s): {', '.join(named)}")
    return TrainConfig(**values)
