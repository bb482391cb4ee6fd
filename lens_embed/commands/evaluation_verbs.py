"""The evaluate verbs at work: each takes its options instance (:mod:`lens_embed.commands.evaluation_options`)
and calls the library; nothing here computes a score itself. The Makefile's evaluation targets reach them
through ``eval/evaluate.py``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from lens_embed.base.cli_args import api_key, backend_options
from lens_embed.base.options import keywords
from lens_embed.base.quantization import QuantizationSettings
from lens_embed.base.storage import is_released_name
from lens_embed.commands.evaluation_options import (
    AirbenchOptions,
    CheckHarnessOptions,
    CompareOptions,
    MtebOptions,
    MtebRunOptions,
    OfflineOptions,
    RunOptions,
    SubmitKitOptions,
    split_names,
)
from lens_embed.evaluation.data import resolve_data_dir
from lens_embed.evaluation.encoders import evaluation_dtype
from lens_embed.evaluation.leaderboard.compare import write_comparison
from lens_embed.evaluation.leaderboard.harness import (
    anchors_path,
    compare,
    data_differences,
    harness_markdown,
    table_scores,
)
from lens_embed.evaluation.leaderboard.submit import TABLE_FILE, build_kit
from lens_embed.evaluation.model_runs import LoadOptions as ModelLoading
from lens_embed.evaluation.model_runs import baseline_runs, model_run
from lens_embed.evaluation.offline import offline_tasks
from lens_embed.evaluation.reports import write_report
from lens_embed.evaluation.runner import ModelRun, evaluate_runs, result_folder
from lens_embed.evaluation.search import QdrantSearchIndex
from lens_embed.evaluation.tasks import resolve_tasks
from lens_embed.models.loading import load_lens_model
from lens_embed.serving.engine import EngineTarget
from lens_embed.serving.retrieval import DenseRetriever


def model_loading(options: RunOptions, dtype: str | None = None) -> ModelLoading:
    """How the models of a run are loaded: the verb's options, ``dtype`` when none is asked for."""
    backend_options(options)  # refuses --quantize without a backend
    return ModelLoading(**{**keywords(options, ModelLoading), "dtype": options.dtype or dtype})


def model_runs(options: MtebOptions | OfflineOptions) -> list[ModelRun]:
    """The model under evaluation, then the baselines asked for (never the model itself twice)."""
    loading = model_loading(options)
    evaluated = model_run(options.model, loading)
    return [evaluated, *baseline_runs(options.baselines, loading, exclude=evaluated.label)]


def search_index(options: MtebRunOptions) -> Callable[[Any], Any] | None:
    """The search-index factory ``--engine`` asks for (None: mteb's own search); a cluster is reached now."""
    quantization = QuantizationSettings.read(vars(options))  # refuses a setting of another quantisation
    if options.engine != "qdrant":
        return None
    target = None
    if options.url:
        target = EngineTarget(url=options.url, api_key=api_key(options))
        target.check_reachable()
    return partial(
        QdrantSearchIndex,
        target=target,
        quantization=quantization,
        rescore=options.rescore,
        oversampling=options.oversampling,
    )


def run_settings(options: MtebRunOptions) -> dict[str, Any]:
    """:func:`~lens_embed.evaluation.runner.evaluate_runs`' keywords; called before the model loads, so an
    unreachable ``--url`` fails at once."""
    return {
        "batch_size": options.batch_size,
        "overwrite": options.overwrite,
        "shard_dir": Path(options.output) / "embeddings" if options.shard_corpus else None,
        "shard_size": options.shard_size,
        "search_index": search_index(options),
    }


def print_comparison(markdown: str, path: Path) -> None:
    """Show a comparison with published scores (:func:`write_comparison`'s result) and where it was saved."""
    print(markdown)
    print(f"comparison saved to {path}")


def run_mteb(options: MtebOptions) -> int:
    """Hub tasks (the paper's 56 English tasks by default) through mteb.evaluate; a released LENS model
    is then compared with its published scores."""
    tasks = resolve_tasks(split_names(options.tasks))
    settings = run_settings(options)
    runs = model_runs(options)
    scores = evaluate_runs(runs, tasks, options.output, **settings)
    write_report(scores, options.output, name="summary_mteb", title="MTEB (hub tasks)")
    if is_released_name(options.model):
        folder = result_folder(options.output, runs[0].model.mteb_model_meta, tasks[0])
        print_comparison(*write_comparison(folder, reference=options.model))
    return 0


