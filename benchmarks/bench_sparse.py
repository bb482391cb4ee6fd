"""Sparse LENS (issue 19, part 3): how many lexicon dimensions a model needs, pruned or trained sparse.

For each model given (``--model LABEL=PATH``, several) and each pruning level (all active dimensions,
then the top N per document), on the embedded engine (``lens_embed.engine.EdgeBackend``, through
``bench_engine.measure``, sparse vectors searched exactly):

* SciFact nDCG@10 (the whole corpus, or ``--max-docs`` documents: every judged one, then the others in
  corpus order), the
  documents pruned to the top N at index time, the queries whole (as ``make bench-engine``);
* the STS average: the offline suite's STS tasks (``DATA/sts/*``) under its protocol (every text an
  instructed query with the authors' STS instruction, cosine Spearman x 100, mteb's main score), both
  texts of a pair pruned to the top N (``lens_embed.pooling.keep_max_active_dims``, the engine's pruning);
* active dimensions per document and per query (means, after pruning), index size (the vector storage's
  disk blocks per document, as ``make bench-engine`` counts them; float32 dense for comparison: 4 bytes per
  dimension), and the engine's milliseconds per query.

Each model's texts are embedded once (documents in resumable shards under ``--output``, STS sentences in
``OUTPUT/<label>/sts.npy``), every level prunes those vectors, so a rerun only measures again.

    python benchmarks/bench_sparse.py --data ../shared/data --output results/bench-sparse \
        [--model LABEL=PATH ...]
    # default: untrained=$(lens-embed default --untrained) default=$(lens-embed default)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_engine beside this script

from bench_engine import load_task, measure  # noqa: E402

from lens_embed.prompts import NAMED_INSTRUCTIONS  # noqa: E402

LEVELS = (None, 512, 256, 128, 64)
STS_INSTRUCTION = "Retrieve semantically similar text."  # the authors' instruction of every STS task


def sts_pairs(data: Path) -> dict[str, tuple[list[str], list[str], np.ndarray]]:
    """Each STS task of the data folder: its first sentences, second sentences and gold scores."""
    from lens_embed.evaluation.offline import read_jsonl

    tasks = {}
    for folder in sorted(path for path in (data / "sts").iterdir() if (path / "test.jsonl").is_file()):
        rows = read_jsonl(folder / "test.jsonl")
        tasks[folder.name] = (
            [row["sentence1"] for row in rows],
            [row["sentence2"] for row in rows],
            np.array([float(row["score"]) for row in rows]),
        )
    return tasks


def sts_scores(
    tasks: dict[str, tuple[list[str], list[str], np.ndarray]],
    vectors: dict[str, np.ndarray],
    level: int | None,
) -> dict[str, float]:
    """Cosine Spearman x 100 of each task, every vector pruned to ``level`` dimensions first."""
    import torch
    from scipy.stats import spearmanr

    from lens_embed.pooling import keep_max_active_dims

    def side(texts: list[str]) -> np.ndarray:
        matrix = torch.from_numpy(np.stack([vectors[text] for text in texts]))
        if level is not None:
            matrix = keep_max_active_dims(matrix, level)
        matrix = matrix.double()
        return (matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-12)).numpy()

    scores = {}
    for name, (first, second, gold) in tasks.items():
        cosine = (side(first) * side(second)).sum(axis=1)
        scores[name] = round(100 * float(spearmanr(gold, cosine).statistic), 2)
    return scores


def sts_vectors(model: Any, tasks: dict[str, Any], path: Path) -> dict[str, np.ndarray]:
    """The model's embedding of every unique STS sentence (an instructed query), computed once."""
    from lens_embed.model import encode
    from lens_embed.storage import atomic_write

    texts = sorted({text for first, second, _ in tasks.values() for text in (*first, *second)})
    if path.is_file():
        matrix = np.load(path)
    else:
        matrix = encode(model, texts, query=True, instruction=STS_INSTRUCTION, batch_size=64)
        atomic_write(path, lambda stream: np.save(stream, np.asarray(matrix, dtype=np.float32)))
    return dict(zip(texts, matrix, strict=True))


def active(vectors: np.ndarray, level: int | None) -> float:
    """Mean active (non-zero) dimensions per vector after keeping the top ``level``."""
    counts = (np.asarray(vectors) != 0).sum(axis=1)
    return round(float(np.minimum(counts, level).mean() if level is not None else counts.mean()), 1)


