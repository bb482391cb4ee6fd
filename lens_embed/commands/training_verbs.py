"""The training verbs at work: each takes its options instance (:mod:`lens_embed.commands.training_options`).
``python -m lens_embed.training`` (torchrun, accelerate) runs ``train`` through the same command."""

from __future__ import annotations

from pathlib import Path

from lens_embed.base.options import keywords
from lens_embed.commands.training_options import MineOptions, TrainDefaultOptions
from lens_embed.training import default_recipe
from lens_embed.training.config import TrainConfig
from lens_embed.training.negatives import mine_negatives
from lens_embed.training.trainer import train


def run_train(config: TrainConfig) -> None:
    """Fine-tune and print the folder of the merged model."""
    print(train(config))


def run_mine(options: MineOptions) -> None:
    """Write the data with mined negatives and print the files."""
    if options.method == "model" and not options.model:
        raise ValueError("--model is required with --method model (or use --method bm25)")
    for path in mine_negatives(options.data, options.output, **keywords(options, mine_negatives)):
        print(path)


def run_train_default(options: TrainDefaultOptions) -> None:
    """Train (and package) the embedded default; print the trained model's folder."""
    print(default_recipe.run(Path(options.data), Path(options.output), options.recipe(), options.base))
