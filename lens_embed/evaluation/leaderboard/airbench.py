"""AIR-Bench through the air-benchmark package's own API, with a lens-embed + faiss retriever.

Dev splits are scored locally with AIR-Bench's ``Evaluator``; test splits produce the search-result
files its leaderboard takes (zipped for upload). The bundled evaluation scripts of air-benchmark
import mteb-1.x classes that no longer exist, so only the package's core API is used here.

An offline path reads a local copy in the layout
``<root>/<task_type>/<domain>/<language>/<dataset>/{corpus.jsonl, queries_<split>.jsonl, qrels_<split>.tsv}``
(fields as on the hub: ``id``/``text``; ``qid``/``docid``/``relevance``) and scores it through the
same ``Evaluator``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lens_embed.base.defaults import AIRBENCH_VERSION
from lens_embed.base.optional import require
from lens_embed.evaluation.leaderboard.submit import NO_RERANKER, search_dir, write_airbench_zip
from lens_embed.evaluation.offline import read_jsonl
from lens_embed.serving.retrieval import DenseRetriever

air_benchmark = require("air_benchmark", "airbench")  # a missing extra is named here, on first import
air_evaluation = require("air_benchmark.evaluation_utils", "airbench")


class LensAirRetriever(air_benchmark.Retriever):
    """AIR-Bench ``Retriever`` backed by :class:`lens_embed.serving.retrieval.DenseRetriever`."""

    def __init__(self, retriever: DenseRetriever, name: str, search_top_k: int = 1000) -> None:
        super().__init__(search_top_k=search_top_k)
        self.retriever = retriever
        self.name = name.replace("/", "__")

    def __str__(self) -> str:
        return self.name

    def __call__(
        self, corpus: dict[str, dict[str, Any]], queries: dict[str, str], **kwargs: Any
    ) -> dict[str, dict[str, float]]:
        texts = {doc_id: doc["text"] for doc_id, doc in corpus.items()}
        return self.retriever.retrieve(texts, dict(queries), top_k=self.search_top_k)


@dataclass(frozen=True)
class AirTask:
    """One AIR-Bench dataset and the splits to run on it."""

    task_type: str
    domain: str
    language: str
    dataset_name: str
    splits: tuple[str, ...]


class LocalDataLoader(air_evaluation.DataLoader):
    """AIR-Bench's ``DataLoader`` contract over a local folder instead of the hub."""

    def __init__(self, root: str | Path, benchmark_version: str = AIRBENCH_VERSION) -> None:
        super().__init__(benchmark_version)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"AIR-Bench data folder not found: {self.root}")

    def folder(self, task_type: str, domain: str, language: str, dataset_name: str) -> Path:
        return self.root / task_type / domain / language / dataset_name

    def load_corpus(
        self, task_type: str, domain: str, language: str, dataset_name: str
    ) -> dict[str, dict[str, str]]:
        rows = read_jsonl(self.folder(task_type, domain, language, dataset_name) / "corpus.jsonl")
        return {str(r["id"]): {"text": r["text"]} for r in rows}

    def load_queries(
        self, task_type: str, domain: str, language: str, dataset_name: str, split: str = "test"
    ) -> dict[str, str]:
        rows = read_jsonl(self.folder(task_type, domain, language, dataset_name) / f"queries_{split}.jsonl")
        return {str(r["id"]): r["text"] for r in rows}

    def load_qrels(
        self, task_type: str, domain: str, language: str, dataset_name: str, split: str = "dev"
    ) -> dict[str, dict[str, int]]:
        qrels: dict[str, dict[str, int]] = {}
        path = self.folder(task_type, domain, language, dataset_name) / f"qrels_{split}.tsv"
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                qrels.setdefault(row["qid"], {})[row["docid"]] = int(row["relevance"])
        return qrels

    def tasks(self, splits: Sequence[str] = ("dev", "test")) -> list[AirTask]:
        """Every dataset folder under the root with at least one of the splits' query files."""
        found = []
        for corpus in sorted(self.root.glob("*/*/*/*/corpus.jsonl")):
            task_type, domain, language, dataset_name = corpus.parent.relative_to(self.root).parts
            present = tuple(s for s in splits if (corpus.parent / f"queries_{s}.jsonl").is_file())
            if present:
                found.append(AirTask(task_type, domain, language, dataset_name, present))
        if not found:
            raise FileNotFoundError(
                f"No AIR-Bench dataset folders with {list(splits)} queries under {self.root}"
            )
        return found


def run_local(
    retriever: LensAirRetriever,
    data_root: str | Path,
    output: str | Path,
    splits: Sequence[str] = ("dev", "test"),
    overwrite: bool = False,
) -> dict[str, Any]:
    """Search every local dataset, then score its dev split with AIR-Bench's Evaluator."""
    loader = LocalDataLoader(data_root)
    evaluator = air_evaluation.Evaluator(loader, overwrite=overwrite)
    for task in loader.tasks(splits):
        evaluator(
            task_type=task.task_type,
            domain=task.domain,
            language=task.language,
            dataset_name=task.dataset_name,
            splits=list(task.splits),
            search_results_save_dir=str(search_dir(output)),
            retriever=retriever,
        )
    return score_dev(evaluator, retriever, output)


def run_hub(
    retriever: LensAirRetriever,
    output: str | Path,
    *,
    benchmark_version: str = AIRBENCH_VERSION,
    task_types: Sequence[str] | None = None,
    domains: Sequence[str] | None = None,
    languages: Sequence[str] | None = ("en",),
    splits: Sequence[str] = ("dev", "test"),
    overwrite: bool = False,
) -> dict[str, Any]:
    """The real AIR-Bench (needs the hub): search dev and test, score dev locally."""
    bench = air_benchmark.AIRBench(
        benchmark_version=benchmark_version,
        task_types=list(task_types) if task_types else None,
        domains=list(domains) if domains else None,
        languages=list(languages) if languages else None,
        splits=list(splits),
    )
    bench.run(retriever, output_dir=str(search_dir(output)), overwrite=overwrite)
    return score_dev(air_evaluation.Evaluator(bench.data_loader), retriever, output)


def score_dev(
    evaluator: air_evaluation.Evaluator, retriever: LensAirRetriever, output: str | Path
) -> dict[str, Any]:
    """AIR-Bench's own dev scoring of the saved search results; written to ``airbench/dev_scores.json``."""
    results_dir = search_dir(output) / str(retriever) / NO_RERANKER
    scores = evaluator.evaluate_results(str(results_dir), split="dev") if results_dir.is_dir() else {}
    path = Path(output) / "airbench" / "dev_scores.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(scores, indent=2), encoding="utf-8")
    return scores


def dev_rows(scores: dict[str, Any], metric: str = "ndcg_at_10") -> list[tuple[str, float]]:
    """``(task_type/domain/language/dataset, metric x100)`` rows of a dev score tree."""
    return [
        (f"{task_type}/{domain}/{language}/{dataset}", 100 * float(metrics[metric]))
        for task_type, by_domain in scores.items()
        for domain, by_language in by_domain.items()
        for language, by_dataset in by_language.items()
        for dataset, metrics in by_dataset.items()
    ]


def submission_zip(retriever: LensAirRetriever, output: str | Path) -> Path:
    """Zip the retriever's search results (test files included) for the AIR-Bench leaderboard upload, in the
    layout its backend reads (``<task_type>/<domain>/<language>_<dataset>_<split>.json`` at the root)."""
    return write_airbench_zip(search_dir(output), str(retriever), Path(output) / "airbench")
