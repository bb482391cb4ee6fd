"""Sparse LENS by training: SPLADE's FLOPS regulariser (sentence-transformers' SpladeLoss / FlopsLoss) on
the L2-normalised lexicon part, its quadratic warm-up, the logs, and weight 0 = exactly the LENS loss; the
scale-invariant L1 term; runs under the per-position top-k pooling and its straight-through temperature."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.sparse_encoder.losses import CachedSpladeLoss, SpladeLoss
from torch import nn
from training_toy import SENTENCES, StopAt, retrieval_rows, toy_config, write_jsonl
from transformers import TrainerCallback, TrainerState

from lens_embed import load_lens_model
from lens_embed.base.prompts import query_prompt
from lens_embed.training.config import ADDED, TrainConfig
from lens_embed.training.data import task_spec
from lens_embed.training.losses import (
    LensInfoNCELoss,
    LexiconFlopsLoss,
    LexiconL1Loss,
    lexicon_part,
    normalized_l1,
    soft_count,
    sparsity_regularized,
)
from lens_embed.training.trainer import (
    RECORD_FILENAME,
    RegularizerWarmup,
    apply_position_top_k,
    build_losses,
    build_trainer,
    prepare_output,
    save_final_model,
    train,
)

COLUMNS = [
    [query_prompt("Find the sentence") + text for text in ("the fox", "the bank", "a kite")],
    ["the quick brown fox jumps", "the reserve bank of australia", "a red kite in the park"],
    ["oilskin jackets", "a man plays guitar", "the cat sat quietly"],
]


def _splade_flops(rows: list[list[float]]) -> float:
    """SPLADE's FLOPS, transcribed: the sum over dimensions of the squared mean absolute activation."""
    return sum((sum(abs(row[j]) for row in rows) / len(rows)) ** 2 for j in range(len(rows[0])))


