"""Over-long inputs: converted released checkpoints reproduce the authors' evaluation truncation,
models built by lens-embed keep EOS (as their training does).

The authors' evaluation, transcribed: a tokenizer that adds BOS only, ``tokenizer(text + "</s>",
truncation=True, max_length=L)``; so an over-long text ends in a text token, without EOS.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoTokenizer

from lens_embed.base.prompts import query_prompt
from lens_embed.models.model import encode

L = 12
INSTRUCTION = "Retrieve semantically similar text."
# around the boundary: 1 to L + 6 words (a word is one or more tokens)
TEXTS = [" ".join(["word"] * n) for n in range(1, L + 7)] + [
    "tab\tseparated  text " * 5,
    " leading space " * 4,
]


def authors_ids(folder: Path, texts: list[str]) -> list[list[int]]:
    """Their input ids: BOS-only tokenizer, the string "</s>" appended, then truncation to L."""
    tokenizer = AutoTokenizer.from_pretrained(folder, add_bos_token=True, add_eos_token=False)
    return tokenizer([t + tokenizer.eos_token for t in texts], truncation=True, max_length=L)["input_ids"]


def test_converted_checkpoints_truncate_like_the_authors(converted_mistral, recorded) -> None:
    _, folder = converted_mistral
    assert json.loads((folder / "sentence_bert_config.json").read_text())["truncation_keeps_eos"] is False
    model, recorder = recorded(folder)
    model.max_seq_length = L
    encode(model, TEXTS, batch_size=len(TEXTS))  # one padded batch (sentence-transformers sorts it by length)
    assert sorted(recorder.take()) == sorted(authors_ids(folder, TEXTS))
    encode(model, TEXTS, query=True, instruction=INSTRUCTION, batch_size=len(TEXTS))
    assert sorted(recorder.take()) == sorted(
        authors_ids(folder, [query_prompt(INSTRUCTION) + t for t in TEXTS])
    )


def test_truncated_rows_embed_as_they_do_alone(converted_mistral, recorded) -> None:
    _, folder = converted_mistral
    model, _ = recorded(folder)
    model.max_seq_length = L
    batched = encode(model, TEXTS, batch_size=len(TEXTS))
    alone = encode(model, [TEXTS[-3]], batch_size=1)
    assert abs(batched[-3] - alone[0]).max() < 1e-5


def test_built_models_keep_eos_when_truncating(tiny_lens: Path, recorded) -> None:
    model, recorder = recorded(tiny_lens)
    model.max_seq_length = L
    tokenizer = model[0].tokenizer
    encode(model, TEXTS, batch_size=len(TEXTS))
    rows = recorder.take()
    expected = tokenizer(TEXTS, truncation=True, max_length=L)["input_ids"]  # EOS-adding tokenizer: EOS kept
    assert sorted(rows) == sorted(expected)
    assert all(row[-1] == tokenizer.eos_token_id for row in rows)
    assert max(len(row) for row in rows) == L
