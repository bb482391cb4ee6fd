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


def check_top(model: SentenceTransformer, k: int) -> None:
    """Refuse a number of dimensions to show that is not in ``1..K``.

    Args:
        model: a LENS model.
        k: how many dimensions were asked for.
    """
    n_clusters = lexicon_pooling(model).n_clusters
    if isinstance(k, bool) or not isinstance(k, int) or not 0 < k <= n_clusters:
        raise ValueError(
            f"the number of dimensions to show must be an integer in 1..{n_clusters} (K), got {k!r}"
        )


def cluster_tokens(model: SentenceTransformer, cluster: int, limit: int = 8) -> list[str]:
    """Up to ``limit`` readable member tokens of a cluster.

    Args:
        model: a LENS model.
        cluster: the dimension (cluster index, ``0 <= cluster < K``).
        limit: the most tokens to return.
    """
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


def lexicon_part(model: SentenceTransformer, embedding: np.ndarray) -> np.ndarray:
    """The K lexicon weights of one embedding (a hybrid's dense part dropped), checked against the model."""
    vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if vector.shape[0] != model.get_embedding_dimension():
        raise ValueError(
            f"embedding has {vector.shape[0]} dimensions, the model {model.get_embedding_dimension()}"
        )
    return vector[: lexicon_pooling(model).n_clusters]


def heaviest(model: SentenceTransformer, weights: np.ndarray, k: int, tokens: int) -> list[Dimension]:
    """The ``k`` largest positive entries of ``weights``, named by their clusters' tokens."""
    check_top(model, k)
    order = np.argsort(-weights, kind="stable")[:k]
    return [
        Dimension(int(i), float(weights[i]), cluster_tokens(model, int(i), tokens))
        for i in order
        if weights[i] > 0
    ]


def top_dimensions(
    model: SentenceTransformer, embedding: np.ndarray, k: int = 10, tokens: int = 8
) -> list[Dimension]:
    """The ``k`` heaviest lexicon dimensions of one embedding, named by their tokens.

    Args:
        model: the LENS model that made the embedding.
        embedding: one embedding ([dimension]).
        k: how many dimensions (1..K); fewer come back when fewer are non-zero.
        tokens: member tokens listed per dimension.
    """
    return heaviest(model, lexicon_part(model, embedding), k, tokens)


def match_dimensions(
    model: SentenceTransformer, query: np.ndarray, document: np.ndarray, k: int = 10, tokens: int = 8
) -> list[Dimension]:
    """Why a document matched a query: the dimensions with the largest products q_i * d_i.

    Args:
        model: the LENS model that made both embeddings.
        query: the query embedding.
        document: the document embedding.
        k: how many dimensions (1..K).
        tokens: member tokens listed per dimension.
    """
    return heaviest(model, lexicon_part(model, query) * lexicon_part(model, document), k, tokens)