def _total(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    """What sentence-transformers' trainer backpropagates from a dict-valued loss (``compute_loss``)."""
    return torch.stack(list(losses.values())).sum()


def _unit_lexicon(rows: int, k: int, seed: int) -> torch.Tensor:
    """Non-negative unit rows with about half of the dimensions at exactly zero, as LENS vectors are."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.relu(torch.randn(rows, k, generator=generator))
    return F.normalize(torch.log1p(values), dim=-1)


def test_flops_is_splades_formula_on_the_normalised_lexicon_part() -> None:
    lexicon = _unit_lexicon(6, 10, seed=0)
    regularizer = LexiconFlopsLoss(nn.Identity(), n_clusters=10)
    value = regularizer.compute_loss_from_embeddings(lexicon)
    assert value.item() == pytest.approx(_splade_flops(lexicon.tolist()), rel=1e-6)
    assert regularizer.take_active_dims().item() == pytest.approx((lexicon != 0).sum().item() / 6)
    assert regularizer.take_active_dims() is None  # taken once
    # A hybrid's embedding: the lexicon part scaled by the joint normalisation, then a dense part. FLOPS sees
    # the lexicon part normalised again, and nothing of the dense part.
    dense = F.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(1)), dim=-1)
    hybrid = F.normalize(torch.cat([lexicon, 0.5 * dense], dim=-1), dim=-1)
    assert regularizer.compute_loss_from_embeddings(hybrid).item() == pytest.approx(value.item(), rel=1e-5)
    other_dense = F.normalize(torch.cat([lexicon, 0.5 * -dense.flip(0)], dim=-1), dim=-1)
    assert regularizer.compute_loss_from_embeddings(other_dense).item() == pytest.approx(
        value.item(), rel=1e-5
    )
    with pytest.raises(ValueError, match="no 10 lexicon dimensions"):
        regularizer.compute_loss_from_embeddings(lexicon[:, :8])


def test_query_and_document_weights_act_on_their_own_columns(lens_model) -> None:
    lens_model.eval()
    features = [lens_model.preprocess(column) for column in COLUMNS]
    loss = sparsity_regularized(
        LensInfoNCELoss(lens_model), 16, document_regularizer_weight=3.0, query_regularizer_weight=0.5
    )
    assert isinstance(loss, SpladeLoss) and not isinstance(loss, CachedSpladeLoss)
    with torch.no_grad():
        parts = loss(features, None)
        queries, *documents = embed_columns(lens_model, [lens_model.preprocess(column) for column in COLUMNS])
        base = LensInfoNCELoss(lens_model).compute_loss_from_embeddings([queries, *documents])
    assert parts["base_loss"].item() == pytest.approx(base.item(), rel=1e-6)
    assert parts["query_regularizer_loss"].item() == pytest.approx(
        0.5 * _splade_flops(queries.tolist()), rel=1e-5
    )
    assert parts["document_regularizer_loss"].item() == pytest.approx(
        3.0 * _splade_flops(torch.cat(documents).tolist()), rel=1e-5
    )


@pytest.mark.parametrize("mini_batch_size", [None, 2], ids=["plain", "gradient-cache"])
def test_weight_zero_leaves_the_lens_loss_and_its_gradient_bit_identical(lens_model, mini_batch_size) -> None:
    lens_model.eval()
    results = []
    for regularized in (False, True):
        lens_model.zero_grad()
        features = [lens_model.preprocess(column) for column in COLUMNS]
        if regularized:
            loss = _total(
                sparsity_regularized(LensInfoNCELoss(lens_model), 16, 0.0, 0.0, mini_batch_size)(
                    features, None
                )
            )
        else:
            loss = LensInfoNCELoss(lens_model, mini_batch_size=mini_batch_size)(features, None)
        loss.backward()
        results.append(
            (
                loss.detach(),
                {name: p.grad.clone() for name, p in lens_model.named_parameters() if p.grad is not None},
            )
        )
    (plain, plain_grads), (zero, zero_grads) = results
    assert torch.equal(plain, zero)
    assert plain_grads.keys() == zero_grads.keys() and plain_grads
    for name in plain_grads:
        assert torch.equal(plain_grads[name], zero_grads[name]), name


def test_a_run_without_regulariser_weights_trains_the_plain_lens_loss(lens_model, tmp_path: Path) -> None:
    specs = {"retrieval": task_spec("normal")}
    config = TrainConfig(model="m", data=[], output=str(tmp_path), mini_batch_size=4)
    plain = build_losses(lens_model, specs, config, world_size=1)["retrieval"]
    assert type(plain) is LensInfoNCELoss and plain.mini_batch_size == 4
    config.query_regularizer_weight = 0.1
    cached = build_losses(lens_model, specs, config, world_size=1)["retrieval"]
    assert (
        isinstance(cached, CachedSpladeLoss)
        and cached.mini_batch_size == 4
        and cached.loss.mini_batch_size is None
    )
    assert (cached.document_regularizer_weight, cached.query_regularizer_weight) == (0.0, 0.1)
    with pytest.raises(ValueError, match="not a LENS model"):
        build_losses(nn.Sequential(nn.Linear(2, 2)), specs, config, world_size=1)


def test_gradient_caching_gives_the_regularised_loss_and_gradient(lens_model) -> None:
    """Compared in float64, as the plain loss's caching test (the cached pass sums in another order)."""
    lens_model.double()
    lens_model.eval()
    results = []
    for mini_batch_size in (None, 2):
        lens_model.zero_grad()
        loss_fn = sparsity_regularized(LensInfoNCELoss(lens_model), 16, 2.0, 1.0, mini_batch_size)
        parts = loss_fn([lens_model.preprocess(column) for column in COLUMNS], None)
        _total(parts).backward()
        results.append(
            (
                {key: value.item() for key, value in parts.items()},
                {name: p.grad.clone() for name, p in lens_model.named_parameters() if p.grad is not None},
            )
        )
    (plain_parts, plain_grads), (cached_parts, cached_grads) = results
    assert (
        plain_parts.keys()
        == cached_parts.keys()
        == {"base_loss", "document_regularizer_loss", "query_regularizer_loss"}
    )
    for key in plain_parts:
        assert cached_parts[key] == pytest.approx(
            plain_parts[key], rel=1e-6
        )  # the cached parts are logged in fp32
    assert plain_grads.keys() == cached_grads.keys() and plain_grads
    for name in plain_grads:
        torch.testing.assert_close(cached_grads[name], plain_grads[name], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("warmup", "steps_to_full"), [(10, 10), (0.5, 15), (1, 1), (0, 0)])
def test_the_weights_warm_up_quadratically(warmup: float, steps_to_full: int) -> None:
    loss = sparsity_regularized(
        LensInfoNCELoss(nn.Identity()), 4, document_regularizer_weight=2.0, query_regularizer_weight=0.5
    )
    callback = RegularizerWarmup(loss, warmup)
    state = TrainerState(max_steps=30, global_step=0)
    callback.on_train_begin(None, state, None)
    seen = []
    for step in range(30):
        state.global_step = step  # as the trainer's on_step_begin sees it: steps done so far
        callback.on_step_begin(None, state, None)
        seen.append(loss.document_regularizer_weight / 2.0)
        assert loss.query_regularizer_weight == pytest.approx(0.5 * seen[-1])
    expected = [min(1.0, (step / steps_to_full) ** 2) if steps_to_full else 1.0 for step in range(30)]
    assert seen == pytest.approx(expected)
    with pytest.raises(ValueError, match="warmup_steps must be >= 0"):
        RegularizerWarmup(loss, -1)


class _Logs(TrainerCallback):
    def __init__(self) -> None:
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" in logs:
            self.logs.append(dict(logs))


def _active_dims(model) -> tuple[float, float]:
    """Mean active dimensions of the toy documents and of queries, as the model encodes them."""
    model.eval()
    with torch.no_grad():
        documents = model.encode_document(SENTENCES, convert_to_tensor=True)
        queries = model.encode_query(
            [" ".join(text.split()[:4]) for text in SENTENCES], convert_to_tensor=True
        )
    return (documents != 0).sum(dim=1).float().mean().item(), (queries != 0).sum(dim=1).float().mean().item()


def test_a_large_flops_weight_makes_the_vectors_sparser_and_the_logs_show_it(
    tiny_lens: Path, tmp_path: Path
) -> None:
    """The same seeded steps (full fine-tuning, which moves a tiny model faster than LoRA) with weight 0 and
    with a large weight: fewer active dimensions, for documents and queries, and the logs say so."""
    data = [write_jsonl(tmp_path / "retrieval.jsonl", retrieval_rows())]
    results = {}
    for weight in (0.0, 100.0):
        logs = _Logs()
        config = toy_config(
            tiny_lens,
            data,
            tmp_path / f"out-{weight}",
            max_steps=20,
            lora=False,
            document_regularizer_weight=weight,
            query_regularizer_weight=weight,
            regularizer_warmup_steps=4,
        )
        trainer = build_trainer(config, callbacks=[logs])
        trainer.train()
        results[weight] = (_active_dims(trainer.model), logs.logs)
    (plain_documents, plain_queries), plain_logs = results[0.0]
    (sparse_documents, sparse_queries), sparse_logs = results[100.0]
    assert sparse_documents <= plain_documents - 2 and sparse_queries <= plain_queries - 2
    assert "document_active_dims" not in plain_logs[0]  # weight 0: exactly the LENS loss, logged as before
    assert len(sparse_logs) == 20
    for step, line in enumerate(
        sparse_logs
    ):  # each line logs the step just taken (the weight set at its start)
        warm = min(1.0, (step / 4) ** 2)
        assert line["document_regularizer_weight"] == pytest.approx(100.0 * warm)
        assert line["query_regularizer_weight"] == pytest.approx(100.0 * warm)
        assert {"base_loss", "document_regularizer_loss", "query_regularizer_loss"} <= line.keys()
        assert 0 < line["query_active_dims"] <= 16 and 0 < line["document_active_dims"] <= 16
    assert sparse_logs[0]["document_regularizer_loss"] == 0.0  # warm-up: no weight on the first step
    assert sparse_logs[-1]["document_active_dims"] < sparse_logs[0]["document_active_dims"]
    assert sparse_logs[-1]["query_active_dims"] < sparse_logs[0]["query_active_dims"]


def test_a_regularised_run_resumes_mid_warmup_to_the_uninterrupted_weights(
    tiny_lens: Path, tmp_path: Path
) -> None:
    data = [write_jsonl(tmp_path / "retrieval.jsonl", retrieval_rows())]
    options = dict(
        max_steps=4, document_regularizer_weight=5.0, query_regularizer_weight=1.0, regularizer_warmup_steps=3
    )
    whole = train(toy_config(tiny_lens, data, tmp_path / "whole", **options))
    interrupted = toy_config(tiny_lens, data, tmp_path / "resumed", **options)
    train(interrupted, callbacks=[StopAt(2)])
    resumed = train(interrupted)
    texts = ["the quick brown fox", "a red kite"]
    torch.testing.assert_close(
        torch.from_numpy(load_lens_model(resumed).encode(texts)),
        torch.from_numpy(load_lens_model(whole).encode(texts)),
    )


def test_a_run_recorded_before_the_regulariser_existed_still_resumes(tmp_path: Path) -> None:
    config = TrainConfig(model="m", data=["d.jsonl"], output=str(tmp_path / "run"))
    prepare_output(config)
    record = tmp_path / "run" / RECORD_FILENAME
    values = json.loads(record.read_text())
    for name in ADDED:
        del values[name]
    record.write_text(json.dumps(values))
    config.checkpoint_dir.mkdir()  # it trained
    prepare_output(config)  # the same run: resumed, not refused
    sparse = TrainConfig(
        model="m", data=["d.jsonl"], output=str(tmp_path / "run"), document_regularizer_weight=0.1
    )
    with pytest.raises(FileExistsError, match="different document_regularizer_weight"):
        prepare_output(sparse)


@pytest.mark.parametrize(
    "field", ["document_regularizer_weight", "query_regularizer_weight", "regularizer_warmup_steps"]
)
def test_negative_weights_and_warmups_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=f"TrainConfig {field}: must be a finite number >= 0"):
        TrainConfig(model="m", data=[], output="o", **{field: -0.5})


