"""LENS in sentence-transformers' sparse stack: a LENS model's SparseEncoder folder embeds exactly as the
LENS folder does, as sparse tensors of dimension K, prunes, reports its sparsity, names dimensions by their
clusters, runs through sentence-transformers' own Qdrant search, and shares the LENS folder's files without
ever writing into them."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from sentence_transformers import SentenceTransformer, SparseEncoder
from sentence_transformers.sparse_encoder.modules import SparseAutoEncoder

from lens_embed.commands import main
from lens_embed.models.card import Provenance, render_card
from lens_embed.models.loading import load_lens_model
from lens_embed.models.portable import MODELING_FILE, modeling_source
from lens_embed.models.sparse import cluster_names, write_sparse_encoder
from lens_embed.modules import CLUSTER_NAMES_FILE
from tiny_models import CORPUS

K = 16  # the tiny LENS model's clusters
TEXTS = [
    "what is the reserve bank of australia",
    "a man is playing a guitar on the street <query> while people watch",
    "Oilskin jackets are similar to rubberized waterproofs.",
]


@pytest.fixture(scope="module")
def sparse_folder(tiny_lens: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sparse") / "lens-sparse"
    write_sparse_encoder(tiny_lens, out)
    return out


@pytest.fixture(scope="module")
def dense(tiny_lens: Path) -> SentenceTransformer:
    return SentenceTransformer(str(tiny_lens), trust_remote_code=True, device="cpu")


@pytest.fixture(scope="module")
def sparse(sparse_folder: Path) -> SparseEncoder:
    return SparseEncoder(str(sparse_folder), trust_remote_code=True, device="cpu")


def sides(model: SentenceTransformer | SparseEncoder) -> dict[str, torch.Tensor]:
    """Every way a text reaches the model: default query prompt, a named and an explicit instruction,
    documents."""
    options = {"convert_to_tensor": True} if isinstance(model, SentenceTransformer) else {}
    return {
        "query": model.encode_query(TEXTS, **options),
        "sts": model.encode_query(TEXTS, prompt_name="sts", **options),
        "instructed": model.encode_query(TEXTS, prompt="<instruct>Find the claim.\n<query>", **options),
        "document": model.encode_document(TEXTS, **options),
    }


def sha256s(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_sparse_encoder_gives_exactly_the_lens_embeddings_as_sparse_tensors(
    dense: SentenceTransformer, sparse: SparseEncoder, sparse_folder: Path
) -> None:
    assert [type(module).__name__ for module in sparse] == ["LensSparseTransformer", "LexiconPooling"]
    assert all(type(module).__module__.startswith("transformers_modules.") for module in sparse)
    assert (sparse_folder / MODELING_FILE).read_text(encoding="utf-8") == modeling_source()
    assert not any(isinstance(module, SparseAutoEncoder) for module in sparse)
    assert sparse.get_embedding_dimension() == K and sparse.max_active_dims is None
    expected = sides(dense)
    for side, embeddings in sides(sparse).items():
        assert embeddings.layout == torch.sparse_coo, side
        assert tuple(embeddings.shape) == (len(TEXTS), K), side
        assert (embeddings.to_dense() - expected[side]).abs().max().item() <= 1e-6, side
    assert torch.allclose(
        sparse.similarity(sparse.encode_query(TEXTS), sparse.encode_document(TEXTS)),
        dense.similarity(expected["query"], expected["document"]),
        atol=1e-6,
    )


def test_sparse_encoder_on_the_lens_folder_itself_appends_a_random_autoencoder(tiny_lens: Path) -> None:
    """Why the SparseEncoder folder exists: sentence-transformers converts a SentenceTransformer folder
    by appending an untrained SparseAutoEncoder, which the folder's modules cannot prevent."""
    converted = SparseEncoder(str(tiny_lens), trust_remote_code=True, device="cpu")
    assert isinstance(converted[-1], SparseAutoEncoder)
    assert converted.get_embedding_dimension() == 4 * K


