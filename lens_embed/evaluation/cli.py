"""The ``evaluate`` verb: ``lens-embed evaluate {mteb,offline,airbench,check-harness}``.

``add_eval_commands(subparsers)`` registers it on the main CLI; ``python -m lens_embed.evaluation.cli``
runs it on its own (the Makefile targets do that through ``eval/evaluate.py``). Every command calls
the library; nothing here computes a score itself.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_OUTPUT = "results"
_NAME_PATTERN = re.compile(r"[^\s,()]+(?:\([^)]*\))?")


def _add_common(parser: argparse.ArgumentParser, *, model_required: bool, mteb_options: bool = True) -> None:
    parser.add_argument(
        "--model",
        required=model_required,
        default=None,
        help="model folder (lens-embed or sentence-transformers) or a released name (yibinlei/LENS-d8000)"
        + ("" if model_required else "; default: the embedded default LENS model"),
    )
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="results folder (mteb layout under OUTPUT/results/)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None, help="torch device (default: sentence-transformers' choice)")
    parser.add_argument("--overwrite", action="store_true", help="recompute tasks already in OUTPUT")
    if mteb_options:
        parser.add_argument(
            "--shard-corpus",
            action="store_true",
            help="embed retrieval corpora in resumable shards under OUTPUT/embeddings (large corpora)",
        )
        parser.add_argument("--shard-size", type=int, default=10_000, help="documents per shard")


def _split_names(values: Sequence[str] | None) -> list[str] | None:
    """Accept ``--tasks A B`` and ``--tasks "A B"`` (make passes TASKS as one string); a benchmark
    name such as ``MTEB(eng, v1)`` stays whole despite its comma and space."""
    if not values:
        return None
    names = [name for value in values for name in _NAME_PATTERN.findall(value)]
    return names or None


def _run_options(args: argparse.Namespace) -> dict[str, object]:
    return {
        "batch_size": args.batch_size,
        "overwrite": args.overwrite,
        "shard_dir": Path(args.output) / "embeddings" if args.shard_corpus else None,
        "shard_size": args.shard_size,
    }


def cmd_mteb(args: argparse.Namespace) -> int:
    """Hub tasks (the paper's 56 English MTEB tasks by default) through mteb.evaluate."""
    from lens_embed.evaluation.models import baseline_runs, model_run
    from lens_embed.evaluation.reports import write_report
    from lens_embed.evaluation.runner import evaluate_runs
    from lens_embed.evaluation.tasks import resolve_tasks

    tasks = resolve_tasks(_split_names(args.tasks))
    runs = [model_run(args.model, args.device)] + (baseline_runs(args.device) if args.baselines else [])
    scores = evaluate_runs(runs, tasks, args.output, **_run_options(args))
    write_report(scores, args.output, name="summary_mteb", title="MTEB (hub tasks)")
    return 0


def cmd_offline(args: argparse.Namespace) -> int:
    """The offline suite on the local data, the model beside the baselines."""
    from lens_embed.evaluation.models import baseline_runs, model_run
    from lens_embed.evaluation.offline import offline_tasks
    from lens_embed.evaluation.reports import write_report
    from lens_embed.evaluation.runner import evaluate_runs

    tasks = offline_tasks(args.data, names=_split_names(args.tasks))
    runs = [model_run(args.model, args.device)] + ([] if args.no_baselines else baseline_runs(args.device))
    scores = evaluate_runs(runs, tasks, args.output, **_run_options(args))
    write_report(scores, args.output, name="summary_offline", title="Offline MTEB suite (local data)")
    return 0


def cmd_check_harness(args: argparse.Namespace) -> int:
    """Dense MiniLM through the offline suite vs its published scores; exit 1 on a gap the data does not explain."""
    from lens_embed.evaluation.data import resolve_data_dir
    from lens_embed.evaluation.harness import (
        anchors_path,
        compare,
        data_differences,
        harness_markdown,
        published_scores,
    )
    from lens_embed.evaluation.models import baseline_runs
    from lens_embed.evaluation.offline import offline_tasks
    from lens_embed.evaluation.runner import evaluate_runs

    data_dir = resolve_data_dir(args.data)
    published = published_scores(anchors_path(data_dir, args.anchors))
    tasks = offline_tasks(data_dir, names=_split_names(args.tasks))
    scores = evaluate_runs(baseline_runs(args.device)[:1], tasks, args.output, **_run_options(args))
    differences = {t.metadata.name: data_differences(t) for t in tasks if t.metadata.name in published}
    rows = compare(published, {s.task: s.value for s in scores}, differences)
    table = harness_markdown(rows, args.tolerance)
    print(table)
    Path(args.output).mkdir(parents=True, exist_ok=True)
    (Path(args.output) / "harness_exactness.md").write_text(table + "\n", encoding="utf-8")
    unpublished = sorted({s.task for s in scores} - set(published))
    if unpublished:
        print(f"no published score to compare for: {', '.join(unpublished)}")
    off = [r for r in rows if not r.passes(args.tolerance)]
    failed = [r.task for r in off if args.strict or not r.explained]
    if off and not failed:
        print(f"gaps > {args.tolerance} only where the local data differs from MTEB's copy: {', '.join(r.task for r in off)}")
    if failed:
        print(f"harness check FAILED (|diff| > {args.tolerance}) on: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"harness check passed: {len(rows) - len(off)} of {len(rows)} task(s) within {args.tolerance}")
    return 0


def cmd_airbench(args: argparse.Namespace) -> int:
    """AIR-Bench: search dev and test with lens-embed + faiss, score dev, zip the files for submission."""
    from lens_embed import load_lens_model
    from lens_embed.evaluation import airbench
    from lens_embed.retrieval import DenseRetriever

    model = load_lens_model(args.model, device=args.device)
    dense = DenseRetriever(
        model,
        Path(args.output) / "airbench" / "embeddings",
        index_kind=args.index,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
    )
    retriever = airbench.LensAirRetriever(dense, name=args.name or Path(args.model).name, search_top_k=args.top_k)
    if args.airbench_data:
        scores = airbench.run_local(retriever, args.airbench_data, args.output, args.splits, overwrite=args.overwrite)
    else:
        scores = airbench.run_hub(
            retriever,
            args.output,
            benchmark_version=args.benchmark_version,
            task_types=args.task_types,
            domains=args.domains,
            languages=args.languages,
            splits=args.splits,
            overwrite=args.overwrite,
        )
    for task, value in airbench.dev_rows(scores):
        print(f"{task}\tndcg@10 {value:.2f}")
    if "test" in args.splits:
        print(f"leaderboard upload: {airbench.submission_zip(retriever, args.output)}")
    return 0


def add_eval_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``evaluate`` and its sub-commands; each sets ``func(args) -> exit code``."""
    evaluate = subparsers.add_parser("evaluate", help="evaluate a model on MTEB, the offline suite or AIR-Bench")
    commands = evaluate.add_subparsers(dest="eval_command", required=True)

    mteb_parser = commands.add_parser("mteb", help="mteb tasks from the hub (default: the paper's 56 English tasks)")
    _add_common(mteb_parser, model_required=True)
    mteb_parser.add_argument("--tasks", nargs="*", help="task and/or benchmark names (default: MTEB(eng, v1))")
    mteb_parser.add_argument("--baselines", action="store_true", help="also run dense MiniLM and BM25")
    mteb_parser.set_defaults(func=cmd_mteb)

    offline = commands.add_parser("offline", help="the offline suite on local data, beside the baselines")
    _add_common(offline, model_required=False)
    offline.add_argument("--data", default=None, help="data folder (default: $LENS_EMBED_DATA or ../shared/data)")
    offline.add_argument("--tasks", nargs="*", help="only these local task folders")
    offline.add_argument("--no-baselines", action="store_true")
    offline.set_defaults(func=cmd_offline)

    harness = commands.add_parser("check-harness", help="dense MiniLM offline vs its published MTEB scores")
    _add_common(harness, model_required=False)
    harness.add_argument("--data", default=None)
    harness.add_argument("--tasks", nargs="*")
    harness.add_argument("--anchors", default=None, help="published scores file (default: <data>/../anchors/...)")
    harness.add_argument("--tolerance", type=float, default=0.3)
    harness.add_argument(
        "--strict", action="store_true", help="also fail where the local data differs from MTEB's copy"
    )
    harness.set_defaults(func=cmd_check_harness)

    air = commands.add_parser("airbench", help="AIR-Bench dev scores and test files for submission")
    _add_common(air, model_required=True, mteb_options=False)
    air.add_argument("--name", default=None, help="retriever name in the result files (default: model folder name)")
    air.add_argument("--airbench-data", default=None, help="local AIR-Bench-layout folder (offline path)")
    air.add_argument("--splits", nargs="+", default=["dev", "test"])
    air.add_argument("--benchmark-version", default="AIR-Bench_24.05")
    air.add_argument("--task-types", nargs="*", default=None)
    air.add_argument("--domains", nargs="*", default=None)
    air.add_argument("--languages", nargs="*", default=["en"])
    air.add_argument("--index", choices=["flat", "hnsw", "ivf"], default="flat")
    air.add_argument("--shard-size", type=int, default=10_000)
    air.add_argument("--top-k", type=int, default=1000)
    air.set_defaults(func=cmd_airbench)
    return evaluate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lens-embed")
    add_eval_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lens_embed.evaluation.cli evaluate offline ...``; bad input exits 2 with the reason."""
    from lens_embed.evaluation.data import DataDirError
    from lens_embed.evaluation.models import ModelArgumentError
    from lens_embed.evaluation.offline import UnknownTaskError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (DataDirError, ModelArgumentError, UnknownTaskError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