# ---- sparse LENS by pooling: the per-position top-k, its straight-through temperature, the L1 term ----


def test_the_l1_term_is_one_for_one_hot_and_root_k_for_flat_vectors_at_any_scale() -> None:
    one_hot = torch.zeros(2, 16).index_fill_(1, torch.tensor([3]), 1.0) * torch.tensor([[1.0], [7.5]])
    flat = torch.full((3, 16), 0.2)
    assert normalized_l1(one_hot).item() == pytest.approx(1.0)
    assert normalized_l1(flat).item() == pytest.approx(4.0)  # sqrt(16)
    assert normalized_l1(torch.cat([one_hot[:1], flat[:1]])).item() == pytest.approx(2.5)  # the rows' mean
    assert normalized_l1(torch.zeros(1, 16)).item() == 0.0
    # only the lexicon part of a hybrid, normalised again
    hybrid = F.normalize(torch.cat([flat[:1], torch.ones(1, 4)], dim=-1), dim=-1)
    assert normalized_l1(lexicon_part(hybrid, 16)).item() == pytest.approx(4.0)


def test_the_l1_term_acts_on_its_own_columns_beside_flops(lens_model) -> None:
    lens_model.eval()
    features = [lens_model.preprocess(column) for column in COLUMNS]
    loss = sparsity_regularized(LensInfoNCELoss(lens_model), 16, 1.0, 0.0, None, 0.3, 0.2)
    assert isinstance(loss.loss, LexiconL1Loss)
    with torch.no_grad():
        parts = loss(features, None)
        queries, *documents = embed_columns(lens_model, [lens_model.preprocess(column) for column in COLUMNS])
    assert parts.keys() == {
        "base_loss",
        "document_l1_loss",
        "query_l1_loss",
        "document_regularizer_loss",
        "query_regularizer_loss",
    }
    assert parts["document_l1_loss"].item() == pytest.approx(0.3 * normalized_l1(torch.cat(documents)).item())
    assert parts["query_l1_loss"].item() == pytest.approx(0.2 * normalized_l1(queries).item())
    assert parts["document_regularizer_loss"].item() == pytest.approx(
        _splade_flops(torch.cat(documents).tolist()), rel=1e-5
    )
    norms = loss.loss.take_l1_norms()
    assert norms["query_l1_norm"].item() == pytest.approx(normalized_l1(queries).item())
    assert loss.loss.take_l1_norms() == {}  # taken once


