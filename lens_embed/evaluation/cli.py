"""The ``evaluate`` verb: ``lens-embed evaluate {mteb,offline,airbench,check-harness,compare}``.

``add_eval_commands(subparsers)`` registers it on the one CLI entry, :func:`lens_embed.cli.main`
(the Makefile targets reach it through ``eval/evaluate.py``). Every command calls the library;
nothing here computes a score itself, and nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from lens_embed.cli_args import (
    add_cluster_options,
    add_load_options,
    api_key,
    backend_options,
    bounded_float,
    declare_output,
    non_negative_float,
    positive_int,
)
from lens_embed.defaults import BASELINE_CHOICES
from lens_embed.vocabulary import INDEX_KINDS, QUANTIZATIONS

DEFAULT_OUTPUT = "results"
ENGINES = ("mteb", "qdrant")
_NAME_PATTERN = re.compile(r"[^\s,()]+(?:\([^)]*\))?")


def _add_common(parser: argparse.ArgumentParser, *, model_required: bool, mteb_options: bool = True) -> None:
    parser.add_argument(
        "--model",
        required=model_required,
        default=None,
        help="model folder (lens-embed or sentence-transformers) or a released name (yibinlei/LENS-d8000)"
        + ("" if model_required else "; default: the embedded default LENS model"),
    )
    parser.add_argument(
        "--output", default=DEFAULT_OUTPUT, help="results folder (mteb layout under OUTPUT/results/)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument(
        "--device", default=None, help="torch device (default: sentence-transformers' choice)"
    )
    parser.add_argument("--overwrite", action="store_true", help="recompute tasks already in OUTPUT")
    declare_output(parser, "output", "--output", folder=True)
    add_load_options(parser, dtype_help="float16 on CUDA, as the authors evaluated; else float32")
    if mteb_options:
        parser.add_argument(
            "--instructions",
            default="authors",
            help="LENS task instructions: 'authors' (their map and rule, the published protocol), 'mteb' "
            "(mteb's task prompts) or FILE.json; recorded with the results",
        )
        parser.add_argument(
            "--max-active-dims",
            type=positive_int,
            default=None,
            help="keep each LENS vector's N largest lexicon weights, queries and documents alike (the "
            "engine's pruning); results are an mteb experiment of their own",
        )
        parser.add_argument(
            "--shard-corpus",
            action="store_true",
            help="embed retrieval corpora in resumable shards under OUTPUT/embeddings (large corpora)",
        )
        parser.add_argument("--shard-size", type=positive_int, default=10_000, help="documents per shard")
        parser.add_argument(
            "--engine",
            choices=ENGINES,
            default="mteb",
            help="search retrieval corpora with mteb's exact search in this process (default; faiss with "
            "--shard-corpus), or in Qdrant, searched exactly: the in-process engine in a temporary folder, "
            "or the cluster at --url",
        )
        add_cluster_options(parser, "Qdrant server or cluster for --engine qdrant")
        parser.add_argument(
            "--quantization",
            choices=QUANTIZATIONS,
            default="none",
            help="--engine qdrant: search a quantised copy of the dense vectors (every one, rescored as "
            "asked) instead of the exact vectors; recorded with the results",
        )
        parser.add_argument(
            "--rescore",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="--quantization: rescore the candidates with the full vectors (default: the engine's)",
        )
        parser.add_argument(
            "--oversampling",
            type=bounded_float(1.0),
            default=None,
            help="--quantization: fetch top-k x F candidates to rescore (default: the engine's, 1)",
        )


def _split_names(values: Sequence[str] | None) -> list[str] | None:
    """Accept ``--tasks A B`` and ``--tasks "A B"`` (make passes TASKS as one string); a benchmark
    name such as ``MTEB(eng, v1)`` stays whole despite its comma and space."""
    if not values:
        return None
    names = [name for value in values for name in _NAME_PATTERN.findall(value)]
    return names or None


def _load_options(args: argparse.Namespace, dtype: str | None = None):
    from lens_embed.evaluation.model_runs import LoadOptions

    return LoadOptions(
        device=args.device,
        dtype=args.dtype or dtype,
        attn_implementation=args.attn_implementation,
        instructions=getattr(args, "instructions", "authors"),
        max_active_dims=getattr(args, "max_active_dims", None),
        **backend_choice(args),
    )


def backend_choice(args: argparse.Namespace) -> dict[str, str | None]:
    """The model under evaluation's ``--backend`` / ``--quantize`` (baselines always run on torch)."""
    backend_options(args)  # refuses --quantize without a backend
    return {"backend": args.backend, "quantize": args.quantize}


def _runs(args: argparse.Namespace) -> list:
    """The model under evaluation, then the baselines asked for (never the model itself twice)."""
    from lens_embed.evaluation.model_runs import baseline_runs, model_run

    options = _load_options(args)
    evaluated = model_run(args.model, options)
    return [evaluated, *baseline_runs(args.baselines, options, exclude=evaluated.label)]


