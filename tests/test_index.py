"""Index options: each kind searches clustered random vectors with recall close to exact search.

Fixed seeds and generous bounds: the approximations' recall here is far above the bounds.
"""

from __future__ import annotations

import numpy as np
import pytest

from lens_embed.serving.retrieval import (
    INDEX_KINDS,
    build_index,
    index_bytes,
    index_memory,
    normalized,
    pq_subquantizers,
    search,
)

# Lower bounds of recall@10 against exact search, far below what these data give.
MIN_RECALL = {"flat": 1.0, "flat16": 0.95, "hnsw": 0.9, "ivf": 0.85, "ivfpq": 0.3, "opq": 0.3}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """1000 vectors in 40 clusters (like embeddings: structured, not uniform), 50 queries near them."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(40, 64))
    docs = centers[rng.integers(0, 40, 1000)] + 0.5 * rng.normal(size=(1000, 64))
    queries = docs[rng.choice(1000, 50, replace=False)] + 0.3 * rng.normal(size=(50, 64))
    return normalized(docs), normalized(queries)


def recall_at_10(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)]))


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_every_index_kind_finds_the_exact_neighbours(data, kind):
    docs, queries = data
    exact = search(build_index(docs, "flat"), queries, 10, show_progress=False)[1]
    index = build_index(docs, kind, pq_bytes=8, opq_dim=32, ivf_nlist=16, opq_iterations=4)
    assert index.ntotal == len(docs)
    assert recall_at_10(search(index, queries, 10, show_progress=False)[1], exact) >= MIN_RECALL[kind]


def test_compressed_indexes_store_fewer_bytes_per_vector(data):
    docs = data[0]
    options = {"pq_bytes": 8, "opq_dim": 32, "ivf_nlist": 16, "opq_iterations": 4}
    per_vector = {kind: index_memory(build_index(docs, kind, **options))[0] for kind in INDEX_KINDS}
    assert per_vector["flat"] == 4 * 64 and per_vector["flat16"] == 2 * 64
    for kind in (
        "ivfpq",
        "opq",
    ):  # the 8-byte code, the 8-byte id, and the lists' headers spread over the vectors
        assert 16 <= per_vector[kind] < 17
    assert per_vector["hnsw"] > per_vector["flat"]  # the graph's links come on top of the vectors


def test_index_memory_splits_fixed_and_per_vector_bytes(data):
    index = build_index(data[0], "ivfpq", pq_bytes=8, ivf_nlist=16)
    per_vector, fixed = index_memory(index)
    assert fixed + per_vector * index.ntotal == index_bytes(index) and index.ntotal == len(data[0])


def test_training_is_reproducible(data):
    docs, queries = data
    first = search(build_index(docs, "ivfpq", pq_bytes=8, ivf_nlist=16), queries, 10, show_progress=False)
    second = search(build_index(docs, "ivfpq", pq_bytes=8, ivf_nlist=16), queries, 10, show_progress=False)
    assert np.array_equal(first[1], second[1])


def test_pq_code_size_divides_the_dimension():
    assert pq_subquantizers(4000, 512) == 500
    assert pq_subquantizers(384, 48) == 48
    assert pq_subquantizers(7, 4) == 1


def test_unknown_kind_is_named(data):
    with pytest.raises(ValueError, match="'lsh'.*flat16"):
        build_index(data[0], "lsh")
