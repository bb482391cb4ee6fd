"""The loss against hand-computed InfoNCE / KL, and gradient caching against the plain loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lens_embed.base.prompts import query_prompt
from lens_embed.training.losses import LensInfoNCELoss, distillation_kl, info_nce


def _unit(rows: int, dim: int = 5, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, dim, generator=generator), dim=-1)


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return sum(float(x) * float(y) for x, y in zip(a, b, strict=True))


def _hand_infonce(queries, documents, temperature: float, in_batch: bool) -> float:
    """Textbook InfoNCE with explicit loops: -log(exp(s+/t) / sum over candidates exp(s/t))."""
    total = 0.0
    for i, query in enumerate(queries):
        if in_batch:
            candidates = [column[j] for column in documents for j in range(len(queries))]
        else:
            candidates = [column[i] for column in documents]
        positive = math.exp(_dot(query, documents[0][i]) / temperature)
        denominator = sum(math.exp(_dot(query, candidate) / temperature) for candidate in candidates)
        total += -math.log(positive / denominator)
    return total / len(queries)


@pytest.mark.parametrize("in_batch", [True, False])
def test_loss_equals_hand_computed_infonce(in_batch: bool) -> None:
    queries = _unit(3, seed=1)
    documents = [_unit(3, seed=2), _unit(3, seed=3), _unit(3, seed=4)]  # positive + 2 hard negatives
    loss = info_nce(queries, documents, scale=1 / 0.02, in_batch_negatives=in_batch)
    assert loss.item() == pytest.approx(_hand_infonce(queries, documents, 0.02, in_batch), rel=1e-5)


def test_no_in_batch_mode_ignores_other_queries_documents() -> None:
    queries = _unit(4, seed=1)
    documents = [_unit(4, seed=2), _unit(4, seed=3)]
    base = info_nce(queries, documents, 50.0, in_batch_negatives=False)
    changed = [documents[0].clone(), documents[1].clone()]
    changed[1][3] = _unit(1, seed=9)[0]  # only query 3's own negative changes
    per_query_loss = [
        info_nce(queries[i : i + 1], [column[i : i + 1] for column in changed], 50.0, False).item()
        for i in range(4)
    ]
    per_query_base = [
        info_nce(queries[i : i + 1], [column[i : i + 1] for column in documents], 50.0, False).item()
        for i in range(4)
    ]
    assert per_query_loss[:3] == pytest.approx(per_query_base[:3])
    assert base.item() == pytest.approx(sum(per_query_base) / 4, rel=1e-6)
    in_batch = info_nce(queries, documents, 50.0, in_batch_negatives=True)
    assert in_batch.item() > base.item()  # more negatives can only raise the loss


def test_distillation_is_kl_to_the_teacher_softmax() -> None:
    queries, documents = _unit(2, seed=1), [_unit(2, seed=2), _unit(2, seed=3), _unit(2, seed=4)]
    teacher = torch.tensor([[3.0, 1.0, 0.0], [0.5, 2.0, 1.0]])
    expected = 0.0
    for i in range(2):
        student = [_dot(queries[i], column[i]) * 50 for column in documents]
        log_z = math.log(sum(math.exp(s) for s in student))
        teacher_z = sum(math.exp(float(t)) for t in teacher[i])
        for s, t in zip(student, teacher[i], strict=True):
            p = math.exp(float(t)) / teacher_z
            expected += p * (math.log(p) - (s - log_z))
    assert distillation_kl(queries, documents, teacher, 50.0).item() == pytest.approx(expected / 2, rel=1e-4)


def _features(model, texts: list[str]) -> dict:
    return model.preprocess(texts)


@pytest.mark.parametrize("in_batch", [True, False])
def test_gradient_cache_matches_the_plain_loss(lens_model, in_batch: bool) -> None:
    """Compared in float64: the cached pass sums the same terms in another order, and in fp32 that
    order alone moves single gradient elements by ~1e-5 on some machines."""
    lens_model.double()
    lens_model.eval()  # no dropout: both passes see the same network
    columns = [
        [query_prompt("Find") + text for text in ("the fox", "the bank", "a kite")],
        ["the quick brown fox", "the reserve bank", "a red kite in the park"],
        ["oilskin jackets", "a man plays guitar", "the cat sat"],
    ]
    grads = []
    losses = []
    for mini_batch_size in (None, 2):
        lens_model.zero_grad()
        loss_fn = LensInfoNCELoss(lens_model, in_batch_negatives=in_batch, mini_batch_size=mini_batch_size)
        loss = loss_fn([_features(lens_model, column) for column in columns], None)
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad.clone() for n, p in lens_model.named_parameters() if p.grad is not None})
    assert losses[0] == pytest.approx(losses[1], rel=1e-12)
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        assert grads[0][name].dtype == torch.float64
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-9, atol=1e-12)


def test_temperature_sets_the_scale(lens_model) -> None:
    assert LensInfoNCELoss(lens_model).scale == pytest.approx(50.0)
    with pytest.raises(ValueError, match="temperature"):
        LensInfoNCELoss(lens_model, temperature=0)
