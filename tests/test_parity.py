"""Parity with the authors' procedure on a tiny checkpoint written in the released layout.

The reference below transcribes the authors' published inference code: a bidirectional
Mistral with its LM head replaced by the clustered ``lm_head.pth``, left padding, the string
"</s>" appended to every text (their tokenizer adds only BOS), the query-only and shifted
masks, full [B, L, K] logits, max of log(1 + relu), L2 normalisation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from transformers import MistralConfig, MistralForCausalLM

from lens_embed import query_prompt
from lens_embed.models.convert import convert_checkpoint
from tiny_models import RELEASED_K, authors_tokenizer

K = RELEASED_K
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query."
QUERIES = ["what is rba", "what is oilskin fabric made of and why is it waterproof", "fox"]
# Texts that carry LENS' special tokens: documents stay documents, a query's own <query> stays text.
TRICKY_DOCS = [
    "how to write a LENS query: <instruct>Find passages.\n<query>what is rba",
    "<query> at the start",
    "ends with <query>",
    "an <instruct> tag inside a document",
]
TRICKY_QUERIES = ["what is <query> in LENS", "<query>", "what is rba <instruct> and <query> more"]
DOCS = [
    "Since 2007, the RBA's outstanding reputation has been affected by the 'Securency' or NPA scandal.",
    "Today's oilskins (or oilies) typically come in two parts, jackets and trousers.",
    "dog",
    "a man is playing a guitar on the street while people watch the quick brown fox",
]


def reference_embeddings(directory: Path, texts: list[str], query: bool) -> np.ndarray:
    """The authors' procedure, written out plainly.

    One deliberate difference, named in the README: the authors pool a query from the last
    ``<query>`` token of the whole input; we pool from the prompt's ``<query>``, so a ``<query>``
    typed inside a query's text stays text. For every other input the two rules agree, and the
    reference pins that rule: the k-th ``<query>`` where k is the count in the prompt.
    """
    tokenizer = authors_tokenizer(eos=False)
    tokenizer.padding_side = "left"
    config = MistralConfig.from_pretrained(directory)
    config.vocab_size = len(tokenizer)
    config.is_causal = False
    config._attn_implementation = "eager"
    model = MistralForCausalLM(config)
    from safetensors.torch import load_file

    model.load_state_dict(load_file(directory / "model.safetensors"))
    model.lm_head = torch.load(directory / "lm_head.pth", weights_only=False)
    model.eval()
    if query:
        texts = [f"<instruct>{INSTRUCTION}\n<query>{text}" for text in texts]
    inputs = tokenizer(
        [t + "</s>" for t in texts],
        padding=True,
        truncation=True,
        max_length=512,
        return_tensors="pt",
        add_special_tokens=True,
    )
    with torch.no_grad():
        logits = model(**inputs).logits
    if query:
        mask = torch.zeros_like(inputs["input_ids"])
        query_id = tokenizer.convert_tokens_to_ids("<query>")
        prompt_markers = f"<instruct>{INSTRUCTION}\n<query>".count("<query>")
        for row, ids in enumerate(inputs["input_ids"]):
            start = (ids == query_id).nonzero()[prompt_markers - 1].item()
            mask[row, start:-2] = 1
    else:
        mask = inputs["attention_mask"].clone()
        mask[:, -2:] = 0
    pooled = torch.max(torch.log(1 + torch.relu(logits)) * mask.unsqueeze(-1), dim=1).values
    return F.normalize(pooled, p=2, dim=1).numpy()


@pytest.fixture(scope="module")
def converted(released: Path, tmp_path_factory: pytest.TempPathFactory) -> SentenceTransformer:
    out = tmp_path_factory.mktemp("converted") / "model"
    convert_checkpoint(released, out)
    return SentenceTransformer(str(out), trust_remote_code=True)


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_queries_match_the_authors_embeddings(released, converted, padding_side):
    converted[0].tokenizer.padding_side = padding_side
    ours = converted.encode_query(QUERIES, prompt=query_prompt(INSTRUCTION), batch_size=8)
    assert np.abs(ours - reference_embeddings(released, QUERIES, query=True)).max() <= 1e-5


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_documents_match_the_authors_embeddings(released, converted, padding_side):
    converted[0].tokenizer.padding_side = padding_side
    ours = converted.encode_document(DOCS, batch_size=8)
    assert np.abs(ours - reference_embeddings(released, DOCS, query=False)).max() <= 1e-5


def test_named_instruction_prompt_is_the_authors_query_format(released, converted):
    named = converted.encode_query(QUERIES[:1], prompt_name="web_search")
    assert np.abs(named - reference_embeddings(released, QUERIES[:1], query=True)).max() <= 1e-5


def test_converted_model_has_one_eos_and_the_checkpoint_vocabulary(converted):
    tokenizer = converted[0].tokenizer
    ids = tokenizer("what is rba")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert ids.count(tokenizer.eos_token_id) == 1
    assert converted[0].auto_model.config.vocab_size == len(tokenizer)
    assert converted[0].auto_model.config.is_causal is False
    assert converted.get_embedding_dimension() == K


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_documents_with_special_tokens_embed_as_the_authors_documents(released, converted, padding_side):
    converted[0].tokenizer.padding_side = padding_side
    ours = converted.encode_document(TRICKY_DOCS, batch_size=8)
    assert np.abs(ours - reference_embeddings(released, TRICKY_DOCS, query=False)).max() <= 1e-5
    plain = converted.encode(TRICKY_DOCS, batch_size=8)  # no task, no prompt: a document
    assert np.abs(plain - ours).max() <= 1e-6


def test_queries_with_query_tokens_in_their_text_pool_from_the_prompt(released, converted):
    ours = converted.encode_query(TRICKY_QUERIES, prompt=query_prompt(INSTRUCTION), batch_size=8)
    assert np.abs(ours - reference_embeddings(released, TRICKY_QUERIES, query=True)).max() <= 1e-5
    by_prompt = converted.encode(TRICKY_QUERIES, prompt=query_prompt(INSTRUCTION), batch_size=8)
    assert np.abs(by_prompt - ours).max() <= 1e-6
