"""The side of a text (query or document) comes from the call, and padding never changes an embedding."""

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from lens_embed import build_lens_model, encode, load_lens_model, query_prompt
from lens_embed.models import batching
from lens_embed.models.model import side_prompt
from lens_embed.modules import QUERY_MARKER

INSTRUCTION = "Find passages."
QUERIES = ["what is rba", "what is <query> here", "fox"]
DOCUMENTS = ["<instruct>Find passages.\n<query>what is rba", "a plain document", "fox <query>"]
LONG = "the quick brown fox jumps over the lazy dog again and again while people watch the guitar"


@pytest.fixture(scope="module")
def model(tiny_lens):
    return load_lens_model(tiny_lens)


@pytest.fixture(scope="module")
def minilm_lens(minilm_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm-lens")
    build_lens_model(minilm_path, n_clusters=16, output_dir=out, kmeans_iterations=2)
    return load_lens_model(out)


def test_a_document_holding_lens_tokens_is_embedded_as_a_document(model):
    as_documents = model.encode_document(DOCUMENTS)
    assert np.array_equal(model.encode(DOCUMENTS), as_documents)  # no task, no query prompt: documents
    assert np.array_equal(encode(model, DOCUMENTS), as_documents)
    inline_query = model.encode(DOCUMENTS[:1], task="query")  # the same string, called as a query
    assert np.abs(inline_query - as_documents[:1]).max() > 1e-3


def test_a_query_prompt_without_a_task_means_query(model):
    by_prompt = model.encode(QUERIES, prompt=query_prompt(INSTRUCTION))
    assert np.array_equal(by_prompt, model.encode_query(QUERIES, prompt=query_prompt(INSTRUCTION)))
    assert np.array_equal(by_prompt, encode(model, QUERIES, query=True, instruction=INSTRUCTION))


def test_an_instruction_written_into_the_text_of_a_query_equals_the_prompt(model):
    inline = model.encode([query_prompt(INSTRUCTION) + text for text in QUERIES], task="query")
    assert np.abs(inline - model.encode_query(QUERIES, prompt=query_prompt(INSTRUCTION))).max() <= 1e-6


def test_the_call_wins_over_the_prompt(model):
    as_document = model.encode_document(QUERIES[:1], prompt=query_prompt(INSTRUCTION))
    as_query = model.encode_query(QUERIES[:1], prompt=query_prompt(INSTRUCTION))
    assert np.abs(as_document - as_query).max() > 1e-3


def test_each_row_carries_its_side(model):
    features = model.preprocess(QUERIES, prompt=query_prompt(INSTRUCTION), task="query")
    assert features[QUERY_MARKER].tolist() == [1, 1, 1]
    assert model.preprocess(QUERIES, task="document")[QUERY_MARKER].tolist() == [0, 0, 0]


def test_bad_tasks_and_queries_without_a_query_token_are_clear_errors(model):
    with pytest.raises(ValueError, match="task must be one of"):
        model.encode(QUERIES, task="passage")
    with pytest.raises(ValueError, match="no <query> token"):
        model.encode_query(QUERIES, prompt="")


def test_the_side_survives_save_load_and_a_multi_process_pool(model, tmp_path):
    expected = model.encode_query(QUERIES), model.encode_document(DOCUMENTS)
    model.save(str(tmp_path / "again"))
    reloaded = SentenceTransformer(str(tmp_path / "again"), trust_remote_code=True)
    assert np.array_equal(reloaded.encode_query(QUERIES), expected[0])
    assert np.array_equal(reloaded.encode_document(DOCUMENTS), expected[1])
    pool = model.start_multi_process_pool(["cpu"])
    try:
        queries = model.encode_query(QUERIES, pool=pool, chunk_size=1)
        documents = model.encode_document(DOCUMENTS, pool=pool, chunk_size=1)
    finally:
        model.stop_multi_process_pool(pool)
    assert np.abs(queries - expected[0]).max() <= 1e-6
    assert np.abs(documents - expected[1]).max() <= 1e-6


def test_the_side_prompt_is_the_prompt_the_router_embeds_with(model):
    assert side_prompt(model, query=True) == model.prompts["query"]
    assert side_prompt(model, query=False) == model.prompts["document"] == ""
    assert side_prompt(model, query=True, instruction=INSTRUCTION) == query_prompt(INSTRUCTION)
    with pytest.raises(ValueError, match="queries only"):
        side_prompt(model, query=False, instruction=INSTRUCTION)
    for query, instruction in ((True, None), (True, INSTRUCTION), (False, None)):
        prompt = side_prompt(model, query=query, instruction=instruction)
        explicit = model.encode(QUERIES, prompt=prompt, task="query" if query else "document")
        assert np.array_equal(explicit, encode(model, QUERIES, query=query, instruction=instruction))


def test_a_plain_models_side_prompts_are_the_ones_sentence_transformers_picks(minilm_path):
    plain = SentenceTransformer(str(minilm_path), device="cpu")
    plain.prompts = {"passage": "passage: ", "search": "search: "}  # no "query" or "document" prompt
    plain.default_prompt_name = "search"
    assert (
        side_prompt(plain, query=False) == "passage: "
    )  # encode_document's order: document, passage, corpus
    assert side_prompt(plain, query=True) == "search: "  # no "query" prompt: the default prompt name
    assert np.array_equal(encode(plain, ["fox"]), plain.encode(["fox"], prompt="passage: "))
    assert np.array_equal(encode(plain, ["fox"], query=True), plain.encode(["fox"], prompt="search: "))


def test_token_budget_batches_count_the_prompt_of_the_side(minilm_path, monkeypatch):
    prompt = "a document prompt long enough to cost more tokens than the short texts themselves: "
    plain = SentenceTransformer(str(minilm_path), device="cpu", prompts={"document": prompt})
    texts = ["fox", "dog", "cat", "car"]
    with_prompt = batching.token_lengths(plain, texts, prompt)
    assert 4 * max(batching.token_lengths(plain, texts)) <= 2 * max(
        with_prompt
    )  # one batch if the prompt were left out
    sizes = []
    real = batching.encode
    monkeypatch.setattr(batching, "encode", lambda m, t, **kw: sizes.append(len(t)) or real(m, t, **kw))
    embeddings = batching.encode_bucketed(plain, texts, max_tokens=2 * max(with_prompt))
    assert sizes == [2, 2]
    np.testing.assert_allclose(embeddings, encode(plain, texts), atol=1e-6, rtol=0)


def test_the_router_takes_no_prompt_of_its_own(model):
    for option in ("prompt", "prompt_name"):
        with pytest.raises(TypeError, match="query= and instruction= decide the prompt"):
            encode(model, QUERIES, query=True, **{option: "sts"})


def padding_spread(model: SentenceTransformer, padding_side: str) -> float:
    """Largest difference between texts embedded alone and inside a batch padded to a longer text."""
    model.tokenizer.padding_side = padding_side
    texts = ["fox", "what is rba"]
    worst = 0.0
    for kwargs in ({"task": "document"}, {"task": "query", "prompt": query_prompt(INSTRUCTION)}):
        alone = np.stack([model.encode([text], **kwargs)[0] for text in texts])
        batched = model.encode([LONG, *texts], batch_size=3, **kwargs)[1:]
        worst = max(worst, float(np.abs(alone - batched).max()))
    return worst


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_decoder_embeddings_do_not_depend_on_padding(model, padding_side):
    assert padding_spread(model, padding_side) <= 1e-5


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_encoder_with_absolute_positions_does_not_depend_on_padding(minilm_lens, padding_side):
    assert padding_spread(minilm_lens, padding_side) <= 1e-5
