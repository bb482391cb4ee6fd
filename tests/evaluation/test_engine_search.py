"""Retrieval evaluation searched by the Qdrant engine instead of faiss: the same nDCG@10, on both backends."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from mteb.models.model_meta import ScoringFunction
from mteb.models.search_encoder_index.search_indexes.faiss_search_index import FaissSearchIndex

from lens_embed.base.quantization import QuantizationSettings
from lens_embed.base.storage import scratch_directory
from lens_embed.commands import main
from lens_embed.evaluation.offline import offline_tasks
from lens_embed.evaluation.runner import ModelRun, evaluate_runs
from lens_embed.evaluation.search import (
    STALE_AFTER_S,
    QdrantSearchIndex,
    scratch_collection_name,
    sweep_stale_scratch,
)
from lens_embed.serving.engine import ClientBackend, EngineTarget

TARGETS = {"edge": None, "memory": EngineTarget(url=":memory:")}


@pytest.fixture(scope="module")
def minilm_run(minilm) -> ModelRun:
    from lens_embed.evaluation.encoders import PlainModelEncoder, minilm_meta

    encoder = PlainModelEncoder(minilm, minilm_meta())
    return ModelRun("minilm", lambda: encoder)


@pytest.fixture(scope="module")
def faiss_ndcg(minilm_run: ModelRun, small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> float:
    tasks = offline_tasks(small_data_dir, names=["SliceSciFact"])
    return evaluate_runs(
        [minilm_run], tasks, tmp_path_factory.mktemp("faiss"), search_index=FaissSearchIndex
    )[0].value


@pytest.mark.parametrize("backend", list(TARGETS))
def test_exact_engine_search_gives_the_faiss_exact_ndcg(
    backend: str, minilm_run: ModelRun, faiss_ndcg: float, small_data_dir: Path, tmp_path: Path
) -> None:
    tasks = offline_tasks(small_data_dir, names=["SliceSciFact"])
    engine = partial(QdrantSearchIndex, target=TARGETS[backend])
    scores = evaluate_runs([minilm_run], tasks, tmp_path / "engine", search_index=engine)
    assert scores[0].task == "SliceSciFact" and scores[0].value > 30  # x100: real retrieval, not noise
    assert scores[0].value == pytest.approx(faiss_ndcg, abs=1e-4 * 100)
    if backend == "edge":  # with the corpus embedded in shards, too
        sharded = evaluate_runs(
            [minilm_run], tasks, tmp_path / "sharded", shard_dir=tmp_path / "emb", search_index=engine
        )
        assert sharded[0].value == pytest.approx(faiss_ndcg, abs=1e-4 * 100)
        assert list((tmp_path / "emb").rglob("shard_*.npy"))


def _cosine_model() -> SimpleNamespace:
    return SimpleNamespace(
        mteb_model_meta=SimpleNamespace(name="test/model", similarity_fn_name=ScoringFunction.COSINE)
    )


@pytest.mark.parametrize("backend", list(TARGETS))
def test_search_and_rerank_answer_as_mtebs_faiss_index(backend: str) -> None:
    rng = np.random.default_rng(0)
    documents, queries = rng.standard_normal((300, 24)), rng.standard_normal((7, 24))
    ids = [f"d{i}" for i in range(300)]
    ranked = {f"q{i}": [f"d{j}" for j in rng.choice(300, 20, replace=False)] for i in range(7)}
    ranked["q3"] = []  # a query with no candidates gets no results, as with faiss
    query_ids = {i: f"q{i}" for i in range(7)}
    answers = []
    for index in (FaissSearchIndex(_cosine_model()), QdrantSearchIndex(_cosine_model(), TARGETS[backend])):
        index.add_documents(documents[:100], ids[:100])
        index.add_documents(documents[100:], ids[100:])  # a second call appends
        with pytest.warns(UserWarning, match="No top-ranked documents for query q3"):
            reranked = index.search(queries, 5, None, top_ranked=ranked, query_idx_to_id=query_ids)
        answers.append((index.search(queries, 10, None), reranked))
        index.clear()
    (faiss_full, faiss_reranked), (engine_full, engine_reranked) = answers
    for faiss_answer, engine_answer in ((faiss_full, engine_full), (faiss_reranked, engine_reranked)):
        assert engine_answer[1] == faiss_answer[1]
        for engine_scores, faiss_scores in zip(engine_answer[0], faiss_answer[0], strict=True):
            np.testing.assert_allclose(engine_scores, faiss_scores, atol=1e-5)
    assert engine_reranked[1][3] == []


def test_clear_deletes_the_scratch_collection() -> None:
    index = QdrantSearchIndex(_cosine_model())
    index.add_documents(np.eye(4), ["a", "b", "c", "d"])
    folder = index.backend.folder
    assert folder.is_dir()
    index.clear()
    assert not folder.exists() and index.backend is None


def test_the_engine_option_of_evaluate(
    minilm_path: Path, small_data_dir: Path, faiss_ndcg: float, tmp_path: Path, capsys
) -> None:
    common = [
        "--model",
        str(minilm_path),
        "--data",
        str(small_data_dir),
        "--tasks",
        "SliceSciFact",
        "--baselines",
        "none",
        "--device",
        "cpu",
    ]
    assert (
        main(["evaluate", "offline", *common, "--output", str(tmp_path / "engine"), "--engine", "qdrant"])
        == 0
    )
    (result,) = (tmp_path / "engine").rglob("SliceSciFact.json")
    ndcg = json.loads(result.read_text())["scores"]["test"][0]["ndcg_at_10"]
    assert ndcg == pytest.approx(faiss_ndcg / 100, abs=1e-4)
    capsys.readouterr()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    assert (
        main(
            [
                "evaluate",
                "offline",
                *common,
                "--output",
                str(tmp_path / "x"),
                "--engine",
                "qdrant",
                "--url",
                url,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        err.startswith(f"lens-embed evaluate: error: cannot reach Qdrant at {url}: ") and err.count("\n") == 1
    )
    assert main(["evaluate", "offline", *common, "--output", str(tmp_path / "x"), "--url", url]) == 2
    assert "--url and --api-key apply to --engine qdrant" in capsys.readouterr().err


def test_pruned_engine_search_prunes_the_lexicon_part_only(tiny_hybrid: Path) -> None:
    """``max_active_dims`` in the evaluation's index prunes as ``encode`` does: a hybrid's dense part
    stays whole."""
    from lens_embed.models.loading import load_lens_model
    from lens_embed.models.model import encode

    model = load_lens_model(tiny_hybrid, device="cpu")
    texts = [
        "a fox by the river",
        "the reserve bank",
        "a violin concert",
        "rain over the harbour",
        "market day",
    ]
    documents, queries = encode(model, texts), encode(model, texts[:2], query=True)
    index = QdrantSearchIndex(
        SimpleNamespace(loaded=model, mteb_model_meta=_cosine_model().mteb_model_meta),
        vectors="sparse",
        max_active_dims=2,
    )
    index.add_documents(documents, [f"d{i}" for i in range(len(texts))])
    scores, positions = index.search(queries, top_k=len(texts), similarity_fn=None)
    index.clear()
    expected = (
        encode(model, texts[:2], query=True, max_active_dims=2) @ encode(model, texts, max_active_dims=2).T
    )
    for row in range(2):
        np.testing.assert_allclose(scores[row], expected[row, positions[row]], atol=1e-5)
        np.testing.assert_allclose(sorted(scores[row], reverse=True), np.sort(expected[row])[::-1], atol=1e-5)


def test_a_killed_evaluations_scratch_folder_is_removed_by_the_next_one(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # $TMPDIR
    left = tmp_path / "lens-embed-engine-k2_x9abc"  # what a killed run leaves: a folder nobody holds
    (left / "collection").mkdir(parents=True)
    with scratch_directory(tmp_path, "lens-embed-engine-") as live:  # another evaluation, running
        index = QdrantSearchIndex(_cosine_model())
        index.add_documents(np.eye(4), ["a", "b", "c", "d"])
        assert not left.exists() and live.is_dir()
        index.clear()
    assert list(tmp_path.iterdir()) == []


def test_stale_scratch_collections_on_a_cluster_are_deleted_and_others_kept() -> None:
    from qdrant_client import QdrantClient, models

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    now = time.time()
    mine = scratch_collection_name().removeprefix("lens-eval-").rsplit("-", 3)[0]  # this host, as spelt
    names = {
        f"lens-eval-{mine}-{finished.pid}-{int(now)}-aaaaaa": True,  # this host, its process gone
        f"lens-eval-{mine}-{os.getpid()}-{int(now)}-bbbbbb": False,  # this host, running
        f"lens-eval-other-node-7-{int(now - STALE_AFTER_S) - 60}-cccccc": True,  # over a week old
        f"lens-eval-other-node-7-{int(now) - 3600}-dddddd": False,  # another host, an hour old
        "lens-eval-0123456789ab": False,  # an older version's random name: nothing to judge it by
        "my-documents": False,
    }
    client = QdrantClient(":memory:")
    for name in names:
        client.create_collection(
            name, vectors_config=models.VectorParams(size=2, distance=models.Distance.COSINE)
        )
    removed = sweep_stale_scratch(ClientBackend(client, "lens-eval-probe"), now=now)
    assert sorted(removed) == sorted(name for name, stale in names.items() if stale)
    assert sorted(c.name for c in client.get_collections().collections) == sorted(
        name for name, stale in names.items() if not stale
    )


def test_a_quantised_engine_search_scans_the_quantised_vectors_and_rescores_as_asked() -> None:
    """Binary quantisation of positive vectors scores every document alike (bit counts, not cosines);
    rescoring enough candidates (all 200: 10 x 20) gives the exact top 10 back, and the settings are
    recorded with the results."""
    rng = np.random.default_rng(0)
    documents = rng.random((200, 64)).astype(np.float32)
    documents /= np.linalg.norm(documents, axis=1, keepdims=True)
    queries = documents[:3] + 0.1 * rng.random((3, 64)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = queries @ documents.T

    def search(**options):
        index = QdrantSearchIndex(_cosine_model(), quantization=QuantizationSettings("binary"), **options)
        index.add_documents(documents, [f"d{i}" for i in range(200)])
        found = index.search(queries, top_k=10, similarity_fn=None)
        protocol = index.protocol()
        index.clear()
        return found, protocol

    (scores, positions), protocol = search(rescore=False)
    assert protocol == {"search": {"quantization": "binary", "rescore": False, "oversampling": None}}
    assert all(len(set(row)) == 1 and row[0] > 1 for row in scores)  # one bit count for every document
    (scores, positions), _ = search(rescore=True, oversampling=20.0)
    for row in range(3):
        np.testing.assert_allclose(scores[row], np.sort(exact[row])[::-1][:10], atol=1e-5)
        np.testing.assert_allclose(scores[row], exact[row, positions[row]], atol=1e-5)
    assert QdrantSearchIndex(_cosine_model()).protocol() == {}  # exact search: nothing to record
    with pytest.raises(ValueError, match="--oversampling applies to a quantised collection"):
        QdrantSearchIndex(_cosine_model(), oversampling=2.0).add_documents(
            documents, list(map(str, range(200)))
        )


def _rescored_search_is_exact(quantization: QuantizationSettings) -> dict:
    """A quantised search of 200 random sparse-like documents that rescores every candidate gives the exact
    top 10 of three queries; returns the search's protocol."""
    rng = np.random.default_rng(1)
    documents = rng.random((200, 64)).astype(np.float32) * (rng.random((200, 64)) < 0.3)
    documents /= np.linalg.norm(documents, axis=1, keepdims=True)
    queries = documents[:3]
    index = QdrantSearchIndex(_cosine_model(), quantization=quantization, rescore=True, oversampling=20.0)
    index.add_documents(documents, [f"d{i}" for i in range(200)])
    scores, positions = index.search(queries, top_k=10, similarity_fn=None)
    assert index.spec.quantization == quantization
    index.clear()
    exact = queries @ documents.T
    for row in range(3):
        np.testing.assert_allclose(scores[row], np.sort(exact[row])[::-1][:10], atol=1e-5)
        np.testing.assert_allclose(scores[row], exact[row, positions[row]], atol=1e-5)
    return index.protocol()


