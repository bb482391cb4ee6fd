"""Qdrant as the serving engine, on both backends: the in-process engine in a temporary folder and
qdrant-client's in-memory stand-in for a cluster. Indexing is resumable and exact, search gives
the exact cosine ranking, and bad input (another model, another configuration, a foreign document,
a wrong dimension, an unreachable URL) is refused with a message naming it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from lens_embed.base.inputs import read_documents
from lens_embed.base.quantization import QuantizationSettings
from lens_embed.commands import main, serving_verbs
from lens_embed.models.loading import load_lens_model
from lens_embed.models.model import encode
from lens_embed.serving.collections import (
    CollectionSpec,
    engine_queries,
    index_corpus,
    recorded_spec,
    search_collection,
    sparse_rows,
    upload_vectors,
    write_run,
)
from lens_embed.serving.engine import (
    RRF_K,
    ClientBackend,
    EdgeBackend,
    EngineError,
    EnginePoint,
    EngineQuery,
    Layout,
    point_id,
    quantized_bytes,
)

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["fox", "dog", "bank", "guitar", "river", "market", "storm", "garden", "violin", "harbour"]
DOCS = {
    f"doc/{i}-é": f"{WORDS[i % 10]} and {WORDS[(3 * i) % 10]} near the {WORDS[(7 * i + 1) % 10]} number {i}"
    for i in range(48)
}
DOCS["doc/zebra"] = "a zebra crossing"
QUERIES = {"q1": "a fox by the river", "q2": "music on a violin", "q3": "zebra"}


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default shard folders go to the test's own cache, never the user's."""
    from lens_embed.base.storage import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def model(tiny_lens: Path):
    return load_lens_model(tiny_lens, device="cpu")


@pytest.fixture(scope="module")
def other_model(tiny_mistral: Path, tmp_path_factory: pytest.TempPathFactory):
    """Another LENS model of the same dimension (another KMeans seed)."""
    from lens_embed import build_lens_model

    out = tmp_path_factory.mktemp("other-lens")
    build_lens_model(tiny_mistral, n_clusters=16, output_dir=out, seed=7)
    return load_lens_model(out, device="cpu")


@pytest.fixture(scope="module")
def narrow_model(tiny_mistral: Path, tmp_path_factory: pytest.TempPathFactory):
    """A LENS model with K = 12 instead of 16."""
    from lens_embed import build_lens_model

    out = tmp_path_factory.mktemp("narrow-lens")
    build_lens_model(tiny_mistral, n_clusters=12, output_dir=out)
    return load_lens_model(out, device="cpu")


@pytest.fixture(scope="module")
def hybrid_model(tiny_hybrid: Path):
    """A hybrid LENS model: K = 16 lexicon dimensions, then a 32-dimension dense part."""
    return load_lens_model(tiny_hybrid, device="cpu")


@pytest.fixture(params=["edge", "memory"])
def open_backend(request, tmp_path: Path):
    """``open_backend(name)``: a collection of the in-process engine, or of one in-memory qdrant-client."""
    if request.param == "edge":
        opened: list[EdgeBackend] = []

        def edge(name: str = "docs") -> EdgeBackend:
            opened.append(EdgeBackend(tmp_path / "engine", name))
            return opened[-1]

        yield edge
        for backend in opened:
            backend.close()
    else:
        client = QdrantClient(":memory:")
        yield lambda name="docs": ClientBackend(client, name)
        client.close()


def _index(model, backend, documents=DOCS, **options):
    """``index_corpus``, the quantisation given by its flat names (as the command line and the record)."""
    quantization = QuantizationSettings.read(options)
    others = {name: value for name, value in options.items() if name not in quantization.record()}
    return index_corpus(
        model,
        documents,
        backend,
        show_progress=False,
        upload_batch_size=8,
        quantization=quantization,
        **others,
    )


def _exact(model, documents=DOCS, queries=QUERIES) -> np.ndarray:
    return encode(model, list(queries.values()), query=True) @ encode(model, list(documents.values())).T


def _assert_exact_ranking(results: dict, exact: np.ndarray, top_k: int, tolerance: float = 1e-5) -> None:
    """Each query's results are the top_k of the exact scores (ties may come in any order)."""
    ids = list(DOCS)
    for row, (qid, found) in enumerate(results.items()):
        assert list(results) == list(QUERIES) and qid == list(QUERIES)[row]
        assert len(found) == top_k
        scores = np.array(list(found.values()))
        assert np.all(np.diff(scores) <= tolerance)  # best first
        np.testing.assert_allclose(scores, np.sort(exact[row])[::-1][:top_k], atol=tolerance)
        np.testing.assert_allclose([exact[row, ids.index(d)] for d in found], scores, atol=tolerance)


def test_dense_and_sparse_search_give_the_exact_cosine_ranking(model, open_backend):
    backend = open_backend()
    summary = _index(model, backend, vectors="both")
    assert (summary.documents, summary.uploaded) == (len(DOCS), len(DOCS))
    exact = _exact(model)
    for using in ("dense", "sparse"):
        results = search_collection(
            model, QUERIES, backend, top_k=5, using=using, exact=True, show_progress=False
        )
        _assert_exact_ranking(results, exact, top_k=5)


def test_float16_storage_keeps_the_ranking_to_float16_precision(model, open_backend):
    backend = open_backend()
    _index(model, backend, dense_dtype="float16")
    results = search_collection(model, QUERIES, backend, top_k=5, exact=True, show_progress=False)
    _assert_exact_ranking(results, _exact(model), top_k=5, tolerance=2e-3)


def test_the_collection_records_model_k_side_and_pruning(model, open_backend):
    from lens_embed.serving.retrieval import model_key

    backend = open_backend()
    _index(model, backend, model_name="tiny-lens", vectors="sparse", max_active_dims=4)
    record = backend.metadata()
    assert record["model_name"] == "tiny-lens" and record["model_key"] == model_key(model)
    assert (record["dim"], record["clusters"], record["side"]) == (16, 16, "document")
    assert (record["vectors"], record["max_active_dims"], record["bm25_avg_len"]) == ("sparse", 4, None)


