"""Reading LENS embeddings: every dimension is a cluster of vocabulary tokens.

Members of a cluster are listed in token-id order, which for BPE/WordPiece vocabularies puts
frequent tokens first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sentence_transformers import SentenceTransformer

from lens_embed.model import lexicon_pooling


@dataclass(frozen=True)
class Dimension:
    """One lexicon dimension of an embedding: its index, weight and member tokens."""

    index: int
    weight: float
    tokens: list[str]


def cluster_tokens(model: SentenceTransformer, cluster: int, limit: int = 8) -> list[str]:
    """Up to ``limit`` readable member tokens of a cluster."""
    pooling = lexicon_pooling(model)
    if not 0 <= cluster < pooling.n_clusters:
        raise IndexError(f"cluster {cluster} out of range [0, {pooling.n_clusters})")
    members = (pooling.token_clusters == cluster).nonzero().flatten().tolist()
    tokenizer = model[0].tokenizer
    names = []
    for token_id in members:
        text = tokenizer.convert_tokens_to_string([tokenizer.convert_ids_to_tokens(token_id)]).strip()
        if text and text not in names:
            names.append(text)
        if len(names) == limit:
            break
    return names


def top_dimensions(model: SentenceTransformer, embedding: np.ndarray, k: int = 10, tokens: int = 8) -> list[Dimension]:
    """The ``k`` heaviest lexicon dimensions of one embedding, named by their tokens."""
    pooling = lexicon_pooling(model)
    vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if vector.shape[0] != model.get_embedding_dimension():
        raise ValueError(f"embedding has {vector.shape[0]} dimensions, the model {model.get_embedding_dimension()}")
    lexicon = vector[: pooling.n_clusters]
    order = np.argsort(-lexicon)[:k]
    return [Dimension(int(i), float(lexicon[i]), cluster_tokens(model, int(i), tokens)) for i in order if lexicon[i] > 0]


def match_dimensions(
    model: SentenceTransformer, query: np.ndarray, document: np.ndarray, k: int = 10, tokens: int = 8
) -> list[Dimension]:
    """Why a document matched a query: the dimensions with the largest products q_i * d_i."""
    pooling = lexicon_pooling(model)
    q = np.asarray(query, dtype=np.float32).reshape(-1)[: pooling.n_clusters]
    d = np.asarray(document, dtype=np.float32).reshape(-1)[: pooling.n_clusters]
    product = q * d
    order = np.argsort(-product)[:k]
    return [Dimension(int(i), float(product[i]), cluster_tokens(model, int(i), tokens)) for i in order if product[i] > 0]
