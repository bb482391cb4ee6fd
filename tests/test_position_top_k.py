"""Sparse LENS's ``position_top_k`` as a saved setting of the pooling module: set when building, converting
or on a saved folder, it travels with the folder (plain sentence-transformers, the SparseEncoder folder, the
engine) and changes every key that results, shards and collections are filed under."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer, SparseEncoder

from lens_embed.commands import main
from lens_embed.evaluation.results import model_revision
from lens_embed.models.build import build_lens_model, set_position_top_k
from lens_embed.models.convert import convert_checkpoint
from lens_embed.models.loading import load_lens_model
from lens_embed.models.model import LensSentenceTransformer, encode
from lens_embed.models.sparse import write_sparse_encoder
from lens_embed.serving.collections import index_corpus, search_collection
from lens_embed.serving.engine import EdgeBackend
from lens_embed.serving.retrieval import corpus_key

K = 16  # the tiny LENS model's clusters
TEXTS = [
    "what is the reserve bank of australia",
    "a man is playing a guitar on the street while people watch",
    "Oilskin jackets are similar to rubberized waterproofs.",
]
POOLING_CONFIG = "1_LexiconPooling/config.json"


def both_sides(model) -> np.ndarray:
    return np.concatenate([encode(model, TEXTS), encode(model, TEXTS, query=True)])


def active_and_tokens(model, text: str, query: bool) -> tuple[int, int]:
    """A text's active clusters, and how many real tokens it reaches the pooling with (a bound on the
    positions it pools)."""
    seen = []
    hook = LensSentenceTransformer.lexicon(model).register_forward_pre_hook(
        lambda _, args: seen.append(int(args[0]["attention_mask"].sum()))
    )
    try:
        vector = encode(model, [text], query=query)[0]
    finally:
        hook.remove()
    return int((vector > 0).sum()), seen[0]


@pytest.fixture(scope="module")
def lens(tiny_lens: Path):
    return load_lens_model(tiny_lens, device="cpu")


def test_set_pooling_changes_the_embeddings_and_none_restores_the_folder_byte_for_byte(
    copy: Path, lens, capsys: pytest.CaptureFixture[str]
) -> None:
    original = (copy / POOLING_CONFIG).read_bytes()
    revision, settings = model_revision(copy), lens.settings()
    assert "position_top_k" not in json.loads(original)  # off: the config every earlier folder has
    assert main(["set-pooling", str(copy), "--position-top-k", "2"]) == 0
    assert "k = 2" in capsys.readouterr().out
    sparse = load_lens_model(copy, device="cpu")
    assert sparse.lexicon().position_top_k == 2
    assert json.loads((copy / POOLING_CONFIG).read_text())["position_top_k"] == 2
    assert model_revision(copy) != revision  # evaluation results are filed apart
    assert sparse.settings() == {**settings, "position_top_k": 2}
    assert corpus_key(sparse, TEXTS) != corpus_key(lens, TEXTS)  # and shard folders too
    vectors = both_sides(sparse)
    assert not np.allclose(vectors, both_sides(lens))
    lens.lexicon().position_top_k = 2  # the same setting on a loaded model embeds the same way
    try:
        assert np.array_equal(both_sides(lens), vectors)
    finally:
        lens.lexicon().position_top_k = None
    assert main(["set-pooling", str(copy), "--position-top-k", "none"]) == 0
    assert (copy / POOLING_CONFIG).read_bytes() == original and model_revision(copy) == revision
    assert np.array_equal(both_sides(load_lens_model(copy, device="cpu")), both_sides(lens))


def test_each_position_gives_at_most_k_clusters(copy: Path) -> None:
    set_position_top_k(copy, 1)
    model = load_lens_model(copy, device="cpu")
    for text in [*TEXTS, "bank"]:
        for query in (False, True):
            active, tokens = active_and_tokens(model, text, query)
            # k = 1: one cluster per pooled position at most (a decoder's document pools all but 2 tokens)
            assert 1 <= active <= (tokens if query else tokens - 2)


def test_plain_sentence_transformers_embeds_a_set_folder_as_lens_embed_does(copy: Path) -> None:
    set_position_top_k(copy, 3)
    plain = SentenceTransformer(str(copy), trust_remote_code=True, device="cpu")
    assert np.allclose(both_sides(plain), both_sides(load_lens_model(copy, device="cpu")), atol=1e-6)


def test_the_sparse_encoder_folder_carries_the_setting_and_keeps_it_apart(copy: Path, tmp_path: Path) -> None:
    set_position_top_k(copy, 2)
    folder = tmp_path / "sparse"
    write_sparse_encoder(copy, folder)
    sparse = SparseEncoder(str(folder), trust_remote_code=True, device="cpu")
    lens = load_lens_model(copy, device="cpu")
    for query in (False, True):
        got = (sparse.encode_query if query else sparse.encode_document)(TEXTS).to_dense()
        assert torch.allclose(got, torch.from_numpy(encode(lens, TEXTS, query=query)), atol=1e-6)
    set_position_top_k(copy, None)  # replaces the LENS folder's config, never writing through the link
    assert json.loads((folder / POOLING_CONFIG).read_text())["position_top_k"] == 2
    set_position_top_k(folder, 4)  # and the SparseEncoder folder takes the setting as well
    assert (
        LensSentenceTransformer.lexicon(SparseEncoder(str(folder), trust_remote_code=True)).position_top_k
        == 4
    )


def test_the_engine_indexes_and_searches_with_the_models_setting(copy: Path, lens, tmp_path: Path) -> None:
    set_position_top_k(copy, 2)
    model = load_lens_model(copy, device="cpu")
    documents = {f"d{i}": f"{text} number {i}" for i, text in enumerate(TEXTS * 4)}
    queries = {"q0": "the bank of australia", "q1": "a guitar in the street"}
    backend = EdgeBackend(tmp_path / "engine", "docs")
    try:
        index_corpus(model, documents, backend, vectors="sparse", show_progress=False)
        found = search_collection(model, queries, backend, top_k=3, show_progress=False)
        exact = encode(model, list(queries.values()), query=True) @ encode(model, list(documents.values())).T
        for row, hits in enumerate(found.values()):
            assert list(hits.values()) == pytest.approx(sorted(exact[row])[::-1][:3], abs=1e-5)
        with pytest.raises(ValueError, match="probe hash"):  # the same weights pooled otherwise
            search_collection(lens, queries, backend, top_k=3, show_progress=False)
    finally:
        backend.close()


def test_build_and_convert_save_the_setting(tiny_mistral: Path, released: Path, tmp_path: Path) -> None:
    assert (
        main(
            ["build", str(tiny_mistral), str(tmp_path / "built"), "--clusters", "16", "--position-top-k", "3"]
        )
        == 0
    )
    assert load_lens_model(tmp_path / "built", device="cpu").lexicon().position_top_k == 3
    convert_checkpoint(released, tmp_path / "converted", position_top_k=5)
    assert load_lens_model(tmp_path / "converted", device="cpu").lexicon().position_top_k == 5


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_a_bad_k_is_refused_before_anything_is_built_or_written(
    bad, copy: Path, tiny_mistral: Path, tmp_path: Path, lens
) -> None:
    before = (copy / POOLING_CONFIG).read_bytes()
    for call in (
        lambda: set_position_top_k(copy, bad),
        lambda: build_lens_model(tiny_mistral, 16, tmp_path / "never", position_top_k=bad),
        lambda: setattr(lens.lexicon(), "position_top_k", bad),
    ):
        with pytest.raises(ValueError, match="position_top_k must be a positive integer or None"):
            call()
    assert (copy / POOLING_CONFIG).read_bytes() == before and not (tmp_path / "never").exists()


def test_the_verb_refuses_what_is_not_a_lens_folder(
    tiny_mistral: Path, copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["set-pooling", str(tiny_mistral), "--position-top-k", "2"]) == 2
    assert "is not a LENS model folder" in capsys.readouterr().err
    assert main(["set-pooling", str(tmp_path / "absent"), "--position-top-k", "2"]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_code:
        main(["set-pooling", str(copy), "--position-top-k", "0"])
    assert exit_code.value.code == 2
