"""Sparse LENS (issues 19 and 25): how many lexicon dimensions a model needs, pruned, pooled per position,
or trained sparse. One command gives issue 25's table.

For each model given (``--model LABEL=PATH``, several) the rows are:

* ``dense float32, exact``: the reference (the engine's exact dense search);
* ``sparse, all``: every active dimension, pooled as the model's folder says;
* ``sparse, top N``: the whole vector cut to its N largest lexicon weights (``--levels``), documents at
  index time and queries at search time (``keep_max_active_dims``, the engine's pruning);
* ``sparse, per-position top k``: the same model with ``position_top_k`` = k set on the loaded model
  (``--position-top-k``, for the models named by ``--position-top-k-models``, default all): each pooled
  position keeps its k largest cluster logits before the max, documents and queries alike; no re-save.

Every row measures, on the embedded engine (``lens_embed.serving.engine.EdgeBackend`` through
``bench_engine.measure``, sparse vectors searched exactly):

* active dimensions per document and per query: mean and 90th percentile (after pruning);
* SciFact nDCG@10 and recall@10 (the whole corpus, or ``--max-docs`` documents: every judged one, then the
  others in corpus order), bytes per document (the vector storage's disk blocks, as ``make bench-engine``
  counts them) and ms per query;
* the STS average: the offline suite's STS tasks (``DATA/sts/*``, or ``--sts-tasks``) under its protocol
  (every text an instructed query with the authors' STS instruction, cosine Spearman x 100), both texts of a
  pair pooled and pruned as the row says;
* classification accuracy x 100 (``--classification-tasks``, default Banking77 from
  ``DATA/classification``): mteb's own evaluator over lens-embed's encoder (``evaluate offline``'s numbers),
  the vectors pooled and pruned as the row says.

Each pooling's texts are embedded once (documents in resumable shards under ``--output``, STS sentences in
``OUTPUT/<label>/sts-<key>.npy``, classification results in mteb result folders), and every pruning level
prunes those vectors, so a rerun only measures again.

    python benchmarks/bench_sparse.py --data ../shared/data --output results/bench-sparse \\
        [--model LABEL=PATH ...] [--max-docs 1000] [--position-top-k 1 2 4 8 --position-top-k-models default]
    # default models: untrained=$(lens-embed default --untrained) default=$(lens-embed default)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_engine beside this script

from bench_engine import load_task, measure  # noqa: E402

from lens_embed.base.prompts import NAMED_INSTRUCTIONS  # noqa: E402

LEVELS = (512, 256, 128, 64)
STS_INSTRUCTION = "Retrieve semantically similar text."  # the authors' instruction of every STS task
CLASSIFICATION_TASKS = ("Banking77Classification",)


@dataclass(frozen=True)
class Row:
    """One row of a model: how it is pooled (``position_top_k``; None: as its folder says), how it is pruned
    (``level``: whole-vector top N on both sides; None: all active dimensions) and searched."""

    config: str
    position_top_k: int | None = None
    level: int | None = None
    dense: bool = False

    def engine(self) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """The bench_engine configuration: exact float32 dense, or sparse pruned to ``level``."""
        if self.dense:
            return self.config, {"vectors": "dense", "hnsw_m": 0}, {"exact": True}
        if self.level is None:
            return self.config, {"vectors": "sparse"}, {}
        return (
            self.config,
            {"vectors": "sparse", "max_active_dims": self.level},
            {"max_active_dims": self.level},
        )


def model_rows(levels: tuple[int, ...], position_top_k: tuple[int, ...]) -> list[Row]:
    """A model's rows: the exact dense reference, all active dimensions, each level, each per-position k."""
    return [
        Row("dense float32, exact", dense=True),
        Row("sparse, all"),
        *[Row(f"sparse, top {level}", level=level) for level in levels],
        *[Row(f"sparse, per-position top {k}", position_top_k=k) for k in position_top_k],
    ]