def _search_index(args: argparse.Namespace):
    """The search-index factory ``--engine`` asks for (None: mteb's own search)."""
    quantized = {
        "quantization": getattr(args, "quantization", "none"),
        "rescore": getattr(args, "rescore", None),
        "oversampling": getattr(args, "oversampling", None),
    }
    if getattr(args, "engine", "mteb") != "qdrant":
        if getattr(args, "url", None) or getattr(args, "api_key", None):
            raise ValueError("--url and --api-key apply to --engine qdrant")
        if quantized != {"quantization": "none", "rescore": None, "oversampling": None}:
            raise ValueError("--quantization, --rescore and --oversampling apply to --engine qdrant")
        return None
    if quantized["quantization"] == "none" and (quantized["rescore"], quantized["oversampling"]) != (
        None,
        None,
    ):
        raise ValueError("--rescore and --oversampling apply to a quantised search (--quantization)")
    from functools import partial

    from lens_embed.engine import EngineTarget
    from lens_embed.evaluation.search import QdrantSearchIndex

    target = None
    if args.url:
        target = EngineTarget(url=args.url, api_key=api_key(args))
        target.check_reachable()
    elif args.api_key:
        raise ValueError("--api-key applies to a cluster (--url)")
    return partial(QdrantSearchIndex, target=target, **quantized)


def _run_options(args: argparse.Namespace) -> dict[str, object]:
    return {
        "batch_size": args.batch_size,
        "overwrite": args.overwrite,
        "shard_dir": Path(args.output) / "embeddings" if args.shard_corpus else None,
        "shard_size": args.shard_size,
        "search_index": _search_index(args),
    }


def cmd_mteb(args: argparse.Namespace) -> int:
    """Hub tasks (the paper's 56 English tasks by default) through mteb.evaluate; a released LENS model
    is then compared with its published scores."""
    from lens_embed.evaluation.reports import write_report
    from lens_embed.evaluation.runner import evaluate_runs, result_folder
    from lens_embed.evaluation.tasks import resolve_tasks
    from lens_embed.storage import is_released_name

    tasks = resolve_tasks(_split_names(args.tasks))
    options = _run_options(args)  # before loading the model: an unreachable --url fails at once
    runs = _runs(args)
    scores = evaluate_runs(runs, tasks, args.output, **options)
    write_report(scores, args.output, name="summary_mteb", title="MTEB (hub tasks)")
    if is_released_name(args.model):
        from lens_embed.evaluation.leaderboard.compare import write_comparison

        folder = result_folder(args.output, runs[0].model.mteb_model_meta, tasks[0])
        markdown, path = write_comparison(folder, reference=args.model)
        print(markdown)
        print(f"comparison saved to {path}")
    return 0


