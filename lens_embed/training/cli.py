"""The ``train`` and ``mine-negatives`` verbs: parsers generated from :class:`TrainConfig`, and the
run functions. Nothing heavy is imported until a verb runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lens_embed.cli_args import declare_output, positive_int
from lens_embed.options import add_arguments, from_namespace
from lens_embed.training.config import MINING_METHODS, TrainConfig


def run_train(args: argparse.Namespace) -> int:
    """``train`` verb: fine-tune and print the folder of the merged model."""
    from lens_embed.training.trainer import train

    print(train(from_namespace(TrainConfig, args)))
    return 0


def add_mine_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``mine-negatives``."""
    parser.add_argument("--model", default=None, help="model that mines (required for --method model)")
    parser.add_argument("--data", required=True, nargs="+", help="jsonl files / folders / datasets")
    parser.add_argument("--output", required=True, help="output .jsonl (one input) or folder (several)")
    parser.add_argument("--method", choices=MINING_METHODS, default="model")
    parser.add_argument("--num-negatives", type=positive_int, default=7, help="negatives to add per row")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="encoding batch size")
    parser.add_argument("--only-missing", action="store_true", help="mine only for rows without negatives")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing output files (never an input file)"
    )
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="allow the model to run its own code"
    )
    declare_output(parser, "output", "--output", folder=None)  # a .jsonl file, or a folder of them
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
        overwrite=args.overwrite,
        trust_remote_code=args.trust_remote_code,
    )
    for path in written:
        print(path)
    return 0


def add_training_commands(subparsers: Any) -> None:
    """Register ``train`` and ``mine-negatives`` on an ``argparse`` subparsers object; each parser's
    ``func`` default is the verb to call with the parsed namespace (returns an exit code)."""
    train_parser = subparsers.add_parser("train", help="fine-tune a LENS model (the authors' recipe, LoRA)")
    # trust_remote_code's default in the namespace (unset TrainConfig options are left out of it) tells the
    # command's error messages that this verb has --trust-remote-code
    add_arguments(train_parser, TrainConfig).set_defaults(func=run_train, trust_remote_code=False)
    declare_output(train_parser, "output", "--output", folder=True)
    mine_parser = subparsers.add_parser("mine-negatives", help="add hard negatives to training jsonl")
    add_mine_arguments(mine_parser).set_defaults(func=run_mine)
