"""The pooling masks and the chunked max, as the paper's equation."""

import math

import pytest
import torch

from lens_embed.models import pooling
from lens_embed.models.pooling import (
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


# ---- sparse LENS: each pooled position keeps its k largest cluster logits (position_top_k) ----


def plain_top_k_max(
    hidden: torch.Tensor, centroids: torch.Tensor, mask: torch.Tensor, k: int
) -> torch.Tensor:
    """The plain definition: all [B, L, K] logits, each position's k largest kept (the rest -inf),
    non-pooled positions -inf, max over L."""
    logits = hidden @ centroids.T
    kept = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, logits.topk(k, dim=-1).indices, True)
    return logits.masked_fill(~(kept & mask.unsqueeze(-1)), float("-inf")).max(dim=1).values


def sparse_inputs(seed: int = 0):
    torch.manual_seed(seed)
    hidden, centroids = torch.randn(4, 9, 6, dtype=torch.float64), torch.randn(7, 6, dtype=torch.float64)
    mask = torch.rand(4, 9) > 0.3
    mask[:, 0], mask[1] = True, False  # text 1 pools nothing
    return hidden, centroids, mask


@pytest.mark.parametrize("chunk_rows", [1, 2, 5, 1000])
@pytest.mark.parametrize("k", [1, 3, 6])
def test_top_k_pooling_equals_its_plain_definition_with_values_and_gradient(monkeypatch, chunk_rows, k):
    base, centroids, mask = sparse_inputs()
    monkeypatch.setattr(pooling, "MAX_CHUNK_ELEMENTS", 7 * chunk_rows)  # texts split across chunks
    weights = torch.rand(4, 7, dtype=torch.float64)
    values, grads = [], []
    for pool in (
        lambda h: masked_max_logits(h, centroids, mask, k),
        lambda h: plain_top_k_max(h, centroids, mask, k),
    ):
        with torch.no_grad():
            values.append(pool(base))
        hidden = base.clone().requires_grad_(True)
        pooled = pool(hidden)
        assert torch.equal(pooled.detach(), values[-1])  # with or without gradients: the same values
        (lexicon_activation(pooled) * weights).sum().backward()
        grads.append(hidden.grad)
    assert torch.isinf(values[0][1]).all() and torch.isinf(values[1][1]).all()
    pooled = [0, 2, 3]  # float64 products: only the summation order may differ
    assert torch.allclose(values[0][pooled], values[1][pooled], atol=1e-12, rtol=0)
    assert torch.allclose(grads[0], grads[1], atol=1e-12, rtol=0)


def test_each_position_gives_at_most_k_active_clusters_and_the_text_their_max():
    hidden, centroids, mask = sparse_inputs(1)
    k = 2
    one = torch.zeros_like(mask)
    one[:, 3] = True  # one pooled position per text: at most k active clusters
    assert ((lexicon_embedding(hidden, centroids, one, k) > 0).sum(dim=1) <= k).all()
    vector = lexicon_embedding(hidden, centroids, mask, k)
    per_position = [
        lexicon_embedding(
            hidden, centroids, torch.zeros_like(mask).index_fill_(1, torch.tensor([i]), True) & mask, k
        )
        for i in range(mask.shape[1])
    ]
    assert torch.equal(vector, torch.stack(per_position).max(dim=0).values)
    assert ((vector > 0).sum(dim=1) <= k * mask.sum(dim=1)).all()


def test_top_k_off_or_at_least_k_clusters_is_exactly_the_papers_pooling():
    hidden, centroids, mask = sparse_inputs(2)
    paper = masked_max_logits(hidden, centroids, mask)
    assert torch.equal(masked_max_logits(hidden, centroids, mask, None), paper)
    assert torch.equal(masked_max_logits(hidden, centroids, mask, 7), paper)
    assert torch.equal(
        lexicon_embedding(hidden, centroids, mask, None, 0.5), lexicon_embedding(hidden, centroids, mask)
    )


