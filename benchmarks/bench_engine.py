"""The Qdrant engine rows: memory per million documents, recall@10 against exact search, nDCG@10, ms per
query.

Every configuration is a collection of the in-process engine (``lens_embed.serving.engine.EdgeBackend``),
filled and searched through the package's own path (``lens_embed.serving.collections.upload_vectors`` and
``engine_queries``) from the same corpus embeddings: dense float32 / float16, exact and HNSW; the
active dimensions as sparse vectors, all of them and pruned to the top 512 / 256 / 128 / 64 per
document (queries unpruned); LENS + BM25 fused by the engine (hybrid). Memory is what the
collection's vector storage and index files of that configuration occupy on disk (allocated
blocks), less what an empty collection of the same configuration holds, per document; recall@10
counts a hit when its exact score reaches the exact 10th score (ties are not misses); nDCG@10 is
against the task's relevance judgements; ms per query is the engine's own time (batches of 64
queries, embedding excluded). Corpus embeddings come from the corpus-encoding path, in resumable
shards under ``--output`` (or ``--shards``), so a rerun only rebuilds the collections.

    make bench-engine            # = python benchmarks/bench_engine.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from lens_embed.base.prompts import NAMED_INSTRUCTIONS

# (label, collection options, search options)
CONFIGS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("dense float32, exact", {"vectors": "dense", "hnsw_m": 0}, {"exact": True}),
    ("dense float32, HNSW m=32", {"vectors": "dense"}, {}),
    ("dense float16, exact", {"vectors": "dense", "dense_dtype": "float16", "hnsw_m": 0}, {"exact": True}),
    ("dense float16, HNSW m=32", {"vectors": "dense", "dense_dtype": "float16"}, {}),
    ("sparse, all active dimensions", {"vectors": "sparse"}, {}),
    *[
        (f"sparse, top {n} per document", {"vectors": "sparse", "max_active_dims": n}, {})
        for n in (512, 256, 128, 64)
    ],
    (
        "hybrid: dense float32 exact + BM25 (RRF)",
        {"vectors": "dense", "hnsw_m": 0, "bm25": True},
        {"exact": True, "using": "hybrid"},
    ),
]


def add_task_arguments(parser: argparse.ArgumentParser, output: str) -> None:
    """The options of a benchmark on one retrieval task's corpus embeddings (this script and
    ``bench_scale``): the task, the model, its query instruction, the report folder (default ``output``)
    and the corpus embedding shards."""
    parser.add_argument(
        "--data", default="../shared/data", help="folder holding retrieval/<task> (BEIR layout)"
    )
    parser.add_argument("--task", default="SciFact")
    parser.add_argument("--model", default=None, help="default: the embedded default LENS model")
    parser.add_argument(
        "--instruction", default=NAMED_INSTRUCTIONS["fact_check"], help="the query instruction"
    )
    parser.add_argument("--output", default=output, help="embedding shards and report folder")
    parser.add_argument(
        "--shards", default=None, help="corpus embedding shards (default: OUTPUT/shards/<key>)"
    )


def load_task(
    data: Path, task: str, max_docs: int | None
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """Documents (``title text``), the judged test queries and their judgements of a BEIR task folder.

    With ``max_docs``, every judged document (corpus order) and then the others (corpus order) up to that
    many: a smaller corpus on which nDCG still means something (it is easier than the whole one).
    """
    from lens_embed.base.inputs import read_documents
    from lens_embed.evaluation.offline import read_qrels

    folder = data / "retrieval" / task
    documents = read_documents(folder / "corpus.jsonl")
    qrels = read_qrels(folder / "qrels" / "test.tsv")
    if max_docs is not None:
        judged = {doc for docs in qrels.values() for doc in docs}
        order = [d for d in documents if d in judged] + [d for d in documents if d not in judged]
        documents = {d: documents[d] for d in order[:max_docs]}
    queries = {
        qid: text
        for qid, text in read_documents(folder / "queries.jsonl", titles=False).items()
        if qid in qrels
    }
    return documents, queries, qrels


def allocated_bytes(folder: Path, vector_names: set[str]) -> int:
    """Disk blocks of the vector storage and index files of these vectors, in every segment of a
    collection."""
    total = 0
    for path in folder.glob("segments/*/*"):
        kind, _, name = path.name.partition("-")
        if kind in ("vector_storage", "vector_index") and name in vector_names:
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            total += sum(os.stat(p).st_blocks * 512 for p in files)
    return total


def ndcg_at_10(results: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> float:
    import pytrec_eval

    run = {qid: {doc: float(10 - rank) for rank, doc in enumerate(docs)} for qid, docs in results.items()}
    scores = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    return float(
        np.mean([scores[qid]["ndcg_cut_10"] if qid in scores else 0.0 for qid in qrels if qid in results])
    )


def measure(
    model_name: str,
    ids: list[str],
    texts: list[str],
    docs: np.ndarray,
    query_texts: list[str],
    queries: np.ndarray,
    qrels: dict[str, dict[str, int]],
    query_ids: list[str],
    workdir: Path,
    top_k: int = 10,
    configs: list[tuple[str, dict[str, Any], dict[str, Any]]] | None = None,
) -> list[dict[str, object]]:
    """One row per configuration (default: :data:`CONFIGS`), each a collection of its own in ``workdir``."""
    from lens_embed.serving.collections import CollectionSpec, engine_queries, open_collection, upload_vectors
    from lens_embed.serving.engine import BM25, DENSE, SPARSE, EdgeBackend
    from lens_embed.serving.retrieval import normalized

    exact_scores = normalized(queries) @ normalized(docs).T
    tenth = np.sort(exact_scores, axis=1)[:, -top_k]
    position = {doc: i for i, doc in enumerate(ids)}
    avg_len = float(np.mean([len(text.split()) for text in texts]))
    rows = []
    for number, (label, options, search) in enumerate(CONFIGS if configs is None else configs):
        spec_options = {key: value for key, value in options.items() if key != "bm25"}
        spec = CollectionSpec(
            model_name=model_name,
            model_key="benchmark",
            dim=docs.shape[1],
            bm25_avg_len=avg_len if options.get("bm25") else None,
            **spec_options,
        )
        names = {DENSE} if spec.dense else set()
        names |= {SPARSE} if spec.sparse else set()
        names |= {BM25} if spec.bm25_avg_len is not None else set()
        empty = EdgeBackend(workdir, f"empty-{number}")
        open_collection(empty, spec)
        fixed = allocated_bytes(empty.folder, names)
        backend = EdgeBackend(workdir, f"config-{number}")
        open_collection(backend, spec)
        started = time.perf_counter()
        upload_vectors(backend, spec, ids, docs, texts=texts, batch_size=256, show_progress=False)
        built = time.perf_counter() - started
        backend.close()  # flushed: the files hold everything
        per_doc = (allocated_bytes(backend.folder, names) - fixed) / len(ids)
        graph = any(backend.folder.glob(f"segments/*/vector_index-{DENSE}/links*"))
        requests = engine_queries(
            spec,
            queries,
            query_texts,
            using=search.get("using", "auto"),
            max_active_dims=search.get("max_active_dims"),
        )
        started = time.perf_counter()
        hits = []
        for start in range(0, len(requests), 64):
            hits += backend.query(requests[start : start + 64], top_k, exact=search.get("exact", False))
        searched = time.perf_counter() - started
        backend.close()
        found = [[doc for doc, _ in row] for row in hits]
        recall = np.mean(
            [
                sum(exact_scores[q, position[doc]] >= tenth[q] - 1e-6 for doc in row) / top_k
                for q, row in enumerate(found)
            ]
        )
        rows.append(
            {
                "config": label,
                "bytes_per_doc": round(per_doc, 1),
                "gb_per_million_docs": round(per_doc * 1e6 / 1e9, 2),
                "recall_at_10": round(float(recall), 4),
                "ndcg_at_10": round(ndcg_at_10(dict(zip(query_ids, found, strict=True)), qrels), 4),
                "build_s": round(built, 2),
                "search_ms_per_query": round(1000 * searched / len(requests), 3),
                "hnsw_graph_built": graph,
            }
        )
        print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict[str, object]], task: str, n_docs: int, n_queries: int, dim: int) -> str:
    lines = [
        f"{task}: {n_docs} documents, {n_queries} test queries, {dim} dimensions; "
        "in-process engine (qdrant-edge-py); "
        "recall@10 against exact search",
        "",
        "| configuration | bytes / doc | GB / million docs | recall@10 | nDCG@10 | build (s) "
        "| search (ms/query) | HNSW graph |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['bytes_per_doc']} | {r['gb_per_million_docs']} | {r['recall_at_10']} | "
            f"{r['ndcg_at_10']} | {r['build_s']} | {r['search_ms_per_query']} | "
            f"{'built' if r['hnsw_graph_built'] else '-'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_task_arguments(parser, "results/bench-engine")
    parser.add_argument(
        "--max-docs",
        type=int,
        default=None,
        help="N documents: every judged one, then the others (quick runs; an easier corpus)",
    )
    args = parser.parse_args(argv)
    from lens_embed import default_model_path
    from lens_embed.models.loading import load_lens_model
    from lens_embed.models.model import encode
    from lens_embed.serving.corpus import encode_corpus
    from lens_embed.serving.retrieval import corpus_key

    documents, queries, qrels = load_task(Path(args.data), args.task, args.max_docs)
    model_path = args.model or str(default_model_path())
    model = load_lens_model(model_path)
    ids, texts = list(documents), list(documents.values())
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    shards = Path(args.shards) if args.shards else output / "shards" / corpus_key(model, texts)
    docs = np.load(encode_corpus(model, texts, shards), mmap_mode="r")
    query_ids = list(queries)
    query_vectors = encode(model, [queries[q] for q in query_ids], query=True, instruction=args.instruction)
    with tempfile.TemporaryDirectory(prefix="bench-engine-", dir=output) as workdir:
        rows = measure(
            model_path,
            ids,
            texts,
            np.asarray(docs),
            [queries[q] for q in query_ids],
            query_vectors,
            qrels,
            query_ids,
            Path(workdir),
        )
    print(markdown(rows, args.task, len(ids), len(query_ids), docs.shape[1]))
    (output / "engine.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
