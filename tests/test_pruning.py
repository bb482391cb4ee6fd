"""``max_active_dims``: each LENS vector keeps exactly its N largest lexicon weights (ties to the lower
index), a hybrid's dense part is kept whole, nothing is re-normalised; one function, used by
``lens_embed.encode``, ``lens-embed encode`` and the engine (see tests/test_engine.py for index and
search)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer, SparseEncoder

from lens_embed import LensSentenceTransformer, encode, load_lens_model
from lens_embed.commands import main
from lens_embed.models.pooling import keep_max_active_dims

SETTINGS_FILE = "config_sentence_transformers.json"
TEXTS = ["the quick brown fox jumps over the lazy dog", "what is the reserve bank of australia", "fox", ""]


def _top_n_by_hand(row: list[float], n: int) -> list[float]:
    """The row with all but its n largest magnitudes zeroed, equal magnitudes ranked by index."""
    order = sorted(range(len(row)), key=lambda i: (-abs(row[i]), i))[:n]
    return [value if i in order else 0.0 for i, value in enumerate(row)]


def test_pruning_keeps_exactly_the_n_largest_magnitudes_with_ties_to_the_lower_index():
    vectors = np.array(
        [
            [0.0, 0.5, -0.9, 0.5, 0.1, 0.5],  # a three-way tie at the cut
            [0.3, 0.3, 0.3, 0.3, 0.3, 0.3],  # all tied
            [0.0, 0.0, 0.2, 0.0, 0.0, 0.0],  # fewer active dimensions than N
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ],
        dtype=np.float32,
    )
    for n in (1, 2, 3, 5):
        pruned = keep_max_active_dims(vectors, n)
        assert pruned.tolist() == [_top_n_by_hand(row, n) for row in vectors.tolist()]
        assert (np.count_nonzero(pruned, axis=1) == np.minimum(n, np.count_nonzero(vectors, axis=1))).all()
    assert np.flatnonzero(keep_max_active_dims(vectors, 2)[0]).tolist() == [1, 2]
    assert keep_max_active_dims(vectors, 6).tolist() == vectors.tolist()  # N >= dimension: unchanged


def test_pruning_returns_a_copy_of_the_same_kind_and_never_renormalises():
    rng = np.random.default_rng(0)
    vectors = rng.random((5, 40)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    original = vectors.copy()
    pruned = keep_max_active_dims(vectors, 7)
    assert isinstance(pruned, np.ndarray) and pruned.dtype == np.float32 and np.array_equal(vectors, original)
    kept = pruned != 0
    assert np.array_equal(pruned[kept], vectors[kept])  # surviving weights untouched: norms now below 1
    assert (np.linalg.norm(pruned, axis=1) < 1).all()
    as_tensor = keep_max_active_dims(torch.from_numpy(vectors).double(), 7)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.float64
    assert np.array_equal(as_tensor.float().numpy(), pruned)
    assert keep_max_active_dims(vectors[::-1], 7).tolist() == pruned[::-1].tolist()  # any memory layout


def test_only_the_lexicon_part_of_a_hybrid_is_pruned():
    vectors = np.array([[0.1, 0.4, 0.2, 0.3, -0.05, 0.01, 0.7]], dtype=np.float32)  # K = 4, dense part of 3
    pruned = keep_max_active_dims(vectors, 2, lexicon_dims=4)
    expected = np.array([[0.0, 0.4, 0.0, 0.3, -0.05, 0.01, 0.7]], dtype=np.float32)
    assert np.array_equal(pruned, expected)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4"])
def test_a_bad_count_is_refused(bad):
    with pytest.raises(ValueError, match="max_active_dims must be a positive integer"):
        keep_max_active_dims(np.ones((2, 4), dtype=np.float32), bad)


def test_lexicon_dims_must_fit_the_embeddings():
    with pytest.raises(ValueError, match="does not fit"):
        keep_max_active_dims(np.ones((2, 4), dtype=np.float32), 2, lexicon_dims=5)


@pytest.mark.parametrize("query", [False, True])
def test_encode_prunes_every_lens_vector_to_its_top_n(tiny_lens: Path, query: bool):
    model = load_lens_model(tiny_lens, device="cpu")
    full = encode(model, TEXTS, query=query)
    pruned = encode(model, TEXTS, query=query, max_active_dims=3)
    assert pruned.tolist() == [_top_n_by_hand(row, 3) for row in full.tolist()]
    assert (np.count_nonzero(pruned, axis=1) == np.minimum(3, np.count_nonzero(full, axis=1))).all()
    assert np.count_nonzero(full[:3], axis=1).min() > 3  # the texts had more to prune
    as_tensor = encode(model, TEXTS, query=query, max_active_dims=3, convert_to_tensor=True)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.numpy().tolist() == pruned.tolist()
    with pytest.raises(ValueError, match="max_active_dims must be a positive integer"):
        encode(model, TEXTS, query=query, max_active_dims=0)


def test_encode_keeps_a_hybrids_dense_part_whole(tiny_hybrid: Path):
    model = load_lens_model(tiny_hybrid, device="cpu")
    full = encode(model, TEXTS, query=True)
    pruned = encode(model, TEXTS, query=True, max_active_dims=2)
    assert full.shape[1] == 16 + 32
    assert pruned[:, :16].tolist() == [_top_n_by_hand(row, 2) for row in full[:, :16].tolist()]
    assert np.array_equal(pruned[:, 16:], full[:, 16:])


def test_the_encode_command_prunes(tiny_lens: Path, tmp_path: Path):
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(text + "\n" for text in TEXTS[:3]), encoding="utf-8")
    out = tmp_path / "pruned.npy"
    assert (
        main(["encode", str(tiny_lens), str(texts), "--out", str(out), "--query", "--max-active-dims", "4"])
        == 0
    )
    model = load_lens_model(tiny_lens, device="cpu")
    assert np.array_equal(np.load(out), encode(model, TEXTS[:3], query=True, max_active_dims=4))
    assert (np.count_nonzero(np.load(out), axis=1) == 4).all()


def test_a_default_max_active_dims_is_saved_as_sparse_encoder_saves_it_and_read_back(
    tiny_lens: Path, tmp_path: Path
):
    model = load_lens_model(tiny_lens, device="cpu")
    full = encode(model, TEXTS)
    assert model.max_active_dims is None and "max_active_dims" not in json.loads(
        (tiny_lens / SETTINGS_FILE).read_text()
    )  # every folder saved before keeps all its weights
    model.max_active_dims = 3
    model.save(str(tmp_path / "pruned"))
    assert json.loads((tmp_path / "pruned" / SETTINGS_FILE).read_text())["max_active_dims"] == 3
    reloaded = load_lens_model(tmp_path / "pruned", device="cpu")
    assert reloaded.max_active_dims == 3 and reloaded.settings()["max_active_dims"] == 3
    assert encode(reloaded, TEXTS).tolist() == [_top_n_by_hand(row, 3) for row in full.tolist()]
    assert encode(reloaded, TEXTS, max_active_dims=5).tolist() == [
        _top_n_by_hand(row, 5) for row in full.tolist()
    ]
    assert np.array_equal(
        reloaded.encode_document(TEXTS, max_active_dims=5), encode(model, TEXTS, max_active_dims=5)
    )
    # SparseEncoder reads the same key from the same file, and a plain load takes the per-call option
    sparse = SparseEncoder(str(tmp_path / "pruned"), trust_remote_code=True, device="cpu")
    assert sparse.max_active_dims == 3
    plain = SentenceTransformer(str(tmp_path / "pruned"), trust_remote_code=True, device="cpu")
    assert np.array_equal(plain.encode_document(TEXTS, max_active_dims=3), encode(reloaded, TEXTS))
    with pytest.raises(ValueError, match="max_active_dims must be a positive integer"):
        LensSentenceTransformer(str(tmp_path / "pruned"), max_active_dims=0)
    settings = tmp_path / "pruned" / SETTINGS_FILE
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "max_active_dims": -1}))
    with pytest.raises(ValueError, match=f"{re.escape(str(settings))}: max_active_dims must be a positive"):
        load_lens_model(tmp_path / "pruned", device="cpu")


def test_a_model_without_a_lexicon_refuses_max_active_dims_in_its_encode(minilm_path: Path):
    model = load_lens_model(minilm_path, device="cpu")  # the dense MiniLM: the class, no LexiconPooling
    with pytest.raises(ValueError, match="this model has none"):
        model.encode(["fox"], max_active_dims=2)
    pruned = encode(model, TEXTS[:2], max_active_dims=2)  # the router prunes any model's whole vector
    assert (np.count_nonzero(pruned, axis=1) == 2).all()
