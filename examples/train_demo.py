"""``make train-demo``: fine-tune the embedded LENS-MiniLM on the local training data, on CPU.

Three models get the identical recipe and the identical data: the embedded default LENS-MiniLM,
the dense all-MiniLM-L6-v2 it was built from, and the hybrid (the same LENS head with the dense
mean-pooled vector appended). Missing negatives are mined once with BM25 so every model sees the
same groups. The offline suite then scores every model before and after fine-tuning.

An example of the package's use, not part of it: it uses both ``training`` and ``evaluation`` (neither
imports the other).

Run: ``python examples/train_demo.py --data ../shared/data --output results/train-demo``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from lens_embed.base.cli_args import bounded_int, non_negative_int, positive_float, positive_int
from lens_embed.base.defaults import minilm_path
from lens_embed.base.options import from_namespace
from lens_embed.evaluation.encoders import LoadedModelEncoder, dense_minilm, load_encoder
from lens_embed.evaluation.offline import offline_tasks
from lens_embed.evaluation.reports import write_report
from lens_embed.evaluation.runner import ModelRun, evaluate_runs
from lens_embed.models.build import save_staged
from lens_embed.models.embedded import untrained_default_path
from lens_embed.models.loading import load_lens_model
from lens_embed.training.config import Recipe, TrainConfig
from lens_embed.training.default_recipe import training_config
from lens_embed.training.negatives import mine_negatives
from lens_embed.training.trainer import train

logger = logging.getLogger(__name__)

# Small enough to score six models in minutes on 2 cores; one task per family of the training data.
DEFAULT_TASKS = ("STSBenchmark", "STS16", "STS13", "BIOSSES")
TRAINING_FILES = ("msrp_train", "scifact_train", "stsb_train", "twitter_url_train")


@dataclass(frozen=True)
class DemoModel:
    """A model of the demo: its label, where its base lives, whether it reads instructions."""

    label: str
    base: Path
    instructed: bool


def hybrid_model(default_path: Path, output: Path) -> Path:
    """The hybrid: the default LENS model with a dense mean-pooled part (same head, same backbone),
    saved once, as ``build`` saves a model (staged, renamed into place, the usual file mode)."""
    if (output / "modules.json").is_file():
        return output
    model = load_lens_model(default_path, device="cpu")
    model[1].dense_pooling = "mean"
    save_staged(model, output, overwrite=True)
    return output


def demo_models(work: Path) -> list[DemoModel]:
    """The three bases: embedded LENS-MiniLM, dense MiniLM, and the hybrid."""
    lens = Path(untrained_default_path())
    return [
        DemoModel("LENS-MiniLM", lens, instructed=True),
        DemoModel("dense MiniLM", minilm_path(), instructed=False),
        DemoModel("hybrid LENS+dense MiniLM", hybrid_model(lens, work / "bases" / "hybrid"), instructed=True),
    ]


def demo_data(data_dir: Path, work: Path) -> Path:
    """The training files with BM25 negatives added where a row has none (written once)."""
    target = work / "data"
    sources = [data_dir / "training" / f"{name}.jsonl" for name in TRAINING_FILES]
    if all((target / source.name).is_file() for source in sources):
        return target
    mine_negatives(sources, target, method="bm25", num_negatives=7, only_missing=True, overwrite=True)
    return target


def recipe(base: Path, data: Path, output: Path, args: argparse.Namespace) -> TrainConfig:
    """The one recipe every model gets: the embedded default's run (the authors' recipe scaled down to a
    CPU budget: one batch size for every task, warmup over the first tenth of the steps) at the demo's
    sizes (the options named as the recipe's fields), without the default's FLOPS regulariser."""
    sizes = replace(
        from_namespace(Recipe, args), document_regularizer_weight=0.0, query_regularizer_weight=0.0
    )
    return training_config(base, data, output, sizes)


def fine_tune(model: DemoModel, data: Path, work: Path, args: argparse.Namespace) -> tuple[Path, float]:
    """Fine-tune one model (skipped when its output exists); returns the folder and minutes taken."""
    output = work / slug(model.label)
    if (output / "modules.json").is_file():
        return output, 0.0
    start = time.perf_counter()
    train(recipe(model.base, data, output, args))
    return output, (time.perf_counter() - start) / 60


def slug(label: str) -> str:
    """A folder name for a model label."""
    return "".join(char if char.isalnum() else "-" for char in label.lower()).strip("-")


def evaluation_runs(models: list[DemoModel], trained: dict[str, Path]) -> list:
    """mteb runs: every base model before, then after fine-tuning. Dense MiniLM before is the
    published baseline (plain texts); after fine-tuning it reads instructions as it was trained."""

    def loader(path: Path, label: str):
        def load():
            encoder = load_encoder(path, name=f"lens-embed/{slug(label)}", device="cpu")
            return LoadedModelEncoder(encoder.loaded, encoder.mteb_model_meta)  # instructed, LENS or not

        return load

    runs = []
    for model in models:
        if model.label == "dense MiniLM":
            runs.append(ModelRun(f"{model.label} (before)", lambda: dense_minilm("cpu")))
        else:
            runs.append(ModelRun(f"{model.label} (before)", loader(model.base, model.label)))
        runs.append(
            ModelRun(f"{model.label} (fine-tuned)", loader(trained[model.label], f"{model.label} ft"))
        )
    return runs


def run_demo(args: argparse.Namespace) -> Path:
    """Mine, fine-tune the three models, score them before/after; returns the report path."""
    work = Path(args.output)
    models = demo_models(work)
    data = demo_data(Path(args.data), work)
    trained = {}
    for model in models:
        trained[model.label], minutes = fine_tune(model, data, work, args)
        logger.info("%s fine-tuned in %.1f min -> %s", model.label, minutes, trained[model.label])
    if args.no_eval:
        return work
    tasks = offline_tasks(args.data, names=args.tasks)
    scores = evaluate_runs(evaluation_runs(models, trained), tasks, work / "results", batch_size=64)
    markdown, _ = write_report(
        scores, work, name="train_demo", title="Training demo: offline suite before/after"
    )
    return markdown


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python examples/train_demo.py", description=__doc__)
    parser.add_argument(
        "--data", default="../shared/data", help="the shared data folder (training/ and tasks)"
    )
    parser.add_argument("--output", default="results/train-demo")
    parser.add_argument("--steps", type=positive_int, default=30, help="optimizer steps per model")
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--group-size", type=bounded_int(2), default=4)
    parser.add_argument("--lr", dest="learning_rate", type=positive_float, default=3e-4)
    parser.add_argument(
        "--max-seq-length", type=positive_int, default=128, help="truncate texts to this many tokens"
    )
    parser.add_argument("--seed", type=non_negative_int, default=42)
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), help="offline tasks to score")
    parser.add_argument("--no-eval", action="store_true", help="train and save only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    print(run_demo(build_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
