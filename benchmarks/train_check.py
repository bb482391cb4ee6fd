"""A short training run on a GPU: tokens/s, peak memory, and whether the loss goes down.

Builds a random Mistral-shaped decoder (``--scale small``: hidden 1024, 8 layers, 16 heads / 8 KV
heads, the 32003-word vocabulary of ``benchmarks/bench_gpu.py``'s tokenizer), makes it a LENS model
with ``build_lens_model``, writes a synthetic retrieval task in the training jsonl format (the
positive holds every query word among random filler, so the task is learnable) and trains it with
the package's own trainer (LoRA, bf16 on a GPU, gradient checkpointing as the trainer decides).

Reported: the device, shape, precision, steps, batch and group sizes, the real (unpadded) tokens
the model saw, wall time, tokens/s (all steps, and after the first step), peak GPU memory, the
losses of the first and last logged steps and whether the loss went down, and the loss of one
fixed batch before and after training. ``--scale tiny`` runs the same code with the tiny shapes
of tests/tiny_models.py on a CPU in seconds (the test).

    python benchmarks/train_check.py                                   # the GPU check (make train-check)
    python benchmarks/train_check.py --scale tiny --precision fp32     # CPU smoke run
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

# tests/ for tiny_models' decoder builder, benchmarks/ for bench_gpu's tokenizer
# (also when the test imports this)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gpu import VOCAB, add_run_arguments, run_and_publish, synchronize, synthetic_tokenizer  # noqa: E402

from lens_embed import build_lens_model  # noqa: E402
from lens_embed.training.config import TrainConfig  # noqa: E402
from lens_embed.training.data import write_jsonl  # noqa: E402
from lens_embed.training.trainer import LensTrainer, build_trainer, uses_gradient_checkpointing  # noqa: E402
from tiny_models import TINY_SHAPES, build_decoder  # noqa: E402


@dataclass(frozen=True)
class Scale:
    """A model shape, its synthetic task, and the sizes of the run that trains it (the defaults of
    ``--steps``, ``--batch-size``, ``--group-size`` and ``--lr``)."""

    decoder: dict[str, int]  # the decoder's layer shapes (tests/tiny_models.py's TINY_SHAPES keys)
    clusters: int
    max_seq_length: int
    query_words: tuple[int, int]  # words per query: (fewest, most)
    passage_words: tuple[int, int]
    steps: int
    batch_size: int
    group_size: int
    learning_rate: float


SMALL_DECODER = {
    "hidden_size": 1024,
    "intermediate_size": 3584,
    "num_hidden_layers": 8,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
}
SCALES = {
    # name: Scale(decoder, clusters, max_seq_length, query_words, passage_words, steps, batch, group, lr)
    "small": Scale(SMALL_DECODER, 512, 512, (8, 24), (128, 384), 30, 32, 8, 2e-4),
    "tiny": Scale(TINY_SHAPES, 32, 64, (3, 6), (8, 24), 12, 8, 4, 3e-3),
}
# Distinct rows = this many batches: the run sees each row several times, so a working trainer
# lowers the loss within a few dozen steps even from random weights.
BATCHES_OF_ROWS = 4
# Out of the word-level vocabulary: each of its words is one <unk> token, as bench_gpu's instructions are.
PROMPT = "Given a query, retrieve the passage that contains its words"
LOSS_WINDOW = 5


def synthetic_rows(
    n_rows: int, group_size: int, query_words: tuple[int, int], passage_words: tuple[int, int], seed: int
) -> list[dict[str, Any]]:
    """Retrieval rows over the words ``w{id}`` (one token each): the positive is random filler with
    every query word in it, the negatives are other rows' positives."""
    rng = random.Random(seed)

    def words(count: int) -> list[str]:
        return [f"w{rng.randrange(3, VOCAB - 3)}" for _ in range(count)]

    queries = [words(rng.randint(*query_words)) for _ in range(n_rows)]
    positives = []
    for query in queries:
        passage = words(max(0, rng.randint(*passage_words) - len(query))) + query
        rng.shuffle(passage)
        positives.append(" ".join(passage))
    rows = []
    for index, query in enumerate(queries):
        others = rng.sample([i for i in range(n_rows) if i != index], group_size - 1)
        rows.append(
            {
                "query": " ".join(query),
                "pos": [positives[index]],
                "neg": [positives[i] for i in others],
                "type": "retrieval",
                "prompt": PROMPT,
            }
        )
    return rows