def test_ties_at_the_k_th_logit_keep_the_lowest_clusters():
    logits = torch.tensor([[1.0, 3.0, 1.0, 1.0, 0.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
    kept = pooling.keep_top_k(logits.clone(), 2)
    assert torch.isfinite(kept).tolist() == [
        [True, True, False, False, False],
        [True, True, False, False, False],
    ]
    tracked = logits.clone().requires_grad_(True)
    assert torch.equal(pooling.keep_top_k(tracked, 2).detach(), kept)


def test_gradient_reaches_the_kept_logits_only():
    logits = torch.tensor([[0.5, 3.0, -1.0, 2.0]], requires_grad=True)
    pooling.keep_top_k(logits, 2).masked_fill(torch.tensor([[True, False, True, False]]), 0).sum().backward()
    assert logits.grad.tolist() == [[0.0, 1.0, 0.0, 1.0]]


def test_top_k_pooling_holds_no_batch_by_length_by_clusters_block(monkeypatch):
    """Every tensor the pooling makes with K columns holds at most one chunk (or the [B, K] result), and
    autograd keeps the kept logits' column indices, never a chunk of logits."""
    from torch.overrides import TorchFunctionMode

    torch.manual_seed(0)
    batch, length, width, clusters, k = 3, 40, 4, 10, 2
    hidden, centroids = torch.randn(batch, length, width), torch.randn(clusters, width)
    mask = torch.ones(batch, length, dtype=torch.bool)
    chunk = 12 * clusters  # a text spans 4 or 5 chunks
    monkeypatch.setattr(pooling, "MAX_CHUNK_ELEMENTS", chunk)
    made: list[int] = []

    class Sizes(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for tensor in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(tensor, torch.Tensor) and tensor.ndim and tensor.shape[-1] == clusters:
                    made.append(tensor.numel())
            return out

    saved: list[tuple[int, ...]] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.untyped_storage().data_ptr() != centroids.untyped_storage().data_ptr():
            saved.append(tuple(tensor.shape))
        return tensor

    tracked = hidden.clone().requires_grad_(True)
    with Sizes(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        lexicon_embedding(tracked, centroids, mask, k)
    with Sizes():
        lexicon_embedding(hidden, centroids, mask, k)
    assert made and max(made) <= max(chunk, batch * clusters) < batch * length * clusters
    kept = [shape for shape in saved if shape[-1:] == (clusters,)]
    assert kept and all(math.prod(shape) <= batch * clusters for shape in kept)  # no chunk of logits
    assert (chunk // clusters, k) in saved  # but each chunk's kept columns


def test_straight_through_top_k_gives_the_hard_values_and_a_gradient_past_the_k_th_logit(monkeypatch):
    hidden, centroids, mask = sparse_inputs(3)
    monkeypatch.setattr(pooling, "MAX_CHUNK_ELEMENTS", 7 * 2)  # texts split across chunks
    k, weights = 2, torch.rand(4, 7, dtype=torch.float64)

    def gradient(temperature):
        tracked = hidden.clone().requires_grad_(True)
        vector = lexicon_embedding(tracked, centroids, mask, k, temperature)
        (vector * weights).sum().backward()
        return vector.detach(), tracked.grad

    hard_value, hard_grad = gradient(None)
    cold_value, cold_grad = gradient(1e-4)
    warm_value, warm_grad = gradient(1.0)
    assert torch.equal(cold_value, hard_value) and torch.equal(warm_value, hard_value)
    assert torch.allclose(cold_grad, hard_grad, atol=1e-6)  # a cold relaxation is the hard top-k
    # a warm one: the plain (unchunked) relaxed pooling's gradient, which also reaches logits past the k-th
    tracked = hidden.clone().requires_grad_(True)
    logits = tracked @ centroids.T
    top = logits.detach().topk(k + 1, dim=-1).values
    soft = torch.log1p(torch.relu(logits)) * torch.sigmoid(logits - (top[..., k - 1 : k] + top[..., k:]) / 2)
    (soft.masked_fill(~mask.unsqueeze(-1), 0).max(dim=1).values * weights).sum().backward()
    assert torch.allclose(warm_grad, tracked.grad, atol=1e-6, rtol=0)  # the pooled vector is float32
    assert not torch.allclose(warm_grad, hard_grad, atol=1e-3)


def test_straight_through_top_k_on_one_position_moves_the_cluster_just_past_the_k_th():
    centroids = torch.eye(3, dtype=torch.float64)  # logits = the hidden state itself
    mask = torch.ones(1, 1, dtype=torch.bool)
    grads = {}
    for temperature in (None, 0.5):
        hidden = torch.tensor([[[3.0, 2.0, 1.0]]], dtype=torch.float64, requires_grad=True)
        vector = lexicon_embedding(hidden, centroids, mask, 2, temperature)
        assert vector.tolist() == torch.log1p(torch.tensor([[3.0, 2.0, 0.0]])).tolist()  # float32
        vector.sum().backward()
        grads[temperature] = hidden.grad[0, 0]
    assert grads[None].tolist() == pytest.approx(
        [1 / 4, 1 / 3, 0.0], abs=1e-7
    )  # the third logit is outside the top 2: no gradient
    assert grads[0.5][2] > 0  # the relaxation tells it that rising would add to the loss' objective