def cmd_offline(args: argparse.Namespace) -> int:
    """The offline suite on the local data, the model beside the baselines."""
    from lens_embed.evaluation.offline import offline_tasks
    from lens_embed.evaluation.reports import write_report
    from lens_embed.evaluation.runner import evaluate_runs

    tasks = offline_tasks(args.data, names=_split_names(args.tasks))
    options = _run_options(args)  # before loading the model: an unreachable --url fails at once
    scores = evaluate_runs(_runs(args), tasks, args.output, **options)
    write_report(scores, args.output, name="summary_offline", title="Offline MTEB suite (local data)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Our results beside the published scores of a released LENS model."""
    from lens_embed.evaluation.leaderboard.compare import write_comparison

    markdown, path = write_comparison(args.results, args.reference, args.tolerance, args.out)
    print(markdown)
    print(f"comparison saved to {path}")
    return 0


def cmd_check_harness(args: argparse.Namespace) -> int:
    """Dense MiniLM through the offline suite vs its published scores; exit 1 on a gap the data does not
    explain."""
    from lens_embed.evaluation.data import resolve_data_dir
    from lens_embed.evaluation.leaderboard.harness import (
        anchors_path,
        compare,
        data_differences,
        harness_markdown,
        table_scores,
    )
    from lens_embed.evaluation.model_runs import baseline_runs
    from lens_embed.evaluation.offline import offline_tasks
    from lens_embed.evaluation.runner import evaluate_runs

    data_dir = resolve_data_dir(args.data)
    published = table_scores(anchors_path(data_dir, args.anchors))
    tasks = offline_tasks(data_dir, names=_split_names(args.tasks))
    # fp32 unless asked: the published MiniLM scores are fp32 ones
    options = _run_options(args)
    runs = baseline_runs("minilm", _load_options(args, dtype="float32"))
    scores = evaluate_runs(runs, tasks, args.output, **options)
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
        print(
            f"gaps > {args.tolerance} only where the local data differs from MTEB's copy: "
            f"{', '.join(r.task for r in off)}"
        )
    if failed:
        print(f"harness check FAILED (|diff| > {args.tolerance}) on: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"harness check passed: {len(rows) - len(off)} of {len(rows)} task(s) within {args.tolerance}")
    return 0


def cmd_airbench(args: argparse.Namespace) -> int:
    """AIR-Bench: search dev and test with lens-embed + faiss, score dev, zip the files for submission."""
    from lens_embed.evaluation.encoders import evaluation_dtype
    from lens_embed.evaluation.leaderboard import airbench
    from lens_embed.loading import load_lens_model
    from lens_embed.retrieval import DenseRetriever

    model = load_lens_model(
        args.model,
        device=args.device,
        dtype=evaluation_dtype(args.dtype, args.device),
        attn_implementation=args.attn_implementation,
        **backend_options(args),
    )
    dense = DenseRetriever(
        model,
        Path(args.output) / "airbench" / "embeddings",
        index_kind=args.index,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
    )
    retriever = airbench.LensAirRetriever(
        dense, name=args.name or Path(args.model).name, search_top_k=args.top_k
    )
    if args.airbench_data:
        scores = airbench.run_local(
            retriever, args.airbench_data, args.output, args.splits, overwrite=args.overwrite
        )
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
    evaluate = subparsers.add_parser(
        "evaluate", help="evaluate a model on MTEB, the offline suite or AIR-Bench"
    )
    commands = evaluate.add_subparsers(dest="eval_command", required=True)

    mteb_parser = commands.add_parser(
        "mteb", help="mteb tasks from the hub (default: the paper's 56 English tasks)"
    )
    _add_common(mteb_parser, model_required=True)
    mteb_parser.add_argument(
        "--tasks", nargs="*", help="task and/or benchmark names (default: MTEB(eng, v1))"
    )
    mteb_parser.add_argument(
        "--baselines", choices=BASELINE_CHOICES, default="none", help="also run dense MiniLM and/or BM25"
    )
    mteb_parser.set_defaults(func=cmd_mteb)

    offline = commands.add_parser("offline", help="the offline suite on local data, beside the baselines")
    _add_common(offline, model_required=False)
    offline.add_argument(
        "--data", default=None, help="data folder (default: $LENS_EMBED_DATA or ../shared/data)"
    )
    offline.add_argument("--tasks", nargs="*", help="only these local task folders")
    offline.add_argument(
        "--baselines", choices=BASELINE_CHOICES, default="all", help="baselines beside the model"
    )
    offline.set_defaults(func=cmd_offline)

    harness = commands.add_parser("check-harness", help="dense MiniLM offline vs its published MTEB scores")
    _add_common(harness, model_required=False)
    harness.add_argument("--data", default=None)
    harness.add_argument("--tasks", nargs="*")
    harness.add_argument(
        "--anchors", default=None, help="published scores file (default: <data>/../anchors/...)"
    )
    harness.add_argument("--tolerance", type=non_negative_float, default=0.3)
    harness.add_argument(
        "--strict", action="store_true", help="also fail where the local data differs from MTEB's copy"
    )
    harness.set_defaults(func=cmd_check_harness)

    air = commands.add_parser("airbench", help="AIR-Bench dev scores and test files for submission")
    _add_common(air, model_required=True, mteb_options=False)
    air.add_argument(
        "--name", default=None, help="retriever name in the result files (default: model folder name)"
    )
    air.add_argument("--airbench-data", default=None, help="local AIR-Bench-layout folder (offline path)")
    air.add_argument("--splits", nargs="+", default=["dev", "test"])
    air.add_argument("--benchmark-version", default="AIR-Bench_24.05")
    air.add_argument("--task-types", nargs="*", default=None)
    air.add_argument("--domains", nargs="*", default=None)
    air.add_argument("--languages", nargs="*", default=["en"])
    air.add_argument("--index", choices=INDEX_KINDS, default="flat", help="faiss index kind")
    air.add_argument("--shard-size", type=positive_int, default=10_000)
    air.add_argument("--top-k", type=positive_int, default=1000)
    air.set_defaults(func=cmd_airbench)

    compare = commands.add_parser(
        "compare", help="our MTEB results vs the published scores of a released LENS model"
    )
    compare.add_argument(
        "results", help="mteb results folder of one model (OUTPUT, or OUTPUT/results/<model>/<revision>)"
    )
    compare.add_argument(
        "--reference", default="yibinlei/LENS-d8000", help="released model whose published scores to use"
    )
    compare.add_argument(
        "--tolerance",
        type=non_negative_float,
        default=0.5,
        help="flag tasks whose |difference| (x100) exceeds this",
    )
    compare.add_argument(
        "--out", default=None, help="Markdown file (default: RESULTS/compare_<reference>.md)"
    )
    declare_output(compare, "out", "--out", folder=False)
    compare.set_defaults(func=cmd_compare)

    from lens_embed.evaluation.leaderboard.submit import add_submit_command

    add_submit_command(commands)
    return evaluate