def test_pruning_keeps_the_largest_magnitudes_ties_to_the_lower_index():
    vectors = np.array([[0.0, 0.5, -0.9, 0.5, 0.1], [0.0, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    (indices, values), (none, nothing) = sparse_rows(vectors, max_active_dims=2)
    assert indices.tolist() == [1, 2] and values.tolist() == pytest.approx([0.5, -0.9])
    assert none.size == 0 and nothing.size == 0
    (all_active, _), _ = sparse_rows(vectors)
    assert all_active.tolist() == [1, 2, 3, 4]


def test_pruned_sparse_search_scores_the_pruned_documents(model, open_backend):
    from lens_embed.serving.retrieval import normalized

    backend = open_backend()
    _index(model, backend, vectors="sparse", max_active_dims=3)
    documents = normalized(encode(model, list(DOCS.values())))
    pruned = np.zeros_like(documents)
    for row, (indices, values) in enumerate(sparse_rows(documents, 3)):
        pruned[row, indices] = values
    assert (np.count_nonzero(pruned, axis=1) <= 3).all()
    queries = normalized(encode(model, list(QUERIES.values()), query=True))
    whole = search_collection(model, QUERIES, backend, top_k=4, max_active_dims=0, show_progress=False)
    _assert_exact_ranking(whole, queries @ pruned.T, top_k=4)


def test_search_prunes_queries_as_the_collection_pruned_its_documents_unless_told(model, open_backend):
    backend = open_backend()
    _index(model, backend, vectors="both", max_active_dims=3)
    documents = encode(model, list(DOCS.values()), max_active_dims=3)
    pruned = encode(model, list(QUERIES.values()), query=True, max_active_dims=3)
    whole = encode(model, list(QUERIES.values()), query=True)
    assert np.count_nonzero(pruned, axis=1).max() == 3 < np.count_nonzero(whole, axis=1).min()
    search = partial(search_collection, model, QUERIES, backend, top_k=5, using="sparse", show_progress=False)
    _assert_exact_ranking(search(), pruned @ documents.T, top_k=5)  # the collection's pruning
    _assert_exact_ranking(search(max_active_dims=0), whole @ documents.T, top_k=5)  # whole queries
    _assert_exact_ranking(
        search(max_active_dims=2),
        encode(model, list(QUERIES.values()), query=True, max_active_dims=2) @ documents.T,
        top_k=5,
    )
    # a dense search of the same collection is not pruned (the default applies to sparse vectors only)
    assert search_collection(model, QUERIES, backend, top_k=5, show_progress=False)


@pytest.mark.parametrize("which", ["model", "hybrid_model"])
def test_index_and_search_prune_as_encode_does(which, open_backend, request):
    """Documents pruned at index time and queries at search time are exactly
    ``encode(..., max_active_dims=N)``: the same function, so a hybrid's dense part stays whole in the
    engine too."""
    model = request.getfixturevalue(which)
    backend = open_backend()
    _index(model, backend, vectors="sparse", max_active_dims=3)
    documents = encode(model, list(DOCS.values()), max_active_dims=3)
    queries = encode(model, list(QUERIES.values()), query=True, max_active_dims=2)
    if which == "hybrid_model":
        assert np.count_nonzero(documents[:, 16:]) == documents[:, 16:].size  # the dense part survived
    results = search_collection(model, QUERIES, backend, top_k=5, max_active_dims=2, show_progress=False)
    _assert_exact_ranking(results, queries @ documents.T, top_k=5)


def test_pruning_applies_to_sparse_query_vectors_only(model, open_backend):
    backend = open_backend()
    _index(model, backend, vectors="both")
    with pytest.raises(ValueError, match="max_active_dims prunes sparse query vectors.*dense"):
        search_collection(model, QUERIES, backend, max_active_dims=2, show_progress=False)
    assert search_collection(model, QUERIES, backend, using="sparse", max_active_dims=2, show_progress=False)


def test_a_killed_upload_resumes_with_only_the_missing_documents(model, open_backend, tmp_path: Path):
    backend = open_backend()
    real_upsert = backend.upsert
    sent: list[str] = []

    def dies_on_the_third_batch(points):
        if len(sent) == 16:
            raise KeyboardInterrupt  # as a user's Ctrl-C
        sent.extend(p.doc_id for p in points)
        real_upsert(points)

    backend.upsert = dies_on_the_third_batch
    with pytest.raises(KeyboardInterrupt):
        _index(model, backend)
    assert backend.count() == 16
    resent: list[str] = []
    backend.upsert = lambda points: resent.extend(p.doc_id for p in points) or real_upsert(points)
    summary = _index(model, backend)
    assert sorted(resent) == sorted(set(DOCS) - set(sent)) and summary.uploaded == len(DOCS) - 16
    assert list((tmp_path / "cache" / "corpus-shards").glob("*/shard_*.npy"))  # the default shard folder
    assert backend.count() == len(DOCS)
    assert sorted(p["doc_id"] for p in backend.payloads(["doc_id"])) == sorted(DOCS)
    resent.clear()
    assert _index(model, backend).uploaded == 0 and resent == []


def test_a_changed_text_is_uploaded_again_and_new_documents_are_added(model, open_backend):
    backend = open_backend()
    _index(model, backend)
    changed = {**DOCS, "doc/3-é": "an entirely new text about a storm", "doc/new": "a harbour at night"}
    resent: list[str] = []
    real_upsert = backend.upsert
    backend.upsert = lambda points: resent.extend(p.doc_id for p in points) or real_upsert(points)
    assert _index(model, backend, changed).uploaded == 2
    assert sorted(resent) == ["doc/3-é", "doc/new"] and backend.count() == len(changed)


def test_another_model_or_configuration_is_refused_naming_the_difference(
    model, other_model, narrow_model, open_backend
):
    backend = open_backend()
    _index(model, backend, vectors="both", max_active_dims=8)
    with pytest.raises(ValueError, match=r"vectors: 'both' there, 'sparse' now"):
        _index(model, backend, vectors="sparse", max_active_dims=8)
    with pytest.raises(ValueError, match=r"max_active_dims: 8 there, 4 now"):
        _index(model, backend, vectors="both", max_active_dims=4)
    with pytest.raises(ValueError, match=r"bm25: False there, True now"):
        _index(model, backend, vectors="both", max_active_dims=8, bm25=True)
    with pytest.raises(ValueError, match=r"hnsw_m: 32 there, 0 now"):
        _index(model, backend, vectors="both", max_active_dims=8, hnsw_m=0)
    with pytest.raises(ValueError, match=r"model: .* \(probe hash [0-9a-f]{16}\) there, .* now"):
        _index(other_model, backend, vectors="both", max_active_dims=8)
    with pytest.raises(ValueError, match=r"dim: 16 there, 12 now"):
        _index(narrow_model, backend, vectors="both", max_active_dims=8)
    assert backend.count() == len(DOCS)


def test_search_refuses_a_model_of_another_dimension_or_another_model(
    model, other_model, narrow_model, open_backend
):
    backend = open_backend()
    _index(model, backend)
    with pytest.raises(ValueError, match="embeds in 12 dimensions.*16-dimension"):
        search_collection(narrow_model, QUERIES, backend, show_progress=False)
    with pytest.raises(ValueError, match="probe hash"):
        search_collection(other_model, QUERIES, backend, show_progress=False)
    found = search_collection(
        other_model, QUERIES, backend, top_k=3, allow_other_model=True, show_progress=False
    )
    assert all(len(hits) == 3 for hits in found.values())


def test_vectors_of_another_dimension_are_refused(model, open_backend):
    backend = open_backend()
    _index(model, backend)
    spec = recorded_spec(backend)
    with pytest.raises(ValueError, match=r"vectors of dimension 12 do not match .* \(dimension 16\)"):
        upload_vectors(backend, spec, ["x"], np.ones((1, 12), dtype=np.float32))
    with pytest.raises(ValueError, match="query vectors have dimension 12, the collection 16"):
        engine_queries(spec, np.ones((1, 12), dtype=np.float32))
    # below the checks, the engine itself refuses (the in-process one through EngineError, an OSError)
    with pytest.raises((EngineError, ValueError), match="expected dim: 16, got 12"):
        backend.upsert([EnginePoint("x", dense=np.ones(12, dtype=np.float32))])
    assert backend.count() == len(DOCS)


def test_documents_the_corpus_lacks_are_refused_and_kept(model, open_backend):
    backend = open_backend()
    _index(model, backend)
    subset = dict(list(DOCS.items())[:40])
    with pytest.raises(
        ValueError, match=rf"holds {len(DOCS) - 40} document\(s\) that are not in this corpus"
    ):
        _index(model, backend, subset)
    assert backend.count() == len(DOCS)


def test_hybrid_search_fuses_lens_and_bm25_by_reciprocal_rank(model, open_backend):
    backend = open_backend()
    _index(model, backend, bm25=True)
    top_k = len(DOCS)
    lens = search_collection(model, QUERIES, backend, top_k=top_k, exact=True, show_progress=False)
    bm25 = search_collection(model, QUERIES, backend, top_k=top_k, using="bm25", show_progress=False)
    assert list(bm25["q3"]) == ["doc/zebra"]  # the only document with the word
    hybrid = search_collection(
        model, QUERIES, backend, top_k=top_k, using="hybrid", exact=True, show_progress=False
    )
    rank = list(lens["q3"]).index("doc/zebra")
    assert hybrid["q3"]["doc/zebra"] == pytest.approx(1 / RRF_K + 1 / (RRF_K + rank), rel=1e-5)
    assert list(hybrid["q3"])[0] == "doc/zebra"
    # fused from FUSION_DEPTH candidates per vector, not just the top 3: the same documents come first
    top3 = search_collection(
        model, QUERIES, backend, top_k=3, using="hybrid", exact=True, show_progress=False
    )
    for qid, found in top3.items():
        assert list(found.values()) == pytest.approx(list(hybrid[qid].values())[:3], rel=1e-6)
    with pytest.raises(ValueError, match="no sparse vectors"):
        search_collection(model, QUERIES, backend, using="sparse", show_progress=False)


def test_bm25_search_needs_bm25_vectors(model, open_backend):
    backend = open_backend()
    _index(model, backend)
    with pytest.raises(ValueError, match="index it with --bm25"):
        search_collection(model, QUERIES, backend, using="hybrid", show_progress=False)


def test_quantisation_and_on_disk_storage_are_recorded_and_another_value_is_refused_naming_both(
    model, open_backend
):
    backend = open_backend()
    _index(model, backend, quantization="int8", on_disk=True)
    assert (backend.metadata()["quantization"], backend.metadata()["on_disk"]) == ("int8", True)
    with pytest.raises(ValueError, match=r"quantization: 'int8' there, 'binary' now"):
        _index(model, backend, quantization="binary", on_disk=True)
    with pytest.raises(
        ValueError, match=r"quantization: 'int8' there, 'none' now; on_disk: True there, False"
    ):
        _index(model, backend)
    assert _index(model, backend, quantization="int8", on_disk=True).uploaded == 0
    with pytest.raises(ValueError, match="quantization 'product' applies to dense vectors"):
        _index(model, open_backend("sparse"), vectors="sparse", quantization="product")
    with pytest.raises(ValueError, match="quantization must be one of none, int8, binary, product"):
        QuantizationSettings("int4")


def test_rescoring_and_oversampling_reach_the_engine_and_apply_to_quantised_searches_only(
    model, open_backend
):
    backend = open_backend()
    _index(model, backend, vectors="both", quantization="binary")
    sent: list = []
    if isinstance(backend, EdgeBackend):
        real_request = backend._request
        backend._request = lambda query, limit, params: (
            sent.append(params) or real_request(query, limit, params)
        )
    else:
        real_query = backend.client.query_batch_points
        backend.client.query_batch_points = lambda name, requests: (
            sent.extend(r.params for r in requests) or real_query(name, requests)
        )
    search_collection(model, QUERIES, backend, top_k=3, show_progress=False)
    search_collection(model, QUERIES, backend, top_k=3, rescore=False, oversampling=2.5, show_progress=False)
    found = [(p.quantization.rescore, p.quantization.oversampling) if p.quantization else None for p in sent]
    assert found == [None] * 3 + [(False, 2.5)] * 3  # None: the engine's defaults
    for options, refusal in [
        ({"rescore": True, "exact": True}, "--exact reads the full vectors"),
        ({"oversampling": 2.0, "using": "sparse"}, r"--using sparse\) reads none"),
        ({"oversampling": 0.5}, "oversampling must be >= 1"),
    ]:
        with pytest.raises(ValueError, match=refusal):
            search_collection(model, QUERIES, backend, show_progress=False, **options)
    plain = open_backend("plain")
    _index(model, plain)
    with pytest.raises(ValueError, match="--rescore/--no-rescore applies to a quantised collection"):
        search_collection(model, QUERIES, plain, rescore=True, show_progress=False)


def test_the_in_process_engine_searches_quantised_vectors_and_rescores_them_with_the_full_ones(
    model, tmp_path: Path
):
    """A tiny collection too holds its quantised vectors (the engine indexes a quantised collection whatever
    its size): binary scores are bit counts, rescored ones the exact cosines."""
    with EdgeBackend(tmp_path, "docs") as backend:
        _index(model, backend, quantization="binary", on_disk=True)
        assert list((tmp_path / "docs" / "segments").glob("*/vector_storage-dense/quantized.data"))
        bits = search_collection(model, QUERIES, backend, top_k=5, rescore=False, show_progress=False)
        rescored = search_collection(
            model, QUERIES, backend, top_k=5, rescore=True, oversampling=len(DOCS) / 5, show_progress=False
        )
    assert all(score == int(score) and score > 1 for found in bits.values() for score in found.values())
    _assert_exact_ranking(rescored, _exact(model), top_k=5)


def test_binary_encodings_are_recorded_and_another_one_is_refused_naming_both(model, open_backend):
    backend = open_backend()
    _index(model, backend, quantization="binary", binary_bits="2", binary_query="scalar8bits")
    record = backend.metadata()
    assert (record["binary_bits"], record["binary_query"]) == ("2", "scalar8bits")
    assert (
        recorded_spec(backend).quantization.binary_bits,
        recorded_spec(backend).quantization.binary_query,
    ) == ("2", "scalar8bits")
    for options, refusal in [
        ({"binary_bits": "1.5", "binary_query": "scalar8bits"}, r"binary_bits: '2' there, '1.5' now"),
        (
            {"binary_bits": "2", "binary_query": "scalar4bits"},
            r"binary_query: 'scalar8bits' there, 'scalar4bits' now",
        ),
        ({}, r"binary_bits: '2' there, '1' now; binary_query: 'scalar8bits' there, 'binary' now"),
    ]:
        with pytest.raises(ValueError, match=refusal):
            _index(model, backend, quantization="binary", **options)
    assert (
        _index(model, backend, quantization="binary", binary_bits="2", binary_query="scalar8bits").uploaded
        == 0
    )
    # a collection of an earlier version recorded neither setting: it holds the defaults
    older = {key: value for key, value in record.items() if not key.startswith("binary_")}
    assert CollectionSpec.from_record(older, "old").layout() == Layout(
        dim=16, quantization=QuantizationSettings("binary")
    )


def test_binary_encodings_apply_to_binary_quantisation_only():
    for options, refusal in [
        (
            {"quantization": "int8", "binary_bits": "2"},
            "--binary-bits 2 applies to --quantization binary, not int8",
        ),
        (
            {"binary_query": "scalar4bits"},
            "--binary-query scalar4bits applies to --quantization binary, not none",
        ),
        ({"quantization": "binary", "binary_bits": "3"}, "binary bits must be one of 1, 1.5, 2, got '3'"),
        (
            {"quantization": "binary", "binary_query": "int8"},
            "must be one of binary, scalar8bits, scalar4bits",
        ),
    ]:
        with pytest.raises(ValueError, match=re.escape(refusal)):
            QuantizationSettings.read(options)
    binary = [QuantizationSettings("binary", binary_bits=bits) for bits in ("1", "1.5", "2")]
    assert [quantized_bytes(4000, settings) for settings in binary] == [500, 750, 1000]


def _lens_like_vectors() -> tuple[np.ndarray, np.ndarray]:
    """200 random non-negative sparse documents of 64 dimensions (as LENS vectors are) and 3 queries near the
    first three, all of unit length."""
    rng = np.random.default_rng(0)
    documents = rng.random((200, 64)).astype(np.float32) * (rng.random((200, 64)) < 0.3)
    documents /= np.linalg.norm(documents, axis=1, keepdims=True)
    queries = documents[:3] + 0.2 * rng.random((3, 64)).astype(np.float32) * (rng.random((3, 64)) < 0.3)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return documents, queries


def _rescoring_every_candidate_is_exact(backend, layout: Layout) -> list[EngineQuery]:
    """Create a collection of ``layout`` holding :func:`_lens_like_vectors`, check that a search rescoring
    all 200 documents gives each query's exact top 10, and return the queries."""
    documents, queries = _lens_like_vectors()
    backend.create(layout, {})
    backend.upsert([EnginePoint(doc_id=f"d{i}", dense=vector) for i, vector in enumerate(documents)])
    backend.optimize()
    requests = [EngineQuery(dense=vector) for vector in queries]
    found = backend.query(requests, 10, rescore=True, oversampling=20.0)  # all 200 documents rescored
    exact = queries @ documents.T
    for row, hits in enumerate(found):
        np.testing.assert_allclose([score for _, score in hits], np.sort(exact[row])[::-1][:10], atol=1e-5)
        np.testing.assert_allclose([exact[row, int(d[1:])] for d, _ in hits], [s for _, s in hits], atol=1e-5)
    return requests


ENCODINGS = [
    (bits, query)
    for bits in ("1", "1.5", "2")
    for query in ("binary", "scalar8bits", "scalar4bits")
    if (bits, query) != ("1", "binary")
]


@pytest.mark.parametrize(("bits", "query"), ENCODINGS, ids=[f"{b}bit-{q}" for b, q in ENCODINGS])
def test_each_binary_encoding_reaches_the_engine_and_rescoring_gives_the_exact_top_documents(
    open_backend, bits: str, query: str
):
    """A random collection of non-negative sparse vectors (as LENS vectors are). The in-process engine
    writes the encoding into its quantised segment and, without rescoring, scores with it: whole bit counts
    for a binary query, fractions too for a scalar one (bit counts weighted by the query's 4 or 8-bit
    levels); rescoring every candidate gives the
    exact top 10. The in-memory stand-in stores the configuration and searches exactly, so for it this
    proves the configuration is accepted and the search parameters pass, not the quantised search."""
    from qdrant_client import models

    backend = open_backend()
    layout = Layout(dim=64, quantization=QuantizationSettings("binary", binary_bits=bits, binary_query=query))
    requests = _rescoring_every_candidate_is_exact(backend, layout)
    encoding = {"1": "one_bit", "1.5": "one_and_half_bits", "2": "two_bits"}[bits]
    if isinstance(backend, ClientBackend):
        config = backend.client.get_collection("docs").config.params.vectors["dense"].quantization_config
        assert config == models.BinaryQuantization(
            binary=models.BinaryQuantizationConfig(
                encoding=models.BinaryQuantizationEncoding(encoding),
                query_encoding=models.BinaryQuantizationQueryEncoding(query),
                always_ram=True,
            )
        )
        return
    written = [
        json.loads(path.read_text())["quantization_config"]["binary"]
        for path in backend.folder.glob("segments/*/vector_storage-dense/quantized.config.json")
    ]
    assert written and all(
        (c["encoding"], c["query_encoding"], c["memory"]) == (encoding, query, "pinned") for c in written
    )
    quantised = [score for hits in backend.query(requests, 10, rescore=False) for _, score in hits]
    fractional = [score != int(score) for score in quantised]
    assert any(fractional) if query != "binary" else not any(fractional)


def test_turbo_bits_are_recorded_and_another_width_is_refused_naming_both(model, open_backend):
    backend = open_backend()
    _index(model, backend, quantization="turbo", turbo_bits="2")
    record = backend.metadata()
    assert record["quantization"] == "turbo" and record["turbo_bits"] == "2"
    assert recorded_spec(backend).quantization.turbo_bits == "2"
    for options, refusal in [
        ({"quantization": "turbo"}, r"turbo_bits: '2' there, '4' now"),
        ({"quantization": "turbo", "turbo_bits": "1.5"}, r"turbo_bits: '2' there, '1.5' now"),
        (
            {"quantization": "int8"},
            r"quantization: 'turbo' there, 'int8' now; turbo_bits: '2' there, '4' now",
        ),
    ]:
        with pytest.raises(ValueError, match=refusal):
            _index(model, backend, **options)
    assert _index(model, backend, quantization="turbo", turbo_bits="2").uploaded == 0
    # a collection of an earlier version did not record the setting: it holds the default
    older = {key: value for key, value in record.items() if key != "turbo_bits"}
    assert CollectionSpec.from_record(older, "old").quantization.turbo_bits == "4"


def test_turbo_bits_apply_to_turbo_quantisation_only_and_their_bytes_are_estimated():
    for options, refusal in [
        (
            {"quantization": "int8", "turbo_bits": "2"},
            "--turbo-bits 2 applies to --quantization turbo, not int8",
        ),
        ({"turbo_bits": "1"}, "--turbo-bits 1 applies to --quantization turbo, not none"),
        ({"quantization": "turbo", "turbo_bits": "8"}, "turbo bits must be one of 1, 1.5, 2, 4, got '8'"),
    ]:
        with pytest.raises(ValueError, match=re.escape(refusal)):
            QuantizationSettings.read(options)
    # the codes and 8 bytes a vector (the engine's own sizes: see the test below)
    turbo = [QuantizationSettings("turbo", turbo_bits=bits) for bits in ("1", "1.5", "2", "4")]
    assert [quantized_bytes(4000, settings) for settings in turbo] == [508, 758, 1008, 2008]
    assert QuantizationSettings("turbo") == turbo[-1]  # 4 bits unless told


@pytest.mark.parametrize("bits", ["1", "1.5", "2", "4"])
def test_each_turbo_width_reaches_the_engine_and_rescoring_gives_the_exact_top_documents(
    open_backend, bits: str
):
    """The in-process engine writes the width into its quantised segment, stores for each vector the bytes
    :func:`quantized_bytes` counts (the memory estimate), and scores with the quantised codes: without
    rescoring the scores are not the exact ones, and by default it rescores below 4 bits only (as the
    ``search --rescore`` help says); rescoring every candidate gives the exact top 10. The in-memory
    stand-in stores the configuration and searches exactly, so for it this proves the configuration is
    accepted and the search parameters pass, not the quantised search."""
    from qdrant_client import models

    backend = open_backend()
    requests = _rescoring_every_candidate_is_exact(
        backend, Layout(dim=64, quantization=QuantizationSettings("turbo", turbo_bits=bits))
    )
    size = {"1": "bits1", "1.5": "bits1_5", "2": "bits2", "4": "bits4"}[bits]
    if isinstance(backend, ClientBackend):
        config = backend.client.get_collection("docs").config.params.vectors["dense"].quantization_config
        assert config == models.TurboQuantization(
            turbo=models.TurboQuantQuantizationConfig(bits=models.TurboQuantBitSize(size), always_ram=True)
        )
        return
    folders = list(backend.folder.glob("segments/*/vector_storage-dense"))
    written = [json.loads((folder / "quantized.config.json").read_text()) for folder in folders]
    assert written and all(
        (c["quantization_config"]["turbo"]["bits"], c["quantization_config"]["turbo"]["memory"])
        == (size, "pinned")
        for c in written
    )
    # the optimised segment holds every point (the 200 documents and lens-embed's record) in quantized.data
    counted = [
        (folder, config["vector_parameters"]["count"])
        for folder, config in zip(folders, written, strict=True)
        if "count" in config["vector_parameters"]
    ]
    assert [count for _, count in counted] == [201]
    assert (counted[0][0] / "quantized.data").stat().st_size == 201 * quantized_bytes(
        64, QuantizationSettings("turbo", turbo_bits=bits)
    )
    documents, queries = _lens_like_vectors()
    exact = queries @ documents.T
    for rescore in (False, None):
        hits = [
            (exact[row, int(doc[1:])], score)
            for row, found in enumerate(backend.query(requests, 10, rescore=rescore))
            for doc, score in found
        ]
        exact_scores = np.allclose(*zip(*hits, strict=True), atol=1e-5)
        assert exact_scores == (rescore is None and bits != "4")


def test_point_ids_are_uuids_derived_from_document_ids():
    assert point_id("doc/1-é") == point_id("doc/1-é") != point_id("doc/1")
    assert uuid.UUID(point_id("doc/1-é")).version == 5


def test_a_cluster_collection_is_created_with_its_shards_replicas_and_layout():
    from qdrant_client import models

    from lens_embed.serving.engine import EngineTarget

    backend = EngineTarget(url=":memory:", shard_number=3, replication_factor=2).open("docs")
    created: list[dict] = []
    real = backend.client.create_collection
    backend.client.create_collection = lambda *args, **kwargs: created.append(kwargs) or real(*args, **kwargs)
    backend.create(
        Layout(
            dim=4,
            sparse=True,
            bm25=True,
            dense_dtype="float16",
            hnsw_m=24,
            hnsw_ef_construct=128,
            quantization=QuantizationSettings("product"),
            on_disk=True,
        ),
        {"k": 1},
    )
    assert (created[0]["shard_number"], created[0]["replication_factor"]) == (
        3,
        2,
    )  # the in-memory store ignores them
    params = backend.client.get_collection("docs").config.params
    assert params.vectors["dense"].datatype == models.Datatype.FLOAT16
    assert (params.vectors["dense"].hnsw_config.m, params.vectors["dense"].hnsw_config.ef_construct) == (
        24,
        128,
    )
    assert (
        params.sparse_vectors["bm25"].modifier == models.Modifier.IDF
        and params.sparse_vectors["lens"].modifier is None
    )
    assert params.vectors["dense"].quantization_config == models.ProductQuantization(
        product=models.ProductQuantizationConfig(compression=models.CompressionRatio.X16, always_ram=True)
    )
    assert params.vectors["dense"].on_disk and all(v.index.on_disk for v in params.sparse_vectors.values())
    assert backend.metadata() == {"k": 1}
    sent: list = []
    real_query = backend.client.query_batch_points
    backend.client.query_batch_points = lambda name, requests: (
        sent.extend(requests) or real_query(name, requests)
    )
    backend.query([EngineQuery(dense=np.ones(4, dtype=np.float32))], 3, hnsw_ef=77)
    backend.query([EngineQuery(dense=np.ones(4, dtype=np.float32))], 3, exact=True)
    assert [(r.params.hnsw_ef, r.params.exact, r.using) for r in sent] == [
        (77, False, "dense"),
        (None, True, "dense"),
    ]
    with pytest.raises(ValueError, match="apply to a cluster"):
        EngineTarget(path=Path("x"), shard_number=3)


def test_dense_vectors_above_qdrants_limit_are_refused_sparse_ones_are_not():
    with pytest.raises(ValueError, match="65536"):
        Layout(dim=70_000)
    assert Layout(dim=70_000, dense=False, sparse=True).sparse


def test_an_edge_collection_persists_and_a_second_process_is_kept_out(model, tmp_path: Path):
    with EdgeBackend(tmp_path, "docs") as backend:
        _index(model, backend)
        with pytest.raises(EngineError, match="in use by another lens-embed process"):
            EdgeBackend(tmp_path, "docs").count()
    with EdgeBackend(tmp_path, "docs") as reopened:
        assert reopened.count() == len(DOCS)
        results = search_collection(model, QUERIES, reopened, top_k=5, exact=True, show_progress=False)
    _assert_exact_ranking(results, _exact(model), top_k=5)


@pytest.mark.parametrize(
    "options", [{}, {"on_disk": True, "quantization": QuantizationSettings("int8")}], ids=["ram", "on-disk"]
)
def test_a_process_killed_mid_upload_loses_nothing_and_duplicates_nothing(
    model, tiny_lens: Path, tmp_path: Path, options: dict
):
    script = f"""
import os, signal
from lens_embed.base.quantization import QuantizationSettings
from lens_embed.serving.engine import EdgeBackend
from lens_embed.models.loading import load_lens_model
from lens_embed.serving.collections import index_corpus
backend = EdgeBackend({str(tmp_path)!r}, "docs")
real, batches = backend.upsert, []
def upsert(points):
    real(points)
    batches.append(len(points))
    if len(batches) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
backend.upsert = upsert
index_corpus(load_lens_model({str(tiny_lens)!r}, device="cpu"), {DOCS!r}, backend, show_progress=False,
             upload_batch_size=8, shard_dir={str(tmp_path / "shards")!r}, **{options!r})
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    killed = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    with EdgeBackend(tmp_path, "docs") as backend:
        assert backend.count() == 24
        summary = index_corpus(
            model, DOCS, backend, show_progress=False, shard_dir=tmp_path / "shards", **options
        )
        assert summary.uploaded == len(DOCS) - 24 and backend.count() == len(DOCS)
        if options:  # the full vectors are stored, and read back, from their on-disk storage
            assert recorded_spec(backend).on_disk
            results = search_collection(model, QUERIES, backend, top_k=5, exact=True, show_progress=False)
    if options:
        _assert_exact_ranking(results, _exact(model), top_k=5)


# ---- reading corpora ----


def test_read_documents_joins_titles_and_names_bad_lines(tmp_path: Path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        '{"_id": "a", "title": "T", "text": "body"}\n{"id": 7, "text": " plain "}\n', encoding="utf-8"
    )
    assert read_documents(corpus) == {"a": "T body", "7": "plain"}
    assert read_documents(corpus, titles=False) == {"a": "body", "7": "plain"}
    cases = {
        '{"_id": "a", "text": "x"}\n{"_id": "b", "text": "y"}\n'
        '{"_id": "a", "text": "z"}\n': r":3: duplicate id 'a' \(first on line 1\)",
        '{"_id": "a", "text": "x"}\n{"text": "no id"}\n': r":2: missing id",
        '{"_id": "", "text": "x"}\n': r":1: missing id",
        '{"_id": "a"}\n': r":1: 'text' must be a string",
        '{"_id": "a", "text": "x"}\n\n': r":2: blank line",
        '{"_id": "a", "text": "x"\n': r":1:\d+: not valid JSON",
    }
    for content, message in cases.items():
        corpus.write_text(content, encoding="utf-8")
        with pytest.raises(ValueError, match=message):
            read_documents(corpus)
    corpus.write_bytes(b'{"_id": "a", "text": "x"}\n{"_id": "b", "text": "\xff"}\n')
    with pytest.raises(ValueError, match=r"corpus.jsonl:2: not valid UTF-8"):
        read_documents(corpus)
    with pytest.raises(ValueError, match=r"expected a .jsonl file"):
        read_documents(tmp_path / "corpus.txt")


# ---- the command line ----


def _write_jsonl(path: Path, rows: dict[str, str]) -> Path:
    path.write_text(
        "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in rows.items()), encoding="utf-8"
    )
    return path


def _in_engine(folder: Path) -> list[str]:
    """The options that name collection ``docs`` in the in-process engine under ``folder/engine``."""
    return ["--collection", "docs", "--path", str(folder / "engine")]


@pytest.fixture
def commands(tiny_lens: Path, tmp_path: Path) -> tuple[list[str], list[str]]:
    """``index`` of :data:`DOCS` and ``search`` of :data:`QUERIES` (written in ``tmp_path``) with the tiny
    model, both naming collection ``docs`` in the in-process engine under ``tmp_path/engine``."""
    corpus = _write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    queries = _write_jsonl(tmp_path / "queries.jsonl", QUERIES)
    target = _in_engine(tmp_path)
    return ["index", str(tiny_lens), str(corpus), *target], ["search", str(tiny_lens), str(queries), *target]


def test_index_and_search_commands_write_trec_and_json_runs(model, commands, tmp_path: Path, capsys):
    index, search = commands
    index = [*index, "--shards", str(tmp_path / "shards"), "--vectors", "both"]
    assert main(index) == 0
    assert f"{len(DOCS)} documents ({len(DOCS)} uploaded now, 0 already there)" in capsys.readouterr().out
    assert main(index) == 0
    assert f"(0 uploaded now, {len(DOCS)} already there)" in capsys.readouterr().out
    exact = [*search, "--top-k", "5", "--exact"]
    assert main([*exact, "--out", str(tmp_path / "run.trec")]) == 0
    lines = [line.split(" ") for line in (tmp_path / "run.trec").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 15 and all(
        len(row) == 6 and row[1] == "Q0" and row[-1] == "lens-embed" for row in lines
    )
    assert [row[0] for row in lines] == [q for q in QUERIES for _ in range(5)]
    assert [int(row[3]) for row in lines] == [1, 2, 3, 4, 5] * 3 and all(row[2] in DOCS for row in lines)
    assert main([*exact, "--using", "sparse", "--out", str(tmp_path / "run.json")]) == 0
    results = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    _assert_exact_ranking(results, _exact(model), top_k=5)
    assert main([*search, "--out", str(tmp_path / "run.json")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_index_reuses_the_shards_encode_corpus_wrote(tiny_lens: Path, tmp_path: Path, monkeypatch, capsys):
    from lens_embed.models.model import LensSentenceTransformer

    corpus = _write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    shards = tmp_path / "shards"
    assert (
        main(["encode-corpus", str(tiny_lens), str(corpus), "--out", str(shards), "--shard-size", "10"]) == 0
    )
    encoded: list[int] = []
    real = LensSentenceTransformer.encode_document  # what every document embedding of the router reaches
    monkeypatch.setattr(
        LensSentenceTransformer,
        "encode_document",
        lambda model, texts, **kw: encoded.append(len(texts)) or real(model, texts, **kw),
    )
    index = ["index", str(tiny_lens), str(corpus), *_in_engine(tmp_path), "--shards", str(shards)]
    assert main([*index, "--shard-size", "10"]) == 0
    assert f"({len(DOCS)} uploaded now" in capsys.readouterr().out
    assert set(encoded) == {1}  # only the one-text probes that identify the model: no document embedded again


def test_the_index_command_refuses_duplicate_ids_and_another_configuration(
    tiny_lens: Path, tmp_path: Path, capsys
):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "a", "text": "fox"}\n{"_id": "a", "text": "dog"}\n', encoding="utf-8")
    target = [*_in_engine(tmp_path), "--shards", str(tmp_path / "shards")]
    assert main(["index", str(tiny_lens), str(corpus), *target]) == 2
    assert (
        "lens-embed index: error: " in (err := capsys.readouterr().err)
        and "corpus.jsonl:2: duplicate id 'a'" in err
    )
    corpus.write_text('{"_id": "a", "text": "fox"}\n{"_id": "b", "text": "dog"}\n', encoding="utf-8")
    assert main(["index", str(tiny_lens), str(corpus), *target]) == 0
    assert main(["index", str(tiny_lens), str(corpus), *target, "--dense-dtype", "float16"]) == 2
    assert "dense_dtype: 'float32' there, 'float16' now" in capsys.readouterr().err
    assert main(["index", str(tiny_lens), str(corpus), *target, "--max-active-dims", "4"]) == 2
    assert "with vectors sparse or both" in capsys.readouterr().err


def test_a_trec_run_refuses_ids_with_whitespace(tmp_path: Path):
    with pytest.raises(ValueError, match="'doc 1' is empty or holds whitespace"):
        write_run({"q1": {"doc 1": 1.0}}, tmp_path / "run.trec")
    assert not (tmp_path / "run.trec").exists()
    write_run({"q1": {"doc 1": 1.0}}, tmp_path / "run.json")
    assert json.loads((tmp_path / "run.json").read_text()) == {"q1": {"doc 1": 1.0}}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_url_is_one_line_and_exit_2(tiny_lens: Path, tmp_path: Path, capsys):
    queries = _write_jsonl(tmp_path / "queries.jsonl", QUERIES)
    url = f"http://127.0.0.1:{_closed_port()}"
    assert (
        main(
            [
                "search",
                str(tiny_lens),
                str(queries),
                "--collection",
                "docs",
                "--url",
                url,
                "--out",
                str(tmp_path / "run.trec"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        err.startswith(f"lens-embed search: error: cannot reach Qdrant at {url}: ") and err.count("\n") == 1
    )
    assert not (tmp_path / "run.trec").exists()


def test_index_under_torchrun_embeds_on_two_ranks_and_uploads_once(
    model, tiny_lens: Path, tmp_path: Path, torchrun
):
    corpus = _write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    shards = ["--shards", str(tmp_path / "shards"), "--shard-size", "10"]
    result = torchrun("index", str(tiny_lens), str(corpus), *_in_engine(tmp_path), *shards)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        result.stdout.count("uploaded now") == 1 and len(list((tmp_path / "shards").glob("shard_*.npy"))) == 5
    )
    with EdgeBackend(tmp_path / "engine", "docs") as backend:
        assert backend.count() == len(DOCS)
        results = search_collection(model, QUERIES, backend, top_k=5, exact=True, show_progress=False)
    _assert_exact_ranking(results, _exact(model), top_k=5)


# ---- one process at a time ----

_WRITER = """
import json, sys, time
from pathlib import Path
import numpy as np
from lens_embed.serving.engine import EdgeBackend, EnginePoint, Layout
folder, rounds = Path(sys.argv[1]), int(sys.argv[2])
backend = EdgeBackend(folder, "c")
backend.create(Layout(dim=8, hnsw_m=0), {"format": 1})
rng, sent = np.random.default_rng(0), []
while len(sent) < 10 * rounds or not (folder / "REFUSED").exists():
    batch = [str(i) for i in range(len(sent), len(sent) + 10)]
    backend.upsert([EnginePoint(doc_id=i, dense=rng.random(8).astype(np.float32)) for i in batch])
    sent += batch
    (folder / "GO").touch()
backend.optimize()
(folder / "STOP").touch()
backend.close()
print(json.dumps(sent))
"""

_OPENER = """
import sys, time
from pathlib import Path
from lens_embed.serving.engine import EdgeBackend, EngineError
folder = Path(sys.argv[1])
while not (folder / "GO").exists():
    time.sleep(0.001)
refusals = []
while not (folder / "STOP").exists():
    backend = EdgeBackend(folder, "c")  # what search, index and the evaluation do first
    try:
        backend.count()
    except EngineError as error:
        refusals.append(str(error))
        (folder / "REFUSED").touch()
    finally:
        backend.close()
print(refusals[0] if refusals else "never refused")
"""


def test_a_second_process_never_reaches_a_collection_that_is_being_written(tmp_path: Path):
    """The engine's own open path damages a shard that another process is writing (uploads vanish), so
    lens-embed locks the collection first: the opener is refused and the writer's collection stays exact."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    for round_ in range(3):
        folder = tmp_path / f"round{round_}"
        folder.mkdir()
        opener = subprocess.Popen(
            [sys.executable, "-c", _OPENER, str(folder)], env=env, stdout=subprocess.PIPE, text=True
        )
        writer = subprocess.run(
            [sys.executable, "-c", _WRITER, str(folder), "30"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        refused = opener.communicate(timeout=300)[0]
        assert writer.returncode == 0, writer.stderr[-2000:]
        sent = json.loads(writer.stdout)
        with EdgeBackend(folder, "c") as backend:
            assert backend.count() == len(sent)
            assert sorted(p["doc_id"] for p in backend.payloads(["doc_id"])) == sorted(sent)
        assert "another lens-embed process" in refused and str(folder / "c") in refused, refused


def test_a_rerun_finishes_an_optimisation_that_a_killed_run_left_undone(model, tmp_path: Path):
    with EdgeBackend(tmp_path, "docs") as backend:
        backend.optimize = lambda: (_ for _ in ()).throw(KeyboardInterrupt)  # killed right after the upload
        with pytest.raises(KeyboardInterrupt):
            _index(model, backend)
    with EdgeBackend(tmp_path, "docs") as backend:
        real, optimised = backend.optimize, []
        backend.optimize = lambda: optimised.append(True) or real()
        assert _index(model, backend).uploaded == 0 and optimised == [True]


def test_the_closing_check_reads_every_vector_back_from_disk(model, tmp_path: Path):
    with EdgeBackend(tmp_path, "docs") as backend:
        _index(model, backend)
    (chunk,) = (tmp_path / "docs" / "segments").glob("*/vector_storage-dense/vectors/chunk_0.mmap")
    os.truncate(chunk, 100)  # the vectors are gone, ids and payloads are intact
    with EdgeBackend(tmp_path, "docs") as backend, pytest.raises(EngineError, match="out of bounds"):
        _index(model, backend)


def test_damaged_collections_are_named_as_damaged(model, tmp_path: Path):
    with EdgeBackend(tmp_path, "docs") as backend:
        _index(model, backend)
    (page,) = (tmp_path / "docs" / "segments").glob("*/payload_storage/page_0.dat")
    with page.open("r+b") as handle:
        handle.write(np.random.default_rng(0).bytes(4096))
    with (
        EdgeBackend(tmp_path, "docs") as backend,
        pytest.raises(EngineError, match="reading lens-embed's record"),
    ):
        recorded_spec(backend)
    shutil.rmtree(tmp_path / "docs" / "segments")
    with EdgeBackend(tmp_path, "docs") as backend, pytest.raises(EngineError, match="damaged: its segments/"):
        recorded_spec(backend)


def test_the_collection_records_and_compares_the_settings_that_change_embeddings(
    model, tiny_lens: Path, open_backend
):
    backend = open_backend()
    _index(model, backend)
    settings = backend.metadata()["settings"]
    assert settings["max_seq_length"] == model.max_seq_length
    assert settings["pooling"] == model.lexicon().get_config_dict()  # every pooling option, by name
    shorter = load_lens_model(tiny_lens, device="cpu")
    shorter.max_seq_length = 40  # the probe text (31 tokens) is shorter: the probe hash stays the same
    with pytest.raises(ValueError, match=rf"max_seq_length: {model.max_seq_length} there, 40 now"):
        _index(shorter, backend)
    with pytest.raises(ValueError, match="indexed with other model settings .*max_seq_length"):
        search_collection(shorter, QUERIES, backend, show_progress=False)
    assert search_collection(shorter, QUERIES, backend, top_k=2, allow_other_model=True, show_progress=False)
    shorter.lexicon().dense_weight = 0.5  # as a new pooling option would: compared by its name
    with pytest.raises(ValueError, match=r"pooling\.dense_weight: 1\.0 there, 0\.5 now"):
        _index(shorter, backend)
    assert backend.count() == len(DOCS)


def test_an_upload_the_disk_cannot_hold_is_refused_saying_what_it_needs(model, tmp_path: Path):
    with EdgeBackend(tmp_path, "docs") as backend:
        backend.free_space = lambda: 1000
        with pytest.raises(OSError, match=r"the upload needs about [\d,]+ MB of disk and 0 MB are free"):
            _index(model, backend, shard_dir=tmp_path / "shards")
        assert backend.count() == 0
        del backend.free_space
        assert _index(model, backend, shard_dir=tmp_path / "shards").uploaded == len(DOCS)


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a model fails the test: what these refuse must be found before it. Patched where the verbs
    call it (the verbs' module binds the loader when it is imported)."""

    def load(*args, **kwargs):
        raise AssertionError("the model was loaded before the check")

    monkeypatch.setattr(serving_verbs, "load_lens_model", load)


def _bad_place_cases(tmp_path: Path, model: Path) -> dict[str, tuple[list[str], str]]:
    """``{case: (argv, the error's text)}`` of index and search invocations refused before any work."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "taken").write_text("x")
    (tmp_path / "outdir").mkdir()
    corpus = _write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    queries = _write_jsonl(tmp_path / "queries.jsonl", QUERIES)
    spaced = _write_jsonl(tmp_path / "spaced.jsonl", {"q 1": "a fox"})
    surrogate = tmp_path / "surrogate.jsonl"
    surrogate.write_text('{"_id": "a", "text": "fox"}\n{"_id": "b", "text": "x\\ud800"}\n', encoding="utf-8")
    url = f"http://127.0.0.1:{_closed_port()}"
    index = ["index", str(model), str(corpus), "--collection", "docs"]
    search = ["search", str(model), str(queries), "--collection", "docs"]
    in_engine = ["--path", str(tmp_path / "engine")]
    return {
        "index --path a file": ([*index, "--path", str(tmp_path / "afile")], "afile is a file, not a folder"),
        "search --path a file": (
            [*search, "--path", str(tmp_path / "afile"), "--out", str(tmp_path / "r.trec")],
            "afile is a file, not a folder",
        ),
        "index DIR/NAME a file": (
            [*index[:-1], "taken", *in_engine],
            "taken is a file, not a collection",
        ),
        "name too long with the staging suffix": (
            [*index[:-1], "n" * 240, *in_engine],
            "240 characters is too long .*at most 237",
        ),
        "index --shards inside the model": (
            [*index, *in_engine, "--shards", str(model / "shards")],
            r"--shards .* is \(or overlaps\) the model",
        ),
        "index --path inside the model": (
            [*index, "--path", str(model / "c")],
            r"--path .* is \(or overlaps\) the model",
        ),
        "index --url unreachable": ([*index, "--url", url], f"cannot reach Qdrant at {url}"),
        "index --url :memory:": ([*index, "--url", ":memory:"], "lives only as long as this process"),
        "a lone surrogate in the corpus": (
            [*index[:2], str(surrogate), "--collection", "docs", *in_engine],
            r"surrogate.jsonl:2: the text holds a lone surrogate U\+D800",
        ),
        "a query id a TREC run cannot hold": (
            [*search[:2], str(spaced), "--collection", "docs", *in_engine, "--out", str(tmp_path / "r.trec")],
            "'q 1' is empty or holds whitespace",
        ),
        "search --out a folder": (
            [*search, *in_engine, "--out", str(tmp_path / "outdir"), "--overwrite"],
            "outdir is a folder",
        ),
        "search --out under a file": (
            [*search, *in_engine, "--out", str(tmp_path / "afile" / "r.trec")],
            "afile is a file, not a folder",
        ),
        "search --out inside the model": (
            [*search, *in_engine, "--out", str(model / "modules.json"), "--overwrite"],
            r"--out .* is \(or overlaps\) the model",
        ),
        "search --url unreachable": (
            [*search, "--url", url, "--out", str(tmp_path / "r.trec")],
            f"cannot reach Qdrant at {url}",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "index --path a file",
        "search --path a file",
        "index DIR/NAME a file",
        "name too long with the staging suffix",
        "index --shards inside the model",
        "index --path inside the model",
        "index --url unreachable",
        "index --url :memory:",
        "a lone surrogate in the corpus",
        "a query id a TREC run cannot hold",
        "search --out a folder",
        "search --out under a file",
        "search --out inside the model",
        "search --url unreachable",
    ],
)
def test_index_and_search_refuse_unusable_places_before_the_model_loads(
    case, tiny_lens: Path, tmp_path: Path, no_model_load, capsys
):
    argv, message = _bad_place_cases(tmp_path, tiny_lens)[case]
    before = {path: path.stat().st_mtime_ns for path in tiny_lens.rglob("*")}
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1, err
    assert {path: path.stat().st_mtime_ns for path in tiny_lens.rglob("*")} == before  # the model untouched
    assert not (tmp_path / "engine" / "docs").exists()  # no collection left behind


def test_a_top_k_beyond_what_the_engine_takes_is_refused_when_parsed(tmp_path: Path, capsys):
    from lens_embed.base.defaults import MAX_TOP_K

    queries = _write_jsonl(tmp_path / "queries.jsonl", QUERIES)
    argv = ["search", "model", str(queries), "--collection", "docs", "--out", str(tmp_path / "r.trec")]
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--top-k", str(MAX_TOP_K + 1)])
    assert exited.value.code == 2 and f"must be >= 1 and <= {MAX_TOP_K}" in capsys.readouterr().err


def test_a_collection_in_use_is_refused_before_the_model_loads(
    model, commands, tmp_path, no_model_load, capsys
):
    index, search = commands
    with EdgeBackend(tmp_path / "engine", "docs") as holder:
        _index(model, holder)
        for argv in (index, [*search, "--out", str(tmp_path / "r.trec")]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert f"engine/docs is in use by another lens-embed process (pid {os.getpid()})" in err, err
        assert holder.count() == len(DOCS)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_places_are_refused_before_the_model_loads(tiny_lens, tmp_path, no_model_load, capsys):
    corpus = _write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    queries = _write_jsonl(tmp_path / "queries.jsonl", QUERIES)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        target = _in_engine(tmp_path)
        for argv in (
            ["index", str(tiny_lens), str(corpus), *_in_engine(locked)],
            ["index", str(tiny_lens), str(corpus), *target, "--shards", str(locked / "shards")],
            ["search", str(tiny_lens), str(queries), *target, "--out", str(locked / "r.trec")],
        ):
            assert main(argv) == 2
            assert f"cannot write in {locked}" in capsys.readouterr().err
    finally:
        locked.chmod(0o755)


def test_quantisation_options_that_cannot_apply_are_refused_before_the_model_loads(
    model, commands, tmp_path, no_model_load, capsys
):
    index, search = commands
    with EdgeBackend(tmp_path / "engine", "docs") as backend:
        _index(model, backend)  # no quantisation
    search = [*search, "--out", str(tmp_path / "r.trec")]
    for argv, refusal in [
        (
            [*index, "--vectors", "sparse", "--quantization", "int8"],
            "quantization 'int8' applies to dense vectors",
        ),
        (
            [*index, "--quantization", "int8", "--binary-query", "scalar8bits"],
            "--binary-query scalar8bits applies to --quantization binary, not int8",
        ),
        (
            [*index, "--quantization", "binary", "--turbo-bits", "2"],
            "--turbo-bits 2 applies to --quantization turbo, not binary",
        ),
        ([*search, "--oversampling", "2"], "--oversampling applies to a quantised collection"),
        ([*search, "--no-rescore"], "--rescore/--no-rescore applies to a quantised collection"),
    ]:
        assert main(argv) == 2
        assert refusal in capsys.readouterr().err
    for argv, refusal in [
        ([*search, "--oversampling", "0.5"], "argument --oversampling: must be a finite number >= 1.0"),
        ([*index, "--quantization", "int4"], "invalid choice: 'int4'"),
        ([*index, "--quantization", "binary", "--binary-bits", "3"], "invalid choice: '3'"),
        ([*index, "--quantization", "turbo", "--turbo-bits", "8"], "invalid choice: '8'"),
    ]:
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2 and refusal in capsys.readouterr().err