def test_an_engine_search_takes_the_binary_encodings_and_records_those_not_at_their_defaults() -> None:
    """Two bits a dimension and an 8-bit query: rescoring every candidate gives the exact top 10, and the
    protocol names both settings (a search at the defaults records neither, as results made before they
    existed)."""
    binary = QuantizationSettings("binary", binary_bits="2", binary_query="scalar8bits")
    assert _rescored_search_is_exact(binary) == {
        "search": {
            "quantization": "binary",
            "binary_bits": "2",
            "binary_query": "scalar8bits",
            "rescore": True,
            "oversampling": 20.0,
        }
    }


def test_an_engine_search_takes_turbo_bits_and_always_records_them() -> None:
    """TurboQuant at 2 bits: rescoring every candidate gives the exact top 10, and the protocol names the
    width (even the default one: no result predates it)."""
    assert _rescored_search_is_exact(QuantizationSettings("turbo", turbo_bits="2")) == {
        "search": {"quantization": "turbo", "turbo_bits": "2", "rescore": True, "oversampling": 20.0}
    }
    turbo4 = QdrantSearchIndex(_cosine_model(), quantization=QuantizationSettings("turbo")).protocol()
    int8 = QdrantSearchIndex(_cosine_model(), quantization=QuantizationSettings("int8")).protocol()
    assert turbo4["search"]["turbo_bits"] == "4" and "turbo_bits" not in int8["search"]


