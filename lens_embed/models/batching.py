"""Length-bucketed batching: batches sized by a token budget instead of a fixed text count.

sentence-transformers' ``encode`` already sorts texts by length, so each fixed-size batch holds
texts of similar length; what it cannot do is put 256 short queries in one batch and 16 long
documents in another. On a GPU that leaves short-text batches too small to fill the device.
Here texts are grouped longest first so that every batch's padded size (texts x longest
tokens) stays within ``max_tokens``; each group then goes through the one router
(:func:`lens_embed.models.model.encode`), so queries and documents are embedded exactly as usual.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sentence_transformers import SentenceTransformer

from lens_embed.models.model import encode, side_prompt


def token_budget_batches(lengths: Sequence[int], max_tokens: int, max_batch_size: int) -> list[list[int]]:
    """Indices grouped longest first; each group's ``len(group) * longest`` is at most ``max_tokens``.

    Args:
        lengths: token count of every text.
        max_tokens: padded tokens allowed per batch (a text longer than this gets a batch of its own).
        max_batch_size: most texts per batch, however short.
    """
    if max_tokens <= 0 or max_batch_size <= 0:
        raise ValueError(
            f"max_tokens and max_batch_size must be positive, got {max_tokens}, {max_batch_size}"
        )
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        if batches:
            current = batches[-1]
            longest = lengths[current[0]]  # sorted: the first text is the longest
            if len(current) < max_batch_size and (len(current) + 1) * longest <= max_tokens:
                current.append(index)
                continue
        batches.append([index])
    return batches


def token_lengths(model: SentenceTransformer, texts: Sequence[str], prompt: str = "") -> list[int]:
    """Tokens per text as the model will see them (prompt and special tokens included, truncated)."""
    encoded = model.tokenizer(
        [prompt + text for text in texts],
        add_special_tokens=True,
        truncation=True,
        max_length=model.max_seq_length,
    )
    return [len(ids) for ids in encoded["input_ids"]]


def encode_bucketed(
    model: SentenceTransformer,
    texts: Sequence[str],
    *,
    query: bool = False,
    instruction: str | None = None,
    max_tokens: int = 16384,
    max_batch_size: int = 512,
) -> np.ndarray:
    """Embed texts through :func:`lens_embed.models.model.encode` in token-budget batches; rows in input
    order.

    Args:
        model: a LENS (or any sentence-transformers) model.
        texts: the texts to embed.
        query: embed as instructed queries (else documents).
        instruction: the query instruction (default: the model's ``query`` prompt).
        max_tokens: padded tokens per batch; raise it until memory is nearly full on a GPU.
        max_batch_size: most texts per batch.
    """
    texts = list(texts)
    prompt = side_prompt(model, query=query, instruction=instruction) or ""
    batches = token_budget_batches(token_lengths(model, texts, prompt), max_tokens, max_batch_size)
    out: np.ndarray | None = None
    for batch in batches:
        vectors = encode(
            model,
            [texts[i] for i in batch],
            query=query,
            instruction=instruction,
            batch_size=len(batch),
            show_progress_bar=False,
        )
        if out is None:
            out = np.empty((len(texts), vectors.shape[1]), dtype=vectors.dtype)
        out[batch] = vectors
    if out is None:
        return encode(model, texts, query=query, instruction=instruction)
    return out