def sts_pairs(
    data: Path, names: list[str] | None = None
) -> dict[str, tuple[list[str], list[str], np.ndarray]]:
    """Each STS task of the data folder (or the named ones): its first sentences, second sentences and gold
    scores."""
    from lens_embed.evaluation.offline import read_jsonl

    folders = sorted(path for path in (data / "sts").iterdir() if (path / "test.jsonl").is_file())
    known = {folder.name: folder for folder in folders}
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        raise ValueError(f"--sts-tasks {unknown}: not under {data / 'sts'} (there: {sorted(known)})")
    tasks = {}
    for name in names or list(known):
        rows = read_jsonl(known[name] / "test.jsonl")
        tasks[name] = (
            [row["sentence1"] for row in rows],
            [row["sentence2"] for row in rows],
            np.array([float(row["score"]) for row in rows]),
        )
    return tasks


def pruned(vectors: np.ndarray, level: int | None, lexicon_dims: int) -> np.ndarray:
    """The vectors as the engine prunes them: each row's ``level`` largest lexicon weights (None: all)."""
    from lens_embed.models.pooling import keep_max_active_dims

    return vectors if level is None else keep_max_active_dims(vectors, level, lexicon_dims)


def sts_scores(
    tasks: dict[str, tuple[list[str], list[str], np.ndarray]],
    vectors: dict[str, np.ndarray],
    level: int | None,
    lexicon_dims: int,
) -> dict[str, float]:
    """Cosine Spearman x 100 of each task, every vector pruned to ``level`` dimensions first."""
    from scipy.stats import spearmanr

    def side(texts: list[str]) -> np.ndarray:
        matrix = pruned(np.stack([vectors[text] for text in texts]), level, lexicon_dims).astype(np.float64)
        return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)

    scores = {}
    for name, (first, second, gold) in tasks.items():
        cosine = (side(first) * side(second)).sum(axis=1)
        scores[name] = round(100 * float(spearmanr(gold, cosine).statistic), 2)
    return scores


def sts_vectors(model: Any, tasks: dict[str, Any], folder: Path) -> dict[str, np.ndarray]:
    """The model's embedding of every unique STS sentence (an instructed query), computed once per model,
    pooling and sentence set (the file is named by :func:`lens_embed.serving.retrieval.corpus_key`)."""
    from lens_embed.base.storage import atomic_write
    from lens_embed.models.model import encode
    from lens_embed.serving.retrieval import corpus_key

    texts = sorted({text for first, second, _ in tasks.values() for text in (*first, *second)})
    path = folder / f"sts-{corpus_key(model, texts, query=True, instruction=STS_INSTRUCTION)}.npy"
    if path.is_file():
        matrix = np.load(path)
    else:
        matrix = encode(model, texts, query=True, instruction=STS_INSTRUCTION, batch_size=64)
        atomic_write(path, lambda stream: np.save(stream, np.asarray(matrix, dtype=np.float32)))
    return dict(zip(texts, matrix, strict=True))


def active_stats(vectors: np.ndarray) -> tuple[float, float]:
    """Mean and 90th percentile of the active (non-zero) dimensions per vector."""
    counts = (np.asarray(vectors) != 0).sum(axis=1)
    return round(float(counts.mean()), 1), round(float(np.percentile(counts, 90)), 1)


def classification_scores(
    model: Any, path: str, data: Path, names: list[str], levels: list[int | None], output: Path
) -> dict[int | None, dict[str, float]]:
    """Accuracy x 100 of each classification task at each pruning level, through mteb's evaluator and
    lens-embed's encoder (``evaluate offline``'s protocol); the texts are embedded once per pooling and
    each level prunes those vectors. Results are kept in mteb result folders under ``output``."""
    import mteb
    from mteb.cache import ResultCache

    from lens_embed.evaluation.encoders import LoadedModelEncoder, build_model_meta
    from lens_embed.evaluation.offline import offline_tasks
    from lens_embed.evaluation.results import model_revision
    from lens_embed.models.model import LensSentenceTransformer
    from lens_embed.serving.retrieval import fingerprint

    seen: dict[tuple[Any, ...], np.ndarray] = {}  # this pooling's unpruned vectors, by texts and side

    class Remembering(LoadedModelEncoder):
        """mteb's encoder built unpruned, with each text list's vectors remembered by instruction, and the
        level's pruning (``max_active_dims``) a step after ``encode``, so every level prunes one embedding."""

        def encode(
            self, inputs: Any, *, task_metadata: Any, prompt_type: Any = None, **kwargs: Any
        ) -> np.ndarray:
            texts = tuple(text for batch in inputs for text in batch["text"])
            key = (texts, self.get_instruction(task_metadata, prompt_type))
            if key not in seen:
                seen[key] = np.asarray(
                    super().encode(inputs, task_metadata=task_metadata, prompt_type=prompt_type, **kwargs)
                )
            return pruned(
                seen[key], self.max_active_dims, LensSentenceTransformer.lexicon(self.loaded).n_clusters
            )

    if not names:
        return {level: {} for level in levels}
    tasks = offline_tasks(data, names=names)
    # the folder and how it is pooled now (a per-position k set on the loaded model is not in the folder)
    revision = fingerprint(
        model_revision(path), json.dumps(LensSentenceTransformer.settings(model), sort_keys=True)
    )
    scores: dict[int | None, dict[str, float]] = {}
    for level in levels:
        meta = build_model_meta(model, path, revision=revision, max_active_dims=level)
        encoder = Remembering(model, meta)
        encoder.max_active_dims = level  # pruned after encode (recorded in its protocol), not by a module
        cache = ResultCache(output / "classification")
        result = mteb.evaluate(
            encoder, tasks, cache=cache, encode_kwargs={"batch_size": 32}, show_progress_bar=False
        )
        scores[level] = {r.task_name: round(100 * float(r.get_score()), 2) for r in result.task_results}
    return scores