def test_turbo_bits_need_turbo_quantisation(small_data_dir: Path, capsys) -> None:
    common = ["evaluate", "offline", "--data", str(small_data_dir), "--tasks", "SliceSciFact"]
    argv = [*common, "--engine", "qdrant", "--quantization", "binary", "--turbo-bits", "1.5"]
    assert main(argv) == 2
    assert "--turbo-bits 1.5 applies to --quantization turbo, not binary" in capsys.readouterr().err


def test_binary_encodings_need_binary_quantisation(small_data_dir: Path, capsys) -> None:
    common = ["evaluate", "offline", "--data", str(small_data_dir), "--tasks", "SliceSciFact"]
    assert main([*common, "--engine", "qdrant", "--binary-bits", "2"]) == 2
    assert "--binary-bits 2 applies to --quantization binary, not none" in capsys.readouterr().err
    argv = [*common, "--engine", "qdrant", "--quantization", "int8", "--binary-query", "scalar4bits"]
    assert main(argv) == 2
    assert "--binary-query scalar4bits applies to --quantization binary, not int8" in capsys.readouterr().err


def test_quantisation_options_need_the_engine_and_a_quantisation(small_data_dir: Path, capsys) -> None:
    common = ["evaluate", "offline", "--data", str(small_data_dir), "--tasks", "SliceSciFact"]
    assert main([*common, "--quantization", "int8"]) == 2
    assert "--quantization, --rescore and --oversampling apply to --engine qdrant" in capsys.readouterr().err
    assert main([*common, "--engine", "qdrant", "--no-rescore"]) == 2
    assert "--rescore and --oversampling apply to a quantised search" in capsys.readouterr().err


def test_a_quantised_evaluation_records_its_search_settings_beside_the_results(
    minilm_run: ModelRun, faiss_ndcg: float, small_data_dir: Path, tmp_path: Path
) -> None:
    """An STS task comes first and is not searched: the folder's protocol still records the search."""
    tasks = offline_tasks(small_data_dir, names=["SliceSTS16", "SliceSciFact"])
    engine = partial(
        QdrantSearchIndex, quantization=QuantizationSettings("int8"), rescore=True, oversampling=4.0
    )
    scores = {s.task: s.value for s in evaluate_runs([minilm_run], tasks, tmp_path, search_index=engine)}
    assert scores["SliceSciFact"] > 30  # int8 with 40 candidates rescored: real retrieval
    (protocol,) = tmp_path.rglob("lens_embed_protocol.json")
    recorded = json.loads(protocol.read_text())["search"]
    assert recorded == {"quantization": "int8", "rescore": True, "oversampling": 4.0}