def build_model(work: Path, scale: Scale, seed: int) -> Path:
    """The random decoder (saved with the synthetic tokenizer) made a LENS model; returns its folder."""
    base = work / "base"
    build_decoder(
        base,
        "mistral",
        seed=seed,
        tokenizer=synthetic_tokenizer(base),
        **scale.decoder,
        max_position_embeddings=scale.max_seq_length,
    )
    lens = work / "lens"
    build_lens_model(
        base,
        n_clusters=scale.clusters,
        output_dir=lens,
        seed=seed,
        max_seq_length=scale.max_seq_length,
        device="cpu",
    )
    return lens


def count_tokens(trainer: LensTrainer) -> list[torch.Tensor]:
    """Record the real tokens (attention-mask sums, every column) of each batch the model is given,
    by wrapping the trainer's ``compute_loss``; kept as tensors so counting never syncs the GPU."""
    counts: list[torch.Tensor] = []
    original = trainer.compute_loss

    def counting_compute_loss(model, inputs, *args, **kwargs):
        counts.append(sum(value.sum() for key, value in inputs.items() if key.endswith("attention_mask")))
        return original(model, inputs, *args, **kwargs)

    trainer.compute_loss = counting_compute_loss
    return counts


def batch_loss(trainer: LensTrainer, batch: dict[str, Any]) -> float:
    """The training loss of one batch without dropout or gradients, in the run's mixed precision:
    a yardstick free of the batch-to-batch noise of the logged losses."""
    trainer.model.eval()
    inputs = {
        key: value.to(trainer.args.device) if torch.is_tensor(value) else value
        for key, value in batch.items()
    }
    with torch.no_grad(), trainer.accelerator.autocast():
        return float(trainer.compute_loss(trainer.model, inputs))


