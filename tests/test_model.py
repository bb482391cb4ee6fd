"""A LENS model through sentence-transformers: encoding, prompts, save/load, hybrid, bad input."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from lens_embed import build_lens_model, encode, load_lens_model, query_prompt
from lens_embed.base.prompts import NAMED_INSTRUCTIONS

TEXTS = ["what is rba", "the quick brown fox jumps over the lazy dog", "fox", ""]


@pytest.fixture(scope="module")
def model(tiny_lens):
    return load_lens_model(tiny_lens)


def test_save_and_reload_give_identical_embeddings(model, tmp_path):
    model.save(str(tmp_path / "again"))
    reloaded = SentenceTransformer(str(tmp_path / "again"), trust_remote_code=True)
    for kwargs in ({"query": True}, {"query": False}):
        assert np.array_equal(encode(model, TEXTS, **kwargs), encode(reloaded, TEXTS, **kwargs))


def test_a_text_alone_equals_the_same_text_in_a_batch_of_longer_ones(model):
    alone = encode(model, ["fox"], query=True)
    batched = encode(
        model, ["the quick brown fox jumps over the lazy dog again and again", "fox"], query=True
    )
    assert np.abs(alone[0] - batched[1]).max() < 1e-5


def test_prompts_produce_the_lens_query_format(model):
    assert model.prompts["query"].startswith("<instruct>") and model.prompts["query"].endswith("\n<query>")
    assert model.prompts["document"] == ""
    named = model.encode_query(["what is rba"], prompt_name="web_search")
    explicit = model.encode_query(["what is rba"], prompt=query_prompt(NAMED_INSTRUCTIONS["web_search"]))
    assert np.array_equal(named, explicit)
    assert not np.allclose(named, model.encode_document(["what is rba"]))


def test_instruction_changes_the_context_but_is_not_pooled(model):
    a = encode(model, ["what is rba"], query=True, instruction="Find passages.")
    b = encode(model, ["what is rba"], query=True, instruction="Retrieve a totally different kind of thing.")
    assert not np.allclose(a, b)  # bidirectional context sees the instruction


def test_empty_string_gives_the_zero_vector_and_empty_list_an_empty_array(model):
    embeddings = encode(model, ["", "fox"])
    assert not np.isnan(embeddings).any()
    assert np.array_equal(embeddings[0], np.zeros(model.get_embedding_dimension()))
    assert encode(model, []).shape == (0, model.get_embedding_dimension())


@pytest.mark.parametrize("bad", [[None], ["ok", 3], [b"bytes"]])
def test_non_string_texts_are_rejected_by_position(model, bad):
    with pytest.raises(TypeError, match=f"index {len(bad) - 1}"):
        model.encode(bad)


@pytest.mark.parametrize("call", ["encode", "encode_query", "encode_document"])
def test_a_lone_surrogate_is_rejected_naming_the_text(model, call):
    texts = ["fine", "caf\u00e9 \U0001f600", "half a pair: \ud83d here"]
    embed = (lambda t: encode(model, t)) if call == "encode" else getattr(model, call)
    # encode() checks the list as given; inside sentence-transformers a batch is sorted by length
    index = 2 if call == "encode" else r"\d+"
    with pytest.raises(
        ValueError,
        match=rf"text at index {index} \('half a pair: \\ud83d here'\) holds a lone surrogate"
        r" U\+D83D at character 13",
    ):
        embed(texts)
    assert embed(texts[:2]).shape[0] == 2  # real non-ASCII text, astral characters included, embeds


def test_unknown_prompt_name_is_rejected(model):
    with pytest.raises(ValueError, match="not_a_prompt"):
        model.encode_query(["x"], prompt_name="not_a_prompt")


def test_a_single_string_is_not_mistaken_for_a_list(model):
    with pytest.raises(TypeError, match="list of strings"):
        encode(model, "what is rba")


def test_hybrid_concatenates_a_normalised_dense_vector(tiny_mistral, tmp_path):
    hybrid = build_lens_model(
        tiny_mistral, n_clusters=16, output_dir=tmp_path / "hybrid", dense_pooling="mean", dense_weight=0.5
    )
    assert hybrid.get_embedding_dimension() == 16 + 32
    embeddings = encode(hybrid, TEXTS[:3], query=True)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    lexicon_norm = np.linalg.norm(embeddings[:, :16], axis=1)
    dense_norm = np.linalg.norm(embeddings[:, 16:], axis=1)
    assert np.allclose(dense_norm / lexicon_norm, 0.5, atol=1e-4)
    reloaded = load_lens_model(tmp_path / "hybrid")
    assert np.array_equal(encode(reloaded, TEXTS[:3], query=True), embeddings)


def test_lexicon_only_is_the_default(model):
    assert model[1].dense_pooling is None and model.get_embedding_dimension() == 16


def test_head_is_a_frozen_buffer(model):
    assert "centroids" in dict(model[1].named_buffers())
    assert not any("centroids" in name for name, _ in model.named_parameters())


def test_missing_and_non_model_directories_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_lens_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a sentence-transformers or lens-embed model"):
        load_lens_model(tmp_path / "empty")


def test_building_into_a_non_empty_directory_needs_overwrite(tiny_mistral, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite"):
        build_lens_model(tiny_mistral, n_clusters=8, output_dir=tmp_path / "out")
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


def test_k_out_of_range_is_rejected_before_any_work(tiny_mistral):
    with pytest.raises(ValueError, match="1 < K < vocab size"):
        build_lens_model(tiny_mistral, n_clusters=100000)


def test_a_corrupt_or_mismatched_saved_head_is_a_clear_error(tiny_lens, tmp_path):
    import json
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_lens, broken)
    head = broken / "1_LexiconPooling" / "model.safetensors"
    head.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"1_LexiconPooling/model\.safetensors: corrupt safetensors file"):
        load_lens_model(broken)
    shutil.copy(tiny_lens / "1_LexiconPooling" / "model.safetensors", head)
    config_path = broken / "1_LexiconPooling" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "n_clusters": 99}))
    with pytest.raises(
        ValueError, match=r"1_LexiconPooling/model\.safetensors: centroids .* expected \(99, 32\)"
    ):
        load_lens_model(broken)


def test_build_takes_the_dtype_by_transformers_name(tiny_mistral):
    import torch

    model = build_lens_model(tiny_mistral, n_clusters=16, dtype="bfloat16")
    assert model[0].auto_model.dtype == torch.bfloat16
    assert model.lexicon().centroids.dtype == torch.float32  # the frozen head stays float32
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, float16"):
        build_lens_model(tiny_mistral, n_clusters=16, dtype="float64")


def test_two_builds_with_one_seed_are_the_same_model(tiny_mistral, tmp_path):
    first = build_lens_model(tiny_mistral, n_clusters=8, seed=3)
    second = build_lens_model(tiny_mistral, n_clusters=8, seed=3)
    assert np.array_equal(encode(first, TEXTS, query=True), encode(second, TEXTS, query=True))


def test_threads_sharing_one_model_encode_as_one_thread_does(model):
    jobs = [
        ([f"{text} {i}" for text in TEXTS * 10], i % 2 == 0, f"Instruction {i}." if i % 2 == 0 else None)
        for i in range(8)
    ]
    sequential = [
        encode(model, texts, query=query, instruction=instruction) for texts, query, instruction in jobs
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda job: encode(model, job[0], query=job[1], instruction=job[2]), jobs))
    for alone, together in zip(sequential, concurrent, strict=True):
        np.testing.assert_array_equal(together, alone)