def test_the_count_term_counts_weights_far_above_epsilon_and_ignores_scale() -> None:
    one_hot = torch.zeros(2, 16).index_fill_(1, torch.tensor([3]), 1.0) * torch.tensor([[1.0], [7.5]])
    flat = torch.full((1, 16), 0.2)  # unit weights 1/4
    assert soft_count(one_hot, 0.01).item() == pytest.approx(1 / 1.01)
    assert soft_count(flat, 0.01).item() == pytest.approx(16 * 0.25 / 0.26)
    assert soft_count(torch.zeros(1, 16), 0.01).item() == 0.0
    # a tail of small weights costs almost one each: what the L1 norm hardly sees
    tail = torch.cat([torch.ones(1, 4), torch.full((1, 12), 1e-3)], dim=-1)
    assert soft_count(tail, 1e-4).item() > 4 + 0.8 * 12 and normalized_l1(tail).item() < 2.02
    vectors = torch.rand(3, 16, requires_grad=True)
    soft_count(vectors, 0.05).backward()
    unit = F.normalize(vectors.detach(), dim=-1)
    # the pull is strongest on the smallest weights of each row
    smallest, largest = unit.argmin(dim=-1), unit.argmax(dim=-1)
    rows = torch.arange(3)
    assert (vectors.grad[rows, smallest] > vectors.grad[rows, largest]).all()
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        soft_count(flat, 0.0)


