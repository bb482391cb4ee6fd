"""The options of ``lens-embed train``, ``mine-negatives`` and ``train-default``: declared once, read by the
parser and by the runners (:mod:`lens_embed.commands.training_verbs`). ``train``'s options are
:class:`~lens_embed.training.config.TrainConfig` itself, ``train-default``'s the embedded default's
:class:`~lens_embed.training.config.Recipe` and its folders. Imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass

from lens_embed.base.cli_args import positive_int
from lens_embed.base.options import check_values, keywords, option
from lens_embed.commands.verb import Verb
from lens_embed.training.config import MINING_METHODS, Recipe, TrainConfig

BASE_KINDS = ("lens", "dense")


@dataclass(kw_only=True)
class MineOptions:
    """``lens-embed mine-negatives``: the arguments of :func:`lens_embed.training.negatives.mine_negatives`,
    by the same names."""

    model: str | None = option(None, "model that mines (required for --method model)", default_text="none")
    data: list[str] = option(help="jsonl files / folders / datasets")
    output: str = option(help="output .jsonl (one input) or folder (several)", output="either")
    method: str = option("model", "how to mine: a model's nearest texts or BM25's", choices=MINING_METHODS)
    num_negatives: int = option(7, "negatives to add per row", check=positive_int)
    batch_size: int = option(64, "encoding batch size", check=positive_int)
    only_missing: bool = option(False, "mine only for rows without negatives")
    overwrite: bool = option(False, "replace existing output files (never an input file)")
    trust_remote_code: bool = option(False, "allow the model to run its own code")

    def __post_init__(self) -> None:
        """The command line's bounds and choices, for the Python API too."""
        check_values(self)


@dataclass(frozen=True, kw_only=True)
class TrainDefaultOptions(Recipe):
    """``lens-embed train-default``: the recipe's knobs, the data and the work folder."""

    data: str = option("../shared/data", "the data folder (training/, classification/)")
    output: str = option(
        help="work folder: data, base, model (dense-model with --base dense), parameter file", output="folder"
    )
    base: str = option("lens", "LENS default or dense MiniLM (the comparison)", choices=BASE_KINDS)

    def recipe(self) -> Recipe:
        """The recipe alone (what provenance records)."""
        return Recipe(**keywords(self, Recipe))


VERBS = (
    Verb("train", "fine-tune a LENS model (the authors' recipe, LoRA)", TrainConfig, "run_train"),
    Verb("mine-negatives", "add hard negatives to training jsonl", MineOptions, "run_mine"),
    Verb(
        "train-default",
        "train the embedded default LENS-MiniLM and package its parameter file (make train-default)",
        TrainDefaultOptions,
        "run_train_default",
    ),
)
