"""Sharded corpus encoding: resume after an interruption without recomputing, never a partial shard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lens_embed.serving.retrieval import (
    DenseRetriever,
    ShardStore,
    build_index,
    encode_in_shards,
    normalized,
    search,
)

TEXTS = [f"document number {i}" for i in range(103)]


def _fake_encode(texts: list[str]) -> np.ndarray:
    return np.stack([np.random.default_rng(int(t.split()[-1])).standard_normal(8) for t in texts]).astype(
        np.float32
    )


class Interrupt(RuntimeError):
    pass


def test_resume_after_interruption_recomputes_only_missing_shards(tmp_path: Path) -> None:
    encoded: list[int] = []

    def dies_on_third_shard(texts: list[str]) -> np.ndarray:
        if len(encoded) == 2:
            raise Interrupt("simulated crash")
        encoded.append(len(texts))
        return _fake_encode(texts)

    with pytest.raises(Interrupt):
        encode_in_shards(dies_on_third_shard, TEXTS, tmp_path, key="k", shard_size=25, show_progress=False)
    store = ShardStore(tmp_path, len(TEXTS), 25, "k")
    assert store.pending() == [2, 3, 4]
    assert not list(tmp_path.glob(".*tmp*"))  # nothing half-written left behind
    finished = {i: store.shard_path(i).stat().st_mtime_ns for i in (0, 1)}

    resumed: list[int] = []

    def counting(texts: list[str]) -> np.ndarray:
        resumed.append(len(texts))
        return _fake_encode(texts)

    embeddings = encode_in_shards(counting, TEXTS, tmp_path, key="k", shard_size=25, show_progress=False)
    assert resumed == [25, 25, 3]  # shards 2, 3 and the short last one; 0 and 1 reused
    assert {i: store.shard_path(i).stat().st_mtime_ns for i in (0, 1)} == finished
    np.testing.assert_array_equal(embeddings, _fake_encode(TEXTS))


def test_folder_of_another_corpus_is_refused(tmp_path: Path) -> None:
    encode_in_shards(_fake_encode, TEXTS, tmp_path, key="corpus-a", shard_size=50, show_progress=False)
    with pytest.raises(ValueError, match="another corpus"):
        encode_in_shards(_fake_encode, TEXTS, tmp_path, key="corpus-b", shard_size=50, show_progress=False)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_index_kinds_find_the_exact_neighbour(kind: str) -> None:
    vectors = normalized(_fake_encode(TEXTS))
    index = build_index(vectors, kind, ivf_nlist=4, ivf_nprobe=4)
    scores, ids = search(index, vectors[:10], top_k=3, show_progress=False)
    assert list(ids[:, 0]) == list(range(10))
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)


def test_dense_retriever_ranks_relevant_documents_and_reuses_shards(
    minilm, scifact_slice: dict, tmp_path: Path
) -> None:
    corpus = {str(d["_id"]): f"{d['title']} {d['text']}" for d in scifact_slice["corpus"]}
    queries = {str(q["_id"]): q["text"] for q in scifact_slice["queries"][:10]}
    retriever = DenseRetriever(minilm, tmp_path, shard_size=50, show_progress=False)
    first = retriever.retrieve(corpus, queries, top_k=10)
    hits = sum(any(doc in scifact_slice["qrels"][qid] for doc in list(first[qid])[:10]) for qid in queries)
    assert hits >= 7
    shard_files = sorted(tmp_path.rglob("shard_*.npy"))
    assert len(shard_files) == -(-len(corpus) // 50)
    stamps = [p.stat().st_mtime_ns for p in shard_files]
    assert retriever.retrieve(corpus, queries, top_k=10) == first
    assert [p.stat().st_mtime_ns for p in shard_files] == stamps


def test_sharded_mteb_search_gives_mtebs_scores_and_resumes(
    minilm, small_data_dir: Path, tmp_path: Path
) -> None:
    from lens_embed.evaluation.encoders import PlainModelEncoder, minilm_meta
    from lens_embed.evaluation.offline import offline_tasks
    from lens_embed.evaluation.runner import ModelRun, evaluate_runs

    calls: list[int] = []

    class Counting(PlainModelEncoder):
        def encode(self, inputs, **kwargs: object) -> np.ndarray:
            calls.append(len(inputs.dataset))
            return super().encode(inputs, **kwargs)

    run = ModelRun("minilm", lambda: Counting(minilm, minilm_meta()))
    plain = evaluate_runs([run], offline_tasks(small_data_dir, names=["SliceSciFact"]), tmp_path / "plain")
    sharded = evaluate_runs(
        [run],
        offline_tasks(small_data_dir, names=["SliceSciFact"]),
        tmp_path / "sharded",
        shard_dir=tmp_path / "emb",
    )
    assert sharded[0].value == pytest.approx(plain[0].value, abs=1e-9)
    assert list((tmp_path / "emb").rglob("shard_*.npy"))
    calls.clear()
    evaluate_runs(
        [run],
        offline_tasks(small_data_dir, names=["SliceSciFact"]),
        tmp_path / "again",
        shard_dir=tmp_path / "emb",
    )
    assert calls == [24]  # only the queries: every corpus shard came from disk
