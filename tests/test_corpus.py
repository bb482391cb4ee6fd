"""Corpus encoding in shards: one process or several (torchrun, gloo) give the single-process result."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from lens_embed import LensSentenceTransformer, encode, load_lens_model
from lens_embed.serving.corpus import MERGED_NAME, encode_corpus
from lens_embed.serving.retrieval import DenseRetriever, corpus_key

TEXTS = [
    f"document {i}: the quick brown fox jumps over {i % 5} lazy dogs" + " again" * (i % 7) for i in range(11)
]


@pytest.fixture(scope="module")
def model(tiny_lens: Path) -> SentenceTransformer:
    return SentenceTransformer(str(tiny_lens), trust_remote_code=True)


def test_single_process_matches_plain_encoding_and_merges(model, tmp_path):
    merged = encode_corpus(model, TEXTS, tmp_path, shard_size=4, show_progress=False)
    assert merged == tmp_path / MERGED_NAME
    assert sorted(p.name for p in tmp_path.glob("shard_*.npy")) == [
        "shard_00000.npy",
        "shard_00001.npy",
        "shard_00002.npy",
    ]
    np.testing.assert_allclose(np.load(merged), encode(model, TEXTS), atol=1e-5, rtol=0)


def test_rerun_computes_only_missing_shards(model, tmp_path, monkeypatch):
    encode_corpus(model, TEXTS, tmp_path, shard_size=4, show_progress=False)
    expected = np.load(tmp_path / MERGED_NAME)
    (tmp_path / "shard_00001.npy").unlink()
    (tmp_path / MERGED_NAME).unlink()
    calls = []
    real = model.encode_document  # what every document embedding of the router reaches
    monkeypatch.setattr(
        model, "encode_document", lambda texts, **kw: calls.append(len(texts)) or real(texts, **kw)
    )
    encode_corpus(model, TEXTS, tmp_path, shard_size=4, show_progress=False)
    assert calls == [1, 4]  # the model-key probe, then shard 1's four texts only
    np.testing.assert_allclose(np.load(tmp_path / MERGED_NAME), expected, atol=1e-6, rtol=0)


def test_queries_and_documents_use_separate_folders(model, tmp_path):
    encode_corpus(model, TEXTS, tmp_path / "docs", shard_size=4, show_progress=False)
    with pytest.raises(ValueError, match="another corpus"):
        encode_corpus(model, TEXTS, tmp_path / "docs", query=True, shard_size=4, show_progress=False)
    queries = np.load(
        encode_corpus(
            model, TEXTS[:3], tmp_path / "q", query=True, instruction="Find it.", show_progress=False
        )
    )
    np.testing.assert_allclose(
        queries, encode(model, TEXTS[:3], query=True, instruction="Find it."), atol=1e-5
    )


def test_two_processes_with_torchrun_match_one_process(model, tiny_lens, tmp_path, torchrun):
    texts_file = tmp_path / "corpus.txt"
    texts_file.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "shards"
    result = torchrun(
        "encode-corpus", str(tiny_lens), str(texts_file), "--out", str(out), "--shard-size", "3"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote 11 embeddings" in result.stdout and "(2 processes)" in result.stdout
    assert len(list(out.glob("shard_*.npy"))) == 4
    np.testing.assert_allclose(np.load(out / MERGED_NAME), encode(model, TEXTS), atol=1e-5, rtol=0)


def test_dense_retriever_routes_through_the_one_router(model, tmp_path):
    retriever = DenseRetriever(model, tmp_path, instruction="Find it.", show_progress=False)
    np.testing.assert_allclose(
        retriever.encode_queries(TEXTS[:2]),
        encode(model, TEXTS[:2], query=True, instruction="Find it."),
        atol=1e-6,
    )
    np.testing.assert_allclose(retriever.encode_documents(TEXTS[:2]), encode(model, TEXTS[:2]), atol=1e-6)


def test_a_self_contained_folder_loaded_by_plain_sentence_transformers_counts_as_lens(model, tiny_lens):
    pooling = LensSentenceTransformer.lexicon(model)
    assert type(pooling).__module__.rsplit(".", 1)[-1] == "modeling_lens"
    assert LensSentenceTransformer.is_lens_model(model) and not isinstance(model, LensSentenceTransformer)
    # the class's methods answer for it, called on the class, as for the same folder loaded by lens-embed
    lens = load_lens_model(tiny_lens, device="cpu")
    embedding = encode(model, TEXTS[:1])[0]
    assert LensSentenceTransformer.top_dimensions(model, embedding, k=3) == lens.top_dimensions(
        embedding, k=3
    )
    assert LensSentenceTransformer.facts(model) == lens.facts()
    assert LensSentenceTransformer.settings(model) == lens.settings()


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_a_folder_of_another_model_is_refused_and_left_as_it_was(model, tmp_path):
    encode_corpus(model, TEXTS, tmp_path, shard_size=4, show_progress=False)
    before = _files(tmp_path)
    other = copy.deepcopy(model)
    other.max_seq_length = 6  # truncates the probe text: another model as far as its embeddings go
    with pytest.raises(ValueError, match=r"another corpus, model or shard size \(key '"):
        encode_corpus(other, TEXTS, tmp_path, shard_size=4, show_progress=False)
    assert _files(tmp_path) == before


def test_every_shard_folder_is_keyed_by_the_one_corpus_key(model, tmp_path):
    """encode-corpus and DenseRetriever (and mteb's sharded search) record the same key for the same
    model, side and texts: one key, so one folder means one thing."""
    encode_corpus(model, TEXTS, tmp_path / "corpus", shard_size=4, show_progress=False)
    DenseRetriever(model, tmp_path / "dense", shard_size=4, show_progress=False).corpus_embeddings(TEXTS)
    key = corpus_key(model, TEXTS)
    manifests = [tmp_path / "corpus" / "manifest.json", *(tmp_path / "dense").rglob("manifest.json")]
    assert [json.loads(path.read_text())["key"] for path in manifests] == [key, key]
    assert (tmp_path / "dense" / key / "manifest.json").is_file()
    assert (
        corpus_key(model, TEXTS, query=True)
        != key
        != corpus_key(model, TEXTS, query=True, instruction="Find it.")
    )


def test_a_folder_embedded_under_other_settings_is_refused(model, tmp_path):
    """Settings that change embeddings without changing the probe text's (here: what an over-long text
    loses) are part of the key."""
    encode_corpus(model, TEXTS, tmp_path, shard_size=4, show_progress=False)
    other = copy.deepcopy(model)
    other[0].truncation_keeps_eos = not model[0].truncation_keeps_eos
    with pytest.raises(ValueError, match="another corpus, model or shard size"):
        encode_corpus(other, TEXTS, tmp_path, shard_size=4, show_progress=False)


def test_another_shard_size_on_a_rerun_is_refused_naming_both_sizes(model, tmp_path):
    encode_corpus(model, TEXTS[:6], tmp_path, shard_size=4, show_progress=False)
    (tmp_path / MERGED_NAME).unlink()
    (tmp_path / "shard_00001.npy").unlink()  # an interrupted run, resumed with another size
    before = _files(tmp_path)
    with pytest.raises(ValueError, match="shard_size 4 there, 3 here"):
        encode_corpus(model, TEXTS[:6], tmp_path, shard_size=3, show_progress=False)
    assert _files(tmp_path) == before
    encode_corpus(
        model, TEXTS[:6], tmp_path, shard_size=4, show_progress=False
    )  # the size it was started with
    np.testing.assert_allclose(np.load(tmp_path / MERGED_NAME), encode(model, TEXTS[:6]), atol=1e-5, rtol=0)


def test_shards_without_a_manifest_are_never_taken_for_this_corpus(model, tmp_path):
    np.save(tmp_path / "shard_00000.npy", np.zeros((4, 16), dtype=np.float32))
    with pytest.raises(ValueError, match="no manifest.json"):
        encode_corpus(model, TEXTS, tmp_path, shard_size=4, show_progress=False)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["shard_00000.npy"]
    (tmp_path / "manifest.json").write_text('{"key": ')
    with pytest.raises(ValueError, match=r"manifest.json: not a readable shard manifest"):
        encode_corpus(model, TEXTS, tmp_path, shard_size=4, show_progress=False)
