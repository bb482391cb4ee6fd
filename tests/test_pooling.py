"""The pooling masks and the chunked max, as the paper's equation."""

import pytest
import torch

from lens_embed import pooling
from lens_embed.pooling import (
    dense_embedding,
    lexicon_activation,
    lexicon_embedding,
    masked_max_logits,
    pooling_mask,
    query_start,
)

QUERY = 9


def rows(*sequences, pad=0, left=False):
    width = max(len(s) for s in sequences)
    ids, mask = [], []
    for seq in sequences:
        padding = [pad] * (width - len(seq))
        ids.append(padding + list(seq) if left else list(seq) + padding)
        mask.append([0] * len(padding) + [1] * len(seq) if left else [1] * len(seq) + [0] * len(padding))
    return torch.tensor(ids), torch.tensor(mask)


def mask_of(ids, mask, markers, next_token_outputs=True):
    return pooling_mask(mask, query_start(ids, mask, QUERY, torch.tensor(markers)), next_token_outputs)


def test_decoder_document_pools_all_but_the_last_two_real_positions():
    ids, mask = rows([1, 5, 6, 7, 2], [1, 5, 2])
    assert mask_of(ids, mask, [0, 0]).tolist() == [
        [True, True, True, False, False],
        [True, False, False, False, False],
    ]


def test_a_document_holding_query_tokens_is_still_pooled_whole():
    ids, mask = rows([1, QUERY, 6, QUERY, 7, 2])
    assert mask_of(ids, mask, [0]).tolist() == [[True, True, True, True, False, False]]


def test_decoder_query_pools_from_the_query_token_its_marker_names():
    ids, mask = rows([1, 4, QUERY, 4, QUERY, 6, 7, 2])
    assert mask_of(ids, mask, [1]).tolist() == [[False, False, True, True, True, True, False, False]]
    assert mask_of(ids, mask, [2]).tolist() == [[False, False, False, False, True, True, False, False]]


def test_a_query_without_its_query_token_is_a_clear_error():
    ids, mask = rows([1, 4, QUERY, 6, 2], [1, 5, 6, 2])
    with pytest.raises(ValueError, match="row 1 has no <query> token #1"):
        mask_of(ids, mask, [1, 1])


def test_mask_does_not_depend_on_the_padding_side():
    right = mask_of(*rows([1, 4, QUERY, 6, 7, 2], [1, 5, 2]), [1, 0])
    left = mask_of(*rows([1, 4, QUERY, 6, 7, 2], [1, 5, 2], left=True), [1, 0])
    assert right[0].tolist() == left[0].tolist()
    assert right[1, :3].tolist() == left[1, 3:].tolist()


def test_encoder_pools_each_real_token_and_skips_the_instruction():
    ids, mask = rows([101, 4, QUERY, 6, 7, 102], [101, 6, 102])
    got = mask_of(ids, mask, [1, 0], next_token_outputs=False)
    assert got.tolist() == [[False, False, False, True, True, True], [True, True, True, False, False, False]]


def full_logits_max(hidden: torch.Tensor, centroids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The plain definition: all [B, L, K] logits, non-pooled positions set to -inf, max over L."""
    return (hidden @ centroids.T).masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1).values


@pytest.mark.parametrize("chunk_rows", [1, 2, 5, 1000])
def test_chunked_max_equals_the_full_logits_max(monkeypatch, chunk_rows):
    torch.manual_seed(0)
    hidden, centroids = torch.randn(4, 11, 8, dtype=torch.float64), torch.randn(5, 8, dtype=torch.float64)
    mask = torch.rand(4, 11) > 0.3
    mask[2] = False  # a text with nothing pooled: -inf
    monkeypatch.setattr(pooling, "MAX_CHUNK_ELEMENTS", 5 * chunk_rows)  # texts split across chunks
    got, expected = masked_max_logits(hidden, centroids, mask), full_logits_max(hidden, centroids, mask)
    assert torch.isinf(got[2]).all() and torch.isinf(expected[2]).all()
    pooled = [0, 1, 3]  # float64 products: only the summation order may differ
    assert torch.allclose(got[pooled], expected[pooled], atol=1e-12, rtol=0)


def test_chunked_max_passes_the_same_values_and_gradient_as_the_full_logits_max(monkeypatch):
    torch.manual_seed(0)
    base, centroids = torch.randn(4, 7, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    mask = torch.rand(4, 7) > 0.4
    mask[:, 0], mask[1] = True, False  # text 1 pools nothing
    monkeypatch.setattr(pooling, "MAX_CHUNK_ELEMENTS", 4 * 3)  # texts split across chunks of 3 rows
    weights = torch.rand(4, 4, dtype=torch.float64)
    values, grads = [], []
    for pool in (masked_max_logits, full_logits_max):
        hidden = base.clone().requires_grad_(True)
        pooled = pool(hidden, centroids, mask)
        (lexicon_activation(pooled) * weights).sum().backward()
        values.append(pooled.detach())
        grads.append(hidden.grad)
    assert torch.isinf(values[0][1]).all() and torch.allclose(
        values[0][[0, 2, 3]], values[1][[0, 2, 3]], atol=1e-12
    )
    assert torch.allclose(grads[0], grads[1], atol=1e-12, rtol=0)


def test_lexicon_embedding_is_max_of_log1p_relu():
    torch.manual_seed(0)
    hidden, centroids = torch.randn(2, 6, 4), torch.randn(3, 4)
    mask = torch.ones(2, 6, dtype=torch.bool)
    expected = torch.log1p(torch.relu(hidden @ centroids.T)).max(dim=1).values
    assert torch.allclose(lexicon_embedding(hidden, centroids, mask), expected)


def test_nothing_pooled_gives_zeros_not_nan():
    hidden, centroids = torch.randn(1, 2, 4), torch.randn(3, 4)
    empty = torch.zeros(1, 2, dtype=torch.bool)
    assert torch.equal(lexicon_embedding(hidden, centroids, empty), torch.zeros(1, 3))
    assert torch.equal(dense_embedding(hidden, empty, torch.ones(1, 2), "mean"), torch.zeros(1, 4))


def test_dense_last_takes_the_final_real_token_on_either_side():
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float).reshape(2, 3, 2)
    right = dense_embedding(hidden, None, torch.tensor([[1, 1, 0], [1, 1, 1]]), "last")
    left = dense_embedding(hidden, None, torch.tensor([[0, 1, 1], [1, 1, 1]]), "last")
    assert right[0].tolist() == hidden[0, 1].tolist() and left[0].tolist() == hidden[0, 2].tolist()