def run_offline(options: OfflineOptions) -> int:
    """The offline suite on the local data, the model beside the baselines."""
    tasks = offline_tasks(options.data, names=split_names(options.tasks))
    settings = run_settings(options)
    scores = evaluate_runs(model_runs(options), tasks, options.output, **settings)
    write_report(scores, options.output, name="summary_offline", title="Offline MTEB suite (local data)")
    return 0


def run_compare(options: CompareOptions) -> int:
    """Our results beside the published scores of a released LENS model."""
    print_comparison(*write_comparison(options.results, options.reference, options.tolerance, options.out))
    return 0


def run_check_harness(options: CheckHarnessOptions) -> int:
    """Dense MiniLM through the offline suite vs its published scores; exit 1 on a gap the data does not
    explain."""
    data_dir = resolve_data_dir(options.data)
    published = table_scores(anchors_path(data_dir, options.anchors))
    tasks = offline_tasks(data_dir, names=split_names(options.tasks))
    settings = run_settings(options)
    # fp32 unless asked: the published MiniLM scores are fp32 ones
    runs = baseline_runs("minilm", model_loading(options, dtype="float32"))
    scores = evaluate_runs(runs, tasks, options.output, **settings)
    differences = {t.metadata.name: data_differences(t) for t in tasks if t.metadata.name in published}
    rows = compare(published, {s.task: s.value for s in scores}, differences)
    tolerance = options.tolerance
    table = harness_markdown(rows, tolerance)
    print(table)
    Path(options.output).mkdir(parents=True, exist_ok=True)
    (Path(options.output) / "harness_exactness.md").write_text(table + "\n", encoding="utf-8")
    unpublished = sorted({s.task for s in scores} - set(published))
    if unpublished:
        print(f"no published score to compare for: {', '.join(unpublished)}")
    off = [r for r in rows if not r.passes(tolerance)]
    failed = [r.task for r in off if options.strict or not r.explained]
    if off and not failed:
        print(
            f"gaps > {tolerance} only where the local data differs from MTEB's copy: "
            f"{', '.join(r.task for r in off)}"
        )
    if failed:
        print(f"harness check FAILED (|diff| > {tolerance}) on: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"harness check passed: {len(rows) - len(off)} of {len(rows)} task(s) within {tolerance}")
    return 0


def run_airbench(options: AirbenchOptions) -> int:
    """AIR-Bench: search dev and test with lens-embed + faiss, score dev, zip the files for submission."""
    # The one import made here: AIR-Bench is an optional extra that only this verb needs.
    from lens_embed.evaluation.leaderboard import airbench

    model = load_lens_model(
        options.model,
        device=options.device,
        **{**options.load_keywords(), "dtype": evaluation_dtype(options.dtype, options.device)},
    )
    dense = DenseRetriever(
        model,
        Path(options.output) / "airbench" / "embeddings",
        index_kind=options.index,
        shard_size=options.shard_size,
        batch_size=options.batch_size,
    )
    retriever = airbench.LensAirRetriever(
        dense, name=options.name or Path(options.model).name, search_top_k=options.top_k
    )
    if options.airbench_data:
        scores = airbench.run_local(
            retriever, options.airbench_data, options.output, options.splits, overwrite=options.overwrite
        )
    else:
        scores = airbench.run_hub(retriever, options.output, **keywords(options, airbench.run_hub))
    for task, value in airbench.dev_rows(scores):
        print(f"{task}\tndcg@10 {value:.2f}")
    if "test" in options.splits:
        print(f"leaderboard upload: {airbench.submission_zip(retriever, options.output)}")
    return 0


def run_submit_kit(options: SubmitKitOptions) -> int:
    """Write and check the leaderboard kit; print its benchmark table and where it is."""
    kit = build_kit(**asdict(options))  # the options are build_kit's arguments, its meta fields included
    print((kit / TABLE_FILE).read_text(encoding="utf-8"))
    print(f"submission kit written to {kit}: see {kit / 'README.md'}")
    return 0