def test_max_active_dims_keeps_each_vectors_largest_weights(
    dense: SentenceTransformer, sparse: SparseEncoder, tiny_lens: Path, tmp_path: Path
) -> None:
    full = dense.encode_document(TEXTS, convert_to_tensor=True)
    pruned = sparse.encode_document(TEXTS, max_active_dims=4).to_dense()
    for row, kept in zip(full, pruned, strict=True):
        assert int((kept != 0).sum()) == 4
        assert torch.equal(kept[kept != 0].sort().values, row.topk(4).values.sort().values)
    folder = write_sparse_encoder(tiny_lens, tmp_path / "pruned", max_active_dims=5)
    saved = SparseEncoder(str(folder), trust_remote_code=True, device="cpu")
    assert saved.max_active_dims == 5
    assert (saved.encode_document(TEXTS).to_dense() != 0).sum(dim=1).tolist() == [5] * len(TEXTS)
    assert (saved.encode_document(TEXTS, max_active_dims=2).to_dense() != 0).sum(dim=1).tolist() == [2] * 3


def test_sparsity_reports_the_active_dimensions(dense: SentenceTransformer, sparse: SparseEncoder) -> None:
    active = (dense.encode_document(TEXTS, convert_to_tensor=True) != 0).sum(dim=1).float().mean().item()
    assert sparse.sparsity(sparse.encode_document(TEXTS)) == pytest.approx(
        {"active_dims": active, "sparsity_ratio": 1 - active / K}
    )
    assert sparse.sparsity(sparse.encode_document(TEXTS, max_active_dims=4)) == pytest.approx(
        {"active_dims": 4.0, "sparsity_ratio": 0.75}
    )


def test_decode_names_each_dimension_by_its_clusters_tokens(
    dense: SentenceTransformer, sparse: SparseEncoder, tiny_lens: Path
) -> None:
    lens = load_lens_model(tiny_lens)
    names = cluster_names(lens)
    expected = dense.encode_query(TEXTS, convert_to_tensor=True)[0]
    decoded = sparse.decode(sparse.encode_query(TEXTS)[0])
    assert [weight for _, weight in decoded] == sorted(expected[expected != 0].tolist(), reverse=True)
    for name, weight in decoded:
        index = names.index(name)
        assert weight == expected[index].item()
        assert name.split("#")[0] == "|".join(lens.cluster_tokens(index, 4))
    vocabulary = dense.tokenizer.convert_ids_to_tokens(list(range(K)))
    assert {name for name, _ in decoded}.isdisjoint(vocabulary)  # not vocabulary ids
    top = sparse.decode(sparse.encode_query(TEXTS), top_k=3)
    assert [len(row) for row in top] == [3] * len(TEXTS)
    # the first module still tokenizes as the LENS model does
    assert (
        sparse.tokenizer("a quick brown fox")["input_ids"]
        == dense.tokenizer("a quick brown fox")["input_ids"]
    )


def test_cluster_names_are_unique_and_name_clusters_without_tokens(tiny_lens: Path) -> None:
    lens = load_lens_model(tiny_lens)
    names = cluster_names(lens)
    assert len(names) == K and len(set(names)) == K
    assert [name.split("#")[0] for name in cluster_names(lens, tokens=1)] == [
        lens.cluster_tokens(index, 1)[0] for index in range(K)
    ]
    clusters = lens.lexicon().token_clusters
    clusters[clusters == 0] = 1  # cluster 0 loses every member
    assert cluster_names(lens)[0] == "#0"
    with pytest.raises(ValueError, match="tokens per cluster name must be a positive integer"):
        cluster_names(lens, tokens=0)


