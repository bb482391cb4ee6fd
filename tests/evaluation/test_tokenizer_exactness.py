"""A converted checkpoint with the real Mistral tokenizer feeds the backbone exactly the authors' ids.

``shared/anchors/mistral_tokenizer/expected_ids.json`` holds, for both ``legacy`` variants of the
released tokenizer, the ids the authors' stack produced (transformers 4.43.1,
``tokenizer(text + "</s>")``): documents as they are, queries as ``<instruct>{I}\\n<query>{q}``.
"""

from __future__ import annotations

import json
from pathlib import Path

from lens_embed.base.prompts import INSTRUCT_TOKEN, QUERY_TOKEN
from lens_embed.models.model import encode


def split_query(text: str) -> tuple[str, str]:
    """``<instruct>{I}\\n<query>{q}`` -> (I, q)."""
    instruction, query = text.removeprefix(INSTRUCT_TOKEN).split(f"\n{QUERY_TOKEN}", 1)
    return instruction, query


def test_documents_and_queries_get_the_authors_ids(converted_mistral, anchors_dir: Path, recorded) -> None:
    variant, folder = converted_mistral
    expected = json.loads((anchors_dir / "mistral_tokenizer" / "expected_ids.json").read_text())
    model, recorder = recorded(folder)
    for text, ids in zip(expected["texts"], expected[variant], strict=True):
        if text.startswith(INSTRUCT_TOKEN):
            instruction, query = split_query(text)
            encode(model, [query], query=True, instruction=instruction)
        else:
            encode(model, [text])
        assert recorder.take() == [ids], (variant, text)


def test_the_same_ids_in_a_padded_batch(converted_mistral, anchors_dir: Path, recorded) -> None:
    variant, folder = converted_mistral
    expected = json.loads((anchors_dir / "mistral_tokenizer" / "expected_ids.json").read_text())
    documents = [
        (t, ids)
        for t, ids in zip(expected["texts"], expected[variant], strict=True)
        if not t.startswith(INSTRUCT_TOKEN)
    ]
    model, recorder = recorded(folder)
    encode(model, [t for t, _ in documents], batch_size=len(documents))
    assert sorted(recorder.take()) == sorted(ids for _, ids in documents)