def test_the_count_term_replaces_the_l1_term_under_the_same_weights(lens_model) -> None:
    lens_model.eval()
    features = [lens_model.preprocess(column) for column in COLUMNS]
    loss = sparsity_regularized(LensInfoNCELoss(lens_model), 16, 0.0, 0.0, None, 0.3, 0.2, "count", 0.02)
    with torch.no_grad():
        parts = loss(features, None)
        queries, *documents = embed_columns(lens_model, [lens_model.preprocess(column) for column in COLUMNS])
    assert parts["document_l1_loss"].item() == pytest.approx(
        0.3 * soft_count(torch.cat(documents), 0.02).item()
    )
    assert parts["query_l1_loss"].item() == pytest.approx(0.2 * soft_count(queries, 0.02).item())
    assert loss.loss.take_l1_norms().keys() == {"query_soft_count", "document_soft_count"}
    assert loss.loss.get_config_dict()["sparsity_term"] == "count"
    with pytest.raises(ValueError, match="term must be one of"):
        LexiconL1Loss(LensInfoNCELoss(lens_model), 16, 0.1, 0.1, "l0")
    with pytest.raises(ValueError, match="TrainConfig sparsity_term"):
        TrainConfig(model="m", data=[], output="o", sparsity_term="l0")


def test_the_l1_weights_warm_up_with_the_flops_weights() -> None:
    loss = sparsity_regularized(LensInfoNCELoss(nn.Identity()), 4, 2.0, 0.0, None, 0.4, 0.1)
    callback = RegularizerWarmup(loss, 4)
    state = TrainerState(max_steps=10, global_step=0)
    callback.on_train_begin(None, state, None)
    for step in range(10):
        state.global_step = step
        callback.on_step_begin(None, state, None)
        warm = min(1.0, (step / 4) ** 2)
        assert (loss.loss.document_weight, loss.loss.query_weight) == pytest.approx((0.4 * warm, 0.1 * warm))
        assert loss.document_regularizer_weight == pytest.approx(2.0 * warm)


def test_a_run_under_position_top_k_trains_through_the_kept_logits_and_saves_the_setting(
    tiny_lens: Path, tmp_path: Path
) -> None:
    """LoRA (so the saved model is the base reloaded and merged), the straight-through temperature and the
    L1 term: the model trains, its logs carry the L1 norms, and the saved folder pools with k = 2."""
    data = [write_jsonl(tmp_path / "retrieval.jsonl", retrieval_rows())]
    logs = _Logs()
    config = toy_config(
        tiny_lens,
        data,
        tmp_path / "out",
        max_steps=3,
        position_top_k=2,
        topk_temperature=0.5,
        document_l1_weight=0.1,
        query_l1_weight=0.1,
        regularizer_warmup_steps=0,
    )
    trainer = build_trainer(config, callbacks=[logs])
    pooling = trainer.model[1]
    assert (pooling.position_top_k, pooling.topk_temperature) == (2, 0.5)
    trainer.train()
    assert len(logs.logs) == 3 and all(line["document_l1_norm"] >= 1.0 for line in logs.logs)
    assert all(line["document_l1_weight"] == 0.1 and "document_l1_loss" in line for line in logs.logs)
    output = save_final_model(trainer, config)
    saved = load_lens_model(output, device="cpu")
    assert saved[1].position_top_k == 2 and saved[1].topk_temperature is None
    assert "topk_temperature" not in json.loads((output / "1_LexiconPooling" / "config.json").read_text())
    before = load_lens_model(tiny_lens, device="cpu")
    before[1].position_top_k = 2
    texts = ["the quick brown fox", "a red kite"]
    assert not np.allclose(saved.encode(texts), before.encode(texts))  # the LoRA weights moved