def measure_pooling(
    label: str, path: str, model: Any, rows: list[Row], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """The rows of one model under one pooling: embed once, then measure each row."""
    from lens_embed.models.model import LensSentenceTransformer, encode
    from lens_embed.serving.corpus import encode_corpus
    from lens_embed.serving.retrieval import corpus_key

    output = Path(args.output) / label
    output.mkdir(parents=True, exist_ok=True)
    lexicon_dims = LensSentenceTransformer.lexicon(model).n_clusters
    documents, queries, qrels = load_task(Path(args.data), "SciFact", args.max_docs)
    ids, texts = list(documents), list(documents.values())
    docs = np.asarray(np.load(encode_corpus(model, texts, output / "shards" / corpus_key(model, texts))))
    query_ids = list(queries)
    query_texts = [queries[q] for q in query_ids]
    query_vectors = encode(model, query_texts, query=True, instruction=NAMED_INSTRUCTIONS["fact_check"])
    tasks = sts_pairs(Path(args.data), args.sts_tasks)
    vectors = sts_vectors(model, tasks, output)
    levels = list(dict.fromkeys(row.level for row in rows))
    classified = classification_scores(
        model, path, Path(args.data), args.classification_tasks, levels, output
    )
    with tempfile.TemporaryDirectory(prefix="bench-sparse-", dir=output) as workdir:
        engine_rows = measure(
            path, ids, texts, docs, query_texts, query_vectors, qrels, query_ids, Path(workdir),
            configs=[row.engine() for row in rows],
        )  # fmt: skip
    measured = []
    for row, engine in zip(rows, engine_rows, strict=True):
        doc_mean, doc_p90 = (
            (docs.shape[1], docs.shape[1])
            if row.dense
            else active_stats(pruned(docs, row.level, lexicon_dims))
        )
        query_mean, query_p90 = (
            (docs.shape[1], docs.shape[1])
            if row.dense
            else active_stats(pruned(query_vectors, row.level, lexicon_dims))
        )
        sts = sts_scores(tasks, vectors, row.level, lexicon_dims)
        measured.append(
            {
                "model": label,
                "config": row.config,
                "position_top_k": LensSentenceTransformer.lexicon(model).position_top_k,
                "doc_active_dims": doc_mean,
                "doc_active_dims_p90": doc_p90,
                "query_active_dims": query_mean,
                "query_active_dims_p90": query_p90,
                "bytes_per_doc": engine["bytes_per_doc"],
                "recall_at_10": engine["recall_at_10"],
                "ndcg_at_10": engine["ndcg_at_10"],
                "search_ms_per_query": engine["search_ms_per_query"],
                "sts_average": round(float(np.mean(list(sts.values()))), 2),
                "sts": sts,
                "classification": classified[row.level],
            }
        )
        print(measured[-1], flush=True)
    return measured


def measure_model(label: str, path: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every row of one model: its own pooling first, then each per-position k on the loaded model."""
    from lens_embed.models.loading import load_lens_model
    from lens_embed.models.model import LensSentenceTransformer

    model = load_lens_model(path, device="cpu")
    top_k = tuple(args.position_top_k) if label in (args.position_top_k_models or [label]) else ()
    rows = model_rows(tuple(args.levels), top_k)
    measured = measure_pooling(label, path, model, [row for row in rows if row.position_top_k is None], args)
    pooling = LensSentenceTransformer.lexicon(model)
    own = pooling.position_top_k
    try:
        for k in top_k:
            pooling.position_top_k = k
            measured += measure_pooling(
                label, path, model, [row for row in rows if row.position_top_k == k], args
            )
    finally:
        pooling.position_top_k = own
    return measured


def default_models() -> list[str]:
    """The untrained LENS-MiniLM and the trained embedded default, as LABEL=PATH."""
    from lens_embed.models.embedded import default_model_path, untrained_default_path

    return [f"untrained={untrained_default_path()}", f"default={default_model_path()}"]


def markdown(rows: list[dict[str, Any]], n_docs: int | None) -> str:
    tasks = sorted({name for row in rows for name in row["classification"]})
    lines = [
        f"SciFact: {'all' if n_docs is None else n_docs} documents; top N rows prune documents at index time "
        "and queries at search time; per-position top k rows pool documents and queries alike; STS: the "
        "offline suite's STS tasks, both texts pooled and pruned as the row says",
        "",
        "| model | vectors | active dims / doc (p90) | active dims / query (p90) | bytes / doc | recall@10 "
        "| SciFact nDCG@10 | ms / query | STS average |" + "".join(f" {task} |" for task in tasks),
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * len(tasks),
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['config']} | {r['doc_active_dims']} ({r['doc_active_dims_p90']}) | "
            f"{r['query_active_dims']} ({r['query_active_dims_p90']}) | {r['bytes_per_doc']} | "
            f"{r['recall_at_10']} | {r['ndcg_at_10']} | {r['search_ms_per_query']} | {r['sts_average']} |"
            + "".join(f" {r['classification'].get(task, '-')} |" for task in tasks)
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[tuple[str, str]]]:
    """The options, and the models as (label, path); a bad option exits 2 before anything loads."""
    from lens_embed.base.cli_args import positive_int

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", default="../shared/data", help="folder holding sts/, classification/ and retrieval/SciFact"
    )
    parser.add_argument("--output", default="results/bench-sparse", help="embeddings and report folder")
    parser.add_argument(
        "--model",
        action="append",
        help="LABEL=PATH (repeat for several; default: the untrained construction and the embedded default)",
    )
    parser.add_argument(
        "--max-docs",
        type=positive_int,
        default=None,
        help="SciFact documents (every judged one first; default: the whole corpus)",
    )
    parser.add_argument(
        "--levels", type=positive_int, nargs="*", default=list(LEVELS), help="whole-vector top N rows"
    )
    parser.add_argument(
        "--position-top-k",
        type=positive_int,
        nargs="*",
        default=[],
        help="per-position top k rows (none by default)",
    )
    parser.add_argument(
        "--position-top-k-models",
        nargs="+",
        default=None,
        help="labels that get the per-position rows (default: all)",
    )
    parser.add_argument("--sts-tasks", nargs="+", default=None, help="STS tasks of DATA/sts (default: all)")
    parser.add_argument(
        "--classification-tasks",
        nargs="*",
        default=list(CLASSIFICATION_TASKS),
        help="classification tasks of DATA/classification (default: Banking77Classification; none: skip)",
    )
    args = parser.parse_args(argv)
    models = []
    for item in args.model or default_models():
        label, separator, path = item.partition("=")
        if not separator or not label or not path:
            parser.error(f"--model {item!r}: expected LABEL=PATH")
        models.append((label, path))
    unknown = sorted(set(args.position_top_k_models or []) - {label for label, _ in models})
    if unknown:
        parser.error(f"--position-top-k-models {unknown}: no --model has that label")
    return args, models


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args, models = parse_args(argv)
    rows = [row for label, path in models for row in measure_model(label, path, args)]
    report = markdown(rows, args.max_docs)
    print(report)
    Path(args.output, "sparse.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    Path(args.output, "sparse.md").write_text(report + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