class StepClock(TrainerCallback):
    """The time each optimizer step ends, once the device has finished it."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.device)
        self.ends.append(time.perf_counter())


def loss_summary(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """First vs last logged losses: the means of up to LOSS_WINDOW steps at each end, never overlapping."""
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    if len(losses) < 2:
        raise RuntimeError(f"the run logged {len(losses)} loss(es); a comparison needs at least 2")
    window = min(LOSS_WINDOW, len(losses) // 2)
    first, last = losses[:window], losses[-window:]
    first_mean, last_mean = sum(first) / window, sum(last) / window
    return {
        "losses": losses,
        "first_losses": first,
        "last_losses": last,
        "first_loss_mean": round(first_mean, 4),
        "last_loss_mean": round(last_mean, 4),
        "loss_went_down": bool(math.isfinite(last_mean) and last_mean < first_mean),
    }


def measure_training(config: TrainConfig, device: str) -> dict[str, Any]:
    """Train ``config`` and measure it: tokens, time, peak memory, logged and fixed-batch losses."""
    cuda = device == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    clock = StepClock(device)
    trainer = build_trainer(config, callbacks=[clock])
    fixed = next(iter(trainer.get_train_dataloader()))
    before = batch_loss(trainer, fixed)
    counts = count_tokens(trainer)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    synchronize(device)
    start = time.perf_counter()
    trainer.train()
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None
    tokens = [int(count) for count in counts]
    if len(tokens) != len(clock.ends):
        raise RuntimeError(
            f"{len(tokens)} batches in {len(clock.ends)} optimizer steps: count one batch a step"
        )
    after = batch_loss(trainer, fixed)
    steady_seconds = clock.ends[-1] - clock.ends[0]
    return {
        "steps": len(tokens),
        "tokens": sum(tokens),
        "train_seconds": round(seconds, 3),
        "tokens_per_s": round(sum(tokens) / seconds, 1),
        "tokens_per_s_after_first_step": round(sum(tokens[1:]) / steady_seconds, 1)
        if steady_seconds > 0
        else None,
        "peak_gpu_memory_gib": peak,
        **loss_summary(trainer.state.log_history),
        "fixed_batch_loss_before": round(before, 4),
        "fixed_batch_loss_after": round(after, 4),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the model and data in a temporary folder, train, and report the run."""
    cuda = torch.cuda.is_available()
    scale = SCALES[args.scale]
    steps = args.steps or scale.steps
    batch_size, group_size = args.batch_size or scale.batch_size, args.group_size or scale.group_size
    learning_rate = args.lr or scale.learning_rate
    precision = args.precision or ("bf16" if cuda else "fp32")
    if precision != "fp32" and not cuda:
        raise ValueError(f"--precision {precision} needs a GPU; on the CPU use --precision fp32")
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        work = Path(folder)
        lens = build_model(work, scale, args.seed)
        rows = synthetic_rows(
            max(BATCHES_OF_ROWS * batch_size, group_size),
            group_size,
            scale.query_words,
            scale.passage_words,
            args.seed,
        )
        data = write_jsonl(rows, work / "data" / "synthetic_retrieval.jsonl")
        config = TrainConfig(
            model=str(lens),
            data=[str(data)],
            output=str(work / "run"),
            max_steps=steps,
            batch_size=batch_size,
            group_size=group_size,
            learning_rate=learning_rate,
            warmup_steps=0.1,
            logging_steps=1,
            save_steps=steps + 1,
            report_to=[],
            precision=precision,
            lora=args.lora,
            gradient_checkpointing=args.gradient_checkpointing,
            seed=args.seed,
        )
        measured = measure_training(config, "cuda" if cuda else "cpu")
    return {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "scale": args.scale,
        "shape": scale.decoder
        | {"vocab_size": VOCAB, "clusters": scale.clusters, "max_seq_length": scale.max_seq_length},
        "precision": precision,
        "lora": args.lora,
        "gradient_checkpointing": uses_gradient_checkpointing(config, cuda),
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "group_size": group_size,
        "texts_per_step": batch_size * (1 + group_size),
        "distinct_rows": len(rows),
        **measured,
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as a table for benchmarks/RESULTS.md."""
    shape = report["shape"]
    return "\n".join(
        [
            f"device: {report['device']}; torch {report['torch']}; hidden {shape['hidden_size']}, "
            f"{shape['num_hidden_layers']} layers, "
            f"{shape['num_attention_heads']}/{shape['num_key_value_heads']} heads, "
            f"vocabulary {shape['vocab_size']}, K = {shape['clusters']}; "
            f"{report['precision']}, LoRA {report['lora']}, "
            f"gradient checkpointing {report['gradient_checkpointing']}, lr {report['learning_rate']}, "
            f"{report['distinct_rows']} distinct rows",
            "",
            "| steps x batch x group | tokens | seconds | tokens/s | tokens/s after step 1 "
            "| peak GPU memory (GiB) "
            "| logged loss, first -> last (means) | fixed-batch loss, before -> after | loss went down |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            f"| {report['steps']} x {report['batch_size']} x {report['group_size']} | {report['tokens']} "
            f"| {report['train_seconds']} | {report['tokens_per_s']} "
            f"| {report['tokens_per_s_after_first_step']} "
            f"| {report['peak_gpu_memory_gib']} | {report['first_loss_mean']} -> {report['last_loss_mean']} "
            f"| {report['fixed_batch_loss_before']} -> {report['fixed_batch_loss_after']} "
            f"| {report['loss_went_down']} |",
        ]
    )


def per_scale(size: str) -> str:
    """How the help names a run size's defaults: each scale's, from :data:`SCALES`."""
    return "(default: " + ", ".join(f"{getattr(scale, size)} {name}" for name, scale in SCALES.items()) + ")"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scale", choices=sorted(SCALES), default="small", help="model shape (tiny: CPU smoke run)"
    )
    parser.add_argument("--steps", type=int, default=None, help=f"optimizer steps {per_scale('steps')}")
    parser.add_argument(
        "--batch-size", type=int, default=None, help=f"queries per step {per_scale('batch_size')}"
    )
    parser.add_argument(
        "--group-size", type=int, default=None, help=f"1 positive + negatives {per_scale('group_size')}"
    )
    parser.add_argument(
        "--lr", type=float, default=None, help=f"peak learning rate {per_scale('learning_rate')}"
    )
    parser.add_argument(
        "--precision",
        choices=("bf16", "fp16", "fp32"),
        default=None,
        help="mixed precision (default: bf16 on a GPU, fp32 on the CPU)",
    )
    parser.add_argument(
        "--lora",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train a LoRA adapter (--no-lora: every backbone weight)",
    )
    parser.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default: the trainer's (on with a GPU)",
    )
    add_run_arguments(parser, "where the temporary model and data folder is made")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 2:
        parser.error("--steps must be at least 2: the check compares early and late losses")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_and_publish(parse_args(argv), run, markdown)


if __name__ == "__main__":
    main()