def test_the_tokenizer_view_passes_settings_through(dense: SentenceTransformer, sparse_folder: Path) -> None:
    sparse = SparseEncoder(str(sparse_folder), trust_remote_code=True, device="cpu")
    long_text = [" ".join(CORPUS[:8])]
    sparse.max_seq_length = 12  # set on the wrapped tokenizer, as for the LENS folder
    original = dense.max_seq_length
    dense.max_seq_length = 12
    try:
        expected = dense.encode_document(long_text, convert_to_tensor=True)
    finally:
        dense.max_seq_length = original
    assert sparse.max_seq_length == 12
    assert torch.equal(sparse.encode_document(long_text).to_dense(), expected)
    names = json.loads((sparse_folder / CLUSTER_NAMES_FILE).read_text(encoding="utf-8"))
    assert sparse.tokenizer.convert_ids_to_tokens(np.int64(2)) == names[2]
    with pytest.raises(IndexError, match=f"dimension {K} is not a cluster of this model"):
        sparse.tokenizer.convert_ids_to_tokens([K])


def test_the_model_survives_pickling_as_multi_process_pools_send_it(sparse: SparseEncoder) -> None:
    copied = pickle.loads(pickle.dumps(sparse))
    assert repr(copied.tokenizer) == repr(sparse.tokenizer)
    view = pickle.loads(pickle.dumps(sparse.tokenizer))  # the view itself, too
    assert view.convert_ids_to_tokens(list(range(K))) == sparse.tokenizer.convert_ids_to_tokens(
        list(range(K))
    )
    embedding = sparse.encode_query(TEXTS)[0]
    assert copied.decode(embedding) == sparse.decode(embedding)
    assert torch.equal(copied.encode_document(TEXTS).to_dense(), sparse.encode_document(TEXTS).to_dense())


def test_the_card_of_a_hub_model_loads_its_sparse_branch(tiny_lens: Path) -> None:
    facts = load_lens_model(tiny_lens).facts()
    card = render_card(facts, Provenance(model_id="org/lens-tiny"), sparse=True)
    assert 'SparseEncoder("org/lens-tiny", revision="sparse", trust_remote_code=True)' in card.text
    assert card.data.pipeline_tag == "feature-extraction" and "sparse-encoder" in card.data.tags
    plain = render_card(facts, Provenance(model_id="org/lens-tiny"))
    assert "SparseEncoder" not in plain.text and "sparse-encoder" not in plain.data.tags