def test_a_run_with_the_count_term_logs_the_soft_count(tiny_lens: Path, tmp_path: Path) -> None:
    data = [write_jsonl(tmp_path / "retrieval.jsonl", retrieval_rows())]
    logs = _Logs()
    config = toy_config(
        tiny_lens,
        data,
        tmp_path / "out",
        max_steps=2,
        position_top_k=2,
        document_l1_weight=0.1,
        sparsity_term="count",
        count_epsilon=0.02,
        regularizer_warmup_steps=0,
    )
    trainer = build_trainer(config, callbacks=[logs])
    trainer.train()
    assert len(logs.logs) == 2 and all(line["document_soft_count"] >= 1.0 for line in logs.logs)
    assert all("document_l1_norm" not in line and line["document_l1_weight"] == 0.1 for line in logs.logs)


def test_position_top_k_options_are_checked(tiny_lens: Path, lens_model, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TrainConfig position_top_k: must be >= 0"):
        TrainConfig(model="m", data=[], output="o", position_top_k=-1)
    with pytest.raises(ValueError, match="TrainConfig topk_temperature: must be a finite number > 0"):
        TrainConfig(model="m", data=[], output="o", topk_temperature=0)
    with pytest.raises(ValueError, match="position_top_k is 0"):
        TrainConfig(model="m", data=[], output="o", position_top_k=0, topk_temperature=0.5)
    with pytest.raises(ValueError, match="does not use: set --position-top-k"):
        apply_position_top_k(lens_model, TrainConfig(model="m", data=[], output="o", topk_temperature=0.5))
    with pytest.raises(ValueError, match="not a LENS model"):
        apply_position_top_k(
            nn.Sequential(nn.Linear(2, 2)), TrainConfig(model="m", data=[], output="o", position_top_k=2)
        )
    lens_model[1].position_top_k = 3
    apply_position_top_k(lens_model, TrainConfig(model="m", data=[], output="o", position_top_k=0))
    assert lens_model[1].position_top_k is None  # 0 turns a model's own setting off


def test_on_a_hybrid_the_sparsity_terms_see_only_the_lexicon_part_and_the_infonce_the_joint_vector(
    tiny_hybrid: Path,
) -> None:
    hybrid = load_lens_model(tiny_hybrid, device="cpu")
    hybrid.eval()
    k = hybrid.lexicon().n_clusters
    loss = sparsity_regularized(LensInfoNCELoss(hybrid), k, 1.0, 0.5, None, 0.3, 0.2)
    with torch.no_grad():
        parts = loss([hybrid.preprocess(column) for column in COLUMNS], None)
        queries, *documents = embed_columns(hybrid, [hybrid.preprocess(column) for column in COLUMNS])
    assert queries.shape[1] == k + hybrid.lexicon().hidden_size
    lexicon_documents = lexicon_part(torch.cat(documents), k)
    assert parts["document_regularizer_loss"].item() == pytest.approx(
        _splade_flops(lexicon_documents.tolist()), rel=1e-5
    )
    assert parts["query_l1_loss"].item() == pytest.approx(
        0.2 * normalized_l1(lexicon_part(queries, k)).item()
    )
    # the contrastive loss scores the joint (lexicon + dense) vectors the model serves, not the lexicon part
    joint = LensInfoNCELoss(hybrid).compute_loss_from_embeddings([queries, *documents])
    lexical = LensInfoNCELoss(hybrid).compute_loss_from_embeddings(
        [lexicon_part(column, k) for column in (queries, *documents)]
    )
    assert parts["base_loss"].item() == pytest.approx(joint.item(), rel=1e-6)
    assert abs(joint.item() - lexical.item()) > 1e-3
    # and no gradient of a sparsity term reaches the dense columns
    for term in (
        LexiconFlopsLoss(hybrid, k).compute_loss_from_embeddings,
        lambda e: normalized_l1(lexicon_part(e, k)),
    ):
        embeddings = torch.cat(documents).clone().requires_grad_()
        term(embeddings).backward()
        assert embeddings.grad[:, k:].abs().max().item() == 0.0
        assert embeddings.grad[:, :k].abs().max().item() > 0.0
