"""The ``train`` and ``mine-negatives`` verbs: argument parsing only, each verb calls the API."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lens_embed.training.losses import DEFAULT_TEMPERATURE
from lens_embed.training.negatives import MINING_METHODS


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``train`` (shared by ``lens-embed train`` and ``python -m lens_embed.train``)."""
    parser.add_argument("--model", required=True, help="sentence-transformers / LENS model folder to fine-tune")
    parser.add_argument("--data", required=True, nargs="+", help="jsonl files, folders of them, saved datasets, hf:NAME")
    parser.add_argument("--output", required=True, help="folder for the merged model, adapter and checkpoints")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (overrides --epochs)")
    parser.add_argument("--lr", type=float, default=1e-4, help="learning rate")
    parser.add_argument("--batch-size", type=int, default=32, help="queries per device per step")
    parser.add_argument("--group-size", type=int, default=8, help="1 positive + (group size - 1) hard negatives")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE, help="InfoNCE temperature")
    parser.add_argument("--warmup-ratio", type=float, default=0.0)
    parser.add_argument("--warmup-steps", type=int, default=0)
    parser.add_argument("--max-length", type=int, default=None, help="truncate texts to this many tokens")
    parser.add_argument(
        "--mini-batch-size", type=int, default=None, help="gradient caching: embed in chunks of this size"
    )
    parser.add_argument("--no-cross-device", action="store_true", help="do not gather negatives across devices")
    parser.add_argument("--distill-weight", type=float, default=1.0, help="weight of the KL term when data has scores")
    parser.add_argument("--no-lora", action="store_true", help="train all backbone weights instead of LoRA")
    parser.add_argument("--lora-r", type=int, default=32)
    parser.add_argument("--lora-alpha", type=int, default=64)
    parser.add_argument("--lora-dropout", type=float, default=0.1)
    parser.add_argument("--lora-target-modules", nargs="+", default=None, help="default: every projection")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPU)")
    parser.add_argument("--fp16", action="store_true", help="fp16 mixed precision (GPU)")
    parser.add_argument("--deepspeed", default=None, help="DeepSpeed config json (e.g. ZeRO stage 1/2/3)")
    parser.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    parser.add_argument("--mine", choices=MINING_METHODS, default="model", help="how to mine missing negatives")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--logging-steps", type=int, default=10)
    parser.add_argument("--save-steps", type=int, default=500)
    parser.add_argument("--save-total-limit", type=int, default=2)
    parser.add_argument("--no-resume", action="store_true", help="ignore checkpoints of an earlier run in --output")
    return parser


def config_from_args(args: argparse.Namespace) -> Any:
    """A TrainConfig from parsed ``train`` arguments."""
    from lens_embed.training.trainer import TrainConfig

    return TrainConfig(
        model=args.model,
        data=list(args.data),
        output=args.output,
        epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        group_size=args.group_size,
        temperature=args.temperature,
        warmup_ratio=args.warmup_ratio,
        warmup_steps=args.warmup_steps,
        max_length=args.max_length,
        mini_batch_size=args.mini_batch_size,
        negatives_cross_device=not args.no_cross_device,
        distill_weight=args.distill_weight,
        lora=not args.no_lora,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        lora_target_modules=args.lora_target_modules,
        gradient_checkpointing=args.gradient_checkpointing,
        bf16=args.bf16,
        fp16=args.fp16,
        deepspeed=args.deepspeed,
        gradient_accumulation_steps=args.grad_accum,
        mine=args.mine,
        seed=args.seed,
        logging_steps=args.logging_steps,
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        resume=not args.no_resume,
    )


def run_train(args: argparse.Namespace) -> int:
    """``train`` verb: fine-tune and print the folder of the merged model."""
    from lens_embed.training.trainer import train

    print(train(config_from_args(args)))
    return 0


def add_mine_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``mine-negatives``."""
    parser.add_argument("--model", default=None, help="model that mines (required for --method model)")
    parser.add_argument("--data", required=True, nargs="+", help="jsonl files / folders / datasets")
    parser.add_argument("--output", required=True, help="output .jsonl (one input) or folder (several)")
    parser.add_argument("--method", choices=MINING_METHODS, default="model")
    parser.add_argument("--num-negatives", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=64, help="encoding batch size")
    parser.add_argument("--only-missing", action="store_true", help="mine only for rows without negatives")
    return parser


def run_mine(args: argparse.Namespace) -> int:
    """``mine-negatives`` verb: write the data with mined negatives and print the files."""
    from lens_embed.training.negatives import mine_negatives

    if args.method == "model" and not args.model:
        raise ValueError("--model is required with --method model (or use --method bm25)")
    written = mine_negatives(
        args.data,
        Path(args.output),
        model=args.model,
        method=args.method,
        num_negatives=args.num_negatives,
        batch_size=args.batch_size,
        only_missing=args.only_missing,
    )
    for path in written:
        print(path)
    return 0


def add_training_commands(subparsers: Any) -> None:
    """Register ``train`` and ``mine-negatives`` on an ``argparse`` subparsers object; each parser's
    ``func`` default is the verb to call with the parsed namespace (returns an exit code)."""
    train_parser = subparsers.add_parser("train", help="fine-tune a LENS model (InfoNCE + LoRA)")
    add_train_arguments(train_parser).set_defaults(func=run_train)
    mine_parser = subparsers.add_parser("mine-negatives", help="add hard negatives to training jsonl")
    add_mine_arguments(mine_parser).set_defaults(func=run_mine)