@pytest.mark.parametrize("engine", ["memory", "local folder"])
def test_sentence_transformers_qdrant_search_runs_on_lens_sparse_vectors(
    engine: str, sparse: SparseEncoder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import qdrant_client
    from sentence_transformers.sparse_encoder.search_engines import semantic_search_qdrant

    engine_client = qdrant_client.QdrantClient

    def in_process(url: str | None = None, **kwargs: object) -> qdrant_client.QdrantClient:
        # semantic_search_qdrant builds its collection at a server URL; the same calls go to the engine here
        assert url == "http://localhost:6333" and not kwargs
        if engine == "memory":
            return engine_client(":memory:")
        return engine_client(path=str(tmp_path / "qdrant"))

    monkeypatch.setattr(qdrant_client, "QdrantClient", in_process)
    documents = list(dict.fromkeys(CORPUS)) + TEXTS
    corpus = sparse.encode_document(documents, max_active_dims=6)
    queries = sparse.encode_query(TEXTS[:2] + ["the lazy dog"])
    results, _, index = semantic_search_qdrant(queries, corpus_embeddings=corpus, top_k=5, output_index=True)
    exact = queries.to_dense() @ corpus.to_dense().T
    for scores, hits in zip(exact, results, strict=True):
        assert [hit["score"] for hit in hits] == pytest.approx(scores.topk(5).values.tolist(), abs=1e-5)
        for hit in hits:
            assert hit["score"] == pytest.approx(scores[hit["corpus_id"]].item(), abs=1e-5)
    again, _ = semantic_search_qdrant(queries, corpus_index=index, top_k=5)  # the index is reusable
    assert [[hit["corpus_id"] for hit in hits] for hits in again] == [
        [hit["corpus_id"] for hit in hits] for hits in results
    ]
    index[0].close()


def test_the_folder_shares_the_lens_files_and_carries_its_own(tiny_lens: Path, sparse_folder: Path) -> None:
    for shared in (
        "model.safetensors",
        "tokenizer.json",
        "config.json",
        "1_LexiconPooling/model.safetensors",
    ):
        assert os.path.samefile(tiny_lens / shared, sparse_folder / shared), shared
    for own in ("modules.json", "config_sentence_transformers.json", "README.md", MODELING_FILE):
        assert not os.path.samefile(tiny_lens / own, sparse_folder / own), own
    settings = json.loads((sparse_folder / "config_sentence_transformers.json").read_text())
    lens_settings = json.loads((tiny_lens / "config_sentence_transformers.json").read_text())
    assert settings == {**lens_settings, "model_type": "SparseEncoder"}
    types = [entry["type"] for entry in json.loads((sparse_folder / "modules.json").read_text())]
    assert types == ["modeling_lens.LensSparseTransformer", "modeling_lens.LexiconPooling"]
    names = json.loads((sparse_folder / CLUSTER_NAMES_FILE).read_text(encoding="utf-8"))
    assert names == cluster_names(load_lens_model(tiny_lens))
    card = ModelCard.load(sparse_folder / "README.md")
    assert "sparse-encoder" in card.data.tags and card.data.library_name == "sentence-transformers"
    assert 'SparseEncoder("path/to/this/folder", trust_remote_code=True)' in card.text


@pytest.mark.parametrize("saved", ["the SparseEncoder", "the LENS model"])
def test_saving_either_model_in_place_never_writes_into_the_other(
    saved: str, tiny_lens: Path, tmp_path: Path
) -> None:
    lens_folder = Path(shutil.copytree(tiny_lens, tmp_path / "lens"))
    sparse_folder = write_sparse_encoder(lens_folder, tmp_path / "sparse")
    other = lens_folder if saved == "the SparseEncoder" else sparse_folder
    before = sha256s(other)
    model = (
        SparseEncoder(str(sparse_folder), trust_remote_code=True, device="cpu")
        if saved == "the SparseEncoder"
        else load_lens_model(lens_folder, device="cpu")
    )
    with torch.no_grad():  # a changed model (backbone, head, settings), saved over its own folder
        model[0].auto_model.embed_tokens.weight.add_(1.0)
        model[1].centroids.add_(1.0)
    model.max_seq_length = 7
    model.save(str(sparse_folder if saved == "the SparseEncoder" else lens_folder))
    assert sha256s(other) == before
    mine = (sparse_folder if saved == "the SparseEncoder" else lens_folder) / "model.safetensors"
    assert os.stat(mine).st_nlink == 1 and not os.path.samefile(mine, other / "model.safetensors")


def test_lens_embed_refuses_to_load_the_sparse_folder_by_name(sparse_folder: Path, copy: Path) -> None:
    with pytest.raises(
        ValueError, match=r"model_type 'SparseEncoder'.*the SparseEncoder folder of a LENS model"
    ):
        load_lens_model(sparse_folder)
    settings = json.loads((copy / "config_sentence_transformers.json").read_text())
    (copy / "config_sentence_transformers.json").write_text(
        json.dumps({**settings, "model_type": "CrossEncoder"})
    )
    with pytest.raises(ValueError, match="config_sentence_transformers.json: model_type 'CrossEncoder'"):
        load_lens_model(copy)


def test_a_folder_of_an_earlier_lens_embed_gets_a_sparse_encoder_folder(
    tiny_lens: Path, dense: SentenceTransformer, tmp_path: Path
) -> None:
    old = Path(shutil.copytree(tiny_lens, tmp_path / "old"))
    (old / MODELING_FILE).unlink()
    entries = json.loads((old / "modules.json").read_text())
    for entry in entries:
        entry["type"] = entry["type"].replace("modeling_lens.", "lens_embed.modules.")
    (old / "modules.json").write_text(json.dumps(entries))
    folder = write_sparse_encoder(old, tmp_path / "sparse")
    sparse = SparseEncoder(str(folder), trust_remote_code=True, device="cpu")
    expected = dense.encode_query(TEXTS, convert_to_tensor=True)
    assert (sparse.encode_query(TEXTS).to_dense() - expected).abs().max().item() <= 1e-6


def test_a_damaged_cluster_names_file_is_named(sparse_folder: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(sparse_folder, tmp_path / "damaged"))
    (folder / CLUSTER_NAMES_FILE).write_text('["a", "b"', encoding="utf-8")
    with pytest.raises(ValueError, match=f"{CLUSTER_NAMES_FILE}: not valid JSON"):
        SparseEncoder(str(folder), trust_remote_code=True, device="cpu")
    (folder / CLUSTER_NAMES_FILE).unlink()
    with pytest.raises(ValueError, match=f"{CLUSTER_NAMES_FILE}: missing"):
        SparseEncoder(str(folder), trust_remote_code=True, device="cpu")


def test_what_cannot_become_a_sparse_encoder_folder_is_refused(
    tiny_lens: Path, tiny_hybrid: Path, minilm_path: Path, sparse_folder: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="is a hybrid LENS model"):
        write_sparse_encoder(tiny_hybrid, tmp_path / "hybrid")
    with pytest.raises(ValueError, match="not a LENS model"):
        write_sparse_encoder(minilm_path, tmp_path / "minilm")
    with pytest.raises(FileExistsError, match="is not empty; pass overwrite=True"):
        write_sparse_encoder(tiny_lens, sparse_folder)
    with pytest.raises(ValueError, match="overlaps"):
        write_sparse_encoder(tiny_lens, tiny_lens / "sparse")
    with pytest.raises(ValueError, match="max_active_dims must be a positive integer"):
        write_sparse_encoder(tiny_lens, tmp_path / "zero", max_active_dims=0)
    assert not any(tmp_path.iterdir())  # nothing was written


def test_the_command_writes_the_folder_and_reports_errors(
    tiny_lens: Path, tiny_hybrid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sparse"
    assert main(["sparse-encoder", str(tiny_lens), str(out), "--max-active-dims", "3"]) == 0
    assert str(out) in capsys.readouterr().out
    assert json.loads((out / "config_sentence_transformers.json").read_text())["max_active_dims"] == 3
    assert main(["sparse-encoder", str(tiny_lens), str(out)]) == 2
    assert "lens-embed sparse-encoder: error: output directory" in capsys.readouterr().err
    assert main(["sparse-encoder", str(tiny_lens), str(out), "--overwrite", "--cluster-tokens", "1"]) == 0
    names = json.loads((out / CLUSTER_NAMES_FILE).read_text(encoding="utf-8"))
    assert all("|" not in name for name in names)
    assert main(["sparse-encoder", str(tiny_hybrid), str(tmp_path / "hybrid")]) == 2
    assert "lens-embed sparse-encoder: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sparse-encoder", str(tiny_lens), str(tmp_path / "x"), "--max-active-dims", "0"])


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask-022", "umask-027"])
def test_saved_lens_and_sparse_folders_give_their_weights_the_usual_mode(
    tiny_lens: Path, sparse: SparseEncoder, tmp_path: Path, umask: int
) -> None:
    previous = os.umask(umask)
    try:
        load_lens_model(tiny_lens, device="cpu").save(str(tmp_path / "lens"))
        sparse.save(str(tmp_path / "sparse"))
    finally:
        os.umask(previous)
    for folder in ("lens", "sparse"):  # safetensors alone would write them 0600
        weights = sorted((tmp_path / folder).rglob("*.safetensors"))
        assert [path.relative_to(tmp_path / folder).as_posix() for path in weights] == [
            "1_LexiconPooling/model.safetensors",
            "model.safetensors",
        ]
        assert {path.stat().st_mode & 0o777 for path in weights} == {0o666 & ~umask}, folder
