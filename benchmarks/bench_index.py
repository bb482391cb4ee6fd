"""Index memory against recall: every index kind on SciFact embedded by the embedded default model.

For each kind (``lens_embed.serving.retrieval.INDEX_KINDS``, PQ at a few code sizes) this reports the
memory per million documents (serialized bytes added per document, times 10^6, plus the fixed
part: codebooks, rotation, coarse centroids), recall@10 against exact inner-product search
over the same vectors, and build and search times. Corpus embeddings are cached in resumable
shards under ``--output``, so a rerun only rebuilds the indexes.

    make bench-index            # = python benchmarks/bench_index.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from lens_embed.base.prompts import NAMED_INSTRUCTIONS
from lens_embed.evaluation.offline import read_jsonl

# (label, kind, options): the code sizes are bytes per document of the PQ codes.
CONFIGS = [
    ("flat (float32, exact)", "flat", {}),
    ("flat16 (float16, exact search)", "flat16", {}),
    ("hnsw M=32 (float32)", "hnsw", {}),
    ("ivf (float32)", "ivf", {}),
    ("ivfpq 125 B", "ivfpq", {"pq_bytes": 128}),
    ("ivfpq 32 B", "ivfpq", {"pq_bytes": 32}),
    ("opq 4000->256, 64 B", "opq", {"pq_bytes": 64, "opq_dim": 256}),
]


def load_scifact(data: Path) -> tuple[list[str], list[str]]:
    """Corpus texts ("title text", as mteb joins them) and the test queries that have relevance judgements."""
    folder = data / "retrieval" / "SciFact"
    corpus = [f"{row.get('title', '')} {row['text']}".strip() for row in read_jsonl(folder / "corpus.jsonl")]
    judged = {line.split("\t")[0] for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    queries = [row["text"] for row in read_jsonl(folder / "queries.jsonl") if row["_id"] in judged]
    return corpus, queries


def embed(
    model_path: str, corpus: list[str], queries: list[str], cache: Path, max_docs: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Corpus embeddings from resumable 1000-document shards (only those covering the first ``max_docs``)."""
    from lens_embed.models.loading import load_lens_model
    from lens_embed.models.model import encode
    from lens_embed.serving.retrieval import ShardStore, corpus_key

    model = load_lens_model(model_path)
    key = corpus_key(model, corpus)
    store = ShardStore(cache / key, len(corpus), 1000, key)
    wanted = min(len(corpus), max_docs or len(corpus))
    shards = range(-(-wanted // store.shard_size))
    for index in shards:
        if not store.is_done(index):
            start, stop = store.bounds(index)
            store.write(index, encode(model, corpus[start:stop], batch_size=64, show_progress_bar=True))
    docs = np.concatenate([np.load(store.shard_path(i)) for i in shards])[:wanted]
    return docs, encode(model, queries, query=True, instruction=NAMED_INSTRUCTIONS["fact_check"])


def measure(docs: np.ndarray, queries: np.ndarray, top_k: int = 10) -> list[dict[str, object]]:
    from lens_embed.serving.retrieval import build_index, index_memory, normalized, search

    docs, queries = normalized(docs), normalized(queries)
    exact = search(build_index(docs, "flat"), queries, top_k, show_progress=False)[1]
    rows = []
    for label, kind, options in CONFIGS:
        start = time.perf_counter()
        index = build_index(docs, kind, **options)
        built = time.perf_counter() - start
        start = time.perf_counter()
        found = search(index, queries, top_k, show_progress=False)[1]
        searched = time.perf_counter() - start
        per_doc, fixed = index_memory(index)
        recall = np.mean([len(set(f) & set(e)) / top_k for f, e in zip(found, exact, strict=True)])
        rows.append(
            {
                "index": label,
                "bytes_per_doc": round(per_doc, 1),
                "gb_per_million_docs": round(per_doc * 1e6 / 1e9, 2),
                "fixed_mb": round(fixed / 1e6, 2),
                "recall_at_10": round(float(recall), 4),
                "build_s": round(built, 2),
                "search_ms_per_query": round(1000 * searched / len(queries), 3),
            }
        )
    return rows


def markdown(rows: list[dict[str, object]], n_docs: int, n_queries: int, dim: int) -> str:
    lines = [
        f"SciFact: {n_docs} documents, {n_queries} test queries, {dim} dimensions; "
        "recall@10 against exact search",
        "",
        "| index | bytes / doc | GB / million docs | fixed (MB) | recall@10 | build (s) "
        "| search (ms/query) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['index']} | {r['bytes_per_doc']} | {r['gb_per_million_docs']} | {r['fixed_mb']} | "
            f"{r['recall_at_10']} | {r['build_s']} | {r['search_ms_per_query']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="../shared/data", help="folder holding retrieval/SciFact")
    parser.add_argument("--model", default=None, help="default: the embedded LENS-MiniLM")
    parser.add_argument("--output", default="results/bench-index", help="embedding cache and report folder")
    parser.add_argument(
        "--max-docs", type=int, default=None, help="index only the first N documents (quick runs)"
    )
    args = parser.parse_args(argv)
    from lens_embed import default_model_path

    corpus, queries = load_scifact(Path(args.data))
    output = Path(args.output)
    docs, query_vectors = embed(
        args.model or str(default_model_path()), corpus, queries, output / "embeddings", args.max_docs
    )
    rows = measure(docs, query_vectors)
    table = markdown(rows, len(docs), len(queries), docs.shape[1])
    print(table)
    (output / "index.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