def configurations(levels: tuple[int | None, ...]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """bench_engine configurations: exact float32 dense (the reference), then sparse at each level."""
    configs = [("dense float32, exact", {"vectors": "dense", "hnsw_m": 0}, {"exact": True})]
    for level in levels:
        options = {"vectors": "sparse"} if level is None else {"vectors": "sparse", "max_active_dims": level}
        configs.append((f"sparse, {'all' if level is None else f'top {level}'}", options, {}))
    return configs


def measure_model(
    label: str, path: str, args: argparse.Namespace, levels: tuple[int | None, ...]
) -> list[dict]:
    """Every row of one model."""
    from lens_embed.corpus import encode_corpus
    from lens_embed.loading import load_lens_model
    from lens_embed.model import encode
    from lens_embed.retrieval import corpus_key

    output = Path(args.output) / label
    output.mkdir(parents=True, exist_ok=True)
    model = load_lens_model(path, device="cpu")
    documents, queries, qrels = load_task(Path(args.data), "SciFact", args.max_docs)
    ids, texts = list(documents), list(documents.values())
    docs = np.asarray(np.load(encode_corpus(model, texts, output / "shards" / corpus_key(model, texts))))
    query_ids = list(queries)
    query_texts = [queries[q] for q in query_ids]
    query_vectors = encode(model, query_texts, query=True, instruction=NAMED_INSTRUCTIONS["fact_check"])
    tasks = sts_pairs(Path(args.data))
    vectors = sts_vectors(model, tasks, output / "sts.npy")
    with tempfile.TemporaryDirectory(prefix="bench-sparse-", dir=output) as workdir:
        engine_rows = measure(
            path, ids, texts, docs, query_texts, query_vectors, qrels, query_ids, Path(workdir),
            configs=configurations(levels),
        )  # fmt: skip
    rows = []
    for level, engine in zip((None, *levels), engine_rows, strict=True):
        dense = engine["config"].startswith("dense")
        sts = sts_scores(tasks, vectors, None if dense else level)
        rows.append(
            {
                "model": label,
                "config": engine["config"],
                "doc_active_dims": docs.shape[1] if dense else active(docs, level),
                "query_active_dims": query_vectors.shape[1] if dense else active(query_vectors, None),
                "bytes_per_doc": engine["bytes_per_doc"],
                "recall_at_10": engine["recall_at_10"],
                "ndcg_at_10": engine["ndcg_at_10"],
                "search_ms_per_query": engine["search_ms_per_query"],
                "sts_average": round(float(np.mean(list(sts.values()))), 2),
                "sts": sts,
            }
        )
        print(rows[-1], flush=True)
    return rows


def default_models() -> list[str]:
    """The untrained LENS-MiniLM and the trained embedded default, as LABEL=PATH."""
    from lens_embed.embedded import default_model_path, untrained_default_path

    return [f"untrained={untrained_default_path()}", f"default={default_model_path()}"]


def markdown(rows: list[dict[str, Any]], n_docs: int | None) -> str:
    lines = [
        f"SciFact: {'all' if n_docs is None else n_docs} documents, documents pruned at index time, "
        "queries whole; "
        "STS: the offline suite's STS tasks, both texts pruned",
        "",
        "| model | vectors | active dims / doc | active dims / query | bytes / doc | recall@10 "
        "| SciFact nDCG@10 | ms / query | STS average |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['config']} | {r['doc_active_dims']} | {r['query_active_dims']} | "
            f"{r['bytes_per_doc']} | {r['recall_at_10']} | {r['ndcg_at_10']} | {r['search_ms_per_query']} | "
            f"{r['sts_average']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="../shared/data", help="folder holding sts/ and retrieval/SciFact")
    parser.add_argument("--output", default="results/bench-sparse", help="embeddings and report folder")
    parser.add_argument(
        "--model",
        action="append",
        help="LABEL=PATH (repeat for several; default: the untrained construction and the embedded default)",
    )
    parser.add_argument(
        "--max-docs",
        type=int,
        default=None,
        help="SciFact documents (every judged one first; default: the whole corpus)",
    )
    parser.add_argument(
        "--levels", type=int, nargs="+", default=[n for n in LEVELS if n], help="top N per doc"
    )
    args = parser.parse_args(argv)
    models = []
    for item in args.model or default_models():
        label, separator, path = item.partition("=")
        if not separator or not label or not path:
            parser.error(f"--model {item!r}: expected LABEL=PATH")
        models.append((label, path))
    levels = tuple([None, *args.levels])
    rows = [row for label, path in models for row in measure_model(label, path, args, levels)]
    report = markdown(rows, args.max_docs)
    print(report)
    Path(args.output, "sparse.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    Path(args.output, "sparse.md").write_text(report + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
