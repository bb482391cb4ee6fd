"""The LENS training objective: InfoNCE over normalised embeddings, temperature 0.02.

For query ``q_i`` with positive ``d_i+`` and hard negatives ``d_i1..d_i(G-1)``::

    L_i = -log  exp(s(q_i, d_i+) / t)  /  sum_{d in C_i} exp(s(q_i, d) / t)

``s`` is the dot product of L2-normalised embeddings (cosine). With in-batch negatives ``C_i`` is
every positive and hard negative of the (globally gathered) batch; without them (classification and
clustering, as the authors do) it is only the query's own group. When the data carries teacher
scores, a KL term pulls the softmax over the query's own group towards the teacher's softmax.

Gradient caching comes from sentence-transformers' :class:`CachedLossMixin` (GradCache), and the
cross-device gather from its ``all_gather_with_grad``, so DDP and DeepSpeed see an ordinary loss.

Sparse LENS: :func:`sparsity_regularized` adds SPLADE's FLOPS regulariser to this loss through
sentence-transformers' own ``SpladeLoss`` (``CachedSpladeLoss`` with gradient caching), with separate
query and document weights; :class:`LexiconFlopsLoss` is its ``FlopsLoss`` on the L2-normalised
lexicon part of the embeddings (see there for why that tensor). :class:`LexiconL1Loss` adds the
scale-invariant sparsity term (:func:`normalized_l1`) per side, inside that same ``SpladeLoss``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.losses.gradcache import CachedLossMixin
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.sparse_encoder.losses import CachedSpladeLoss, FlopsLoss, SpladeLoss
from sentence_transformers.util import all_gather_with_grad, get_rank
from torch import Tensor, nn

from lens_embed.base.citation import LENS_CITATION
from lens_embed.training.config import DEFAULT_COUNT_EPSILON, DEFAULT_TEMPERATURE, SPARSITY_TERMS


def group_scores(queries: Tensor, documents: list[Tensor]) -> Tensor:
    """[B, G] similarities of each query to its own group (positive first, then its negatives)."""
    stacked = torch.stack(documents, dim=1)  # [B, G, H]
    return torch.einsum("bh,bgh->bg", queries, stacked)


def in_batch_scores(queries: Tensor, documents: list[Tensor]) -> Tensor:
    """[B, G * N] similarities of each query to every document; column ``g * N + j`` is document
    column ``g`` of example ``j`` (N = number of examples the documents came from)."""
    return queries @ torch.cat(documents, dim=0).T


def info_nce(
    queries: Tensor,
    documents: list[Tensor],
    scale: float,
    in_batch_negatives: bool,
    gather: bool = False,
) -> Tensor:
    """Mean InfoNCE of this process's queries. ``documents[0]`` are the positives.

    With ``gather``, every process's documents join the candidates (with gradient), and the
    positive of local query ``i`` sits at column ``rank * B + i``. Averaging this loss over
    processes (which DDP's gradient averaging does) equals the loss of the union batch.
    """
    if not in_batch_negatives:
        logits = group_scores(queries, documents) * scale
        return F.cross_entropy(logits, torch.zeros(len(queries), dtype=torch.long, device=queries.device))
    offset = 0
    if gather:
        documents = [all_gather_with_grad(column) for column in documents]
        offset = get_rank() * len(queries)
    logits = in_batch_scores(queries, documents) * scale
    targets = torch.arange(offset, offset + len(queries), device=queries.device)
    return F.cross_entropy(logits, targets)


def scale_gradient(loss: Tensor, factor: float) -> Tensor:
    """``loss`` unchanged in value, its gradient multiplied by ``factor``."""
    return loss * factor + (loss * (1.0 - factor)).detach()


def distillation_kl(queries: Tensor, documents: list[Tensor], teacher_scores: Tensor, scale: float) -> Tensor:
    """KL(teacher || student) over each query's own group, teacher softmax over its raw scores."""
    student = F.log_softmax(group_scores(queries, documents) * scale, dim=-1)
    teacher = F.softmax(teacher_scores.to(student.dtype), dim=-1)
    return F.kl_div(student, teacher, reduction="batchmean")


class LensInfoNCELoss(CachedLossMixin, nn.Module):
    """InfoNCE (+ optional distillation) for sentence-transformers' trainer.

    Inputs are the columns ``query, positive, negative_1 .. negative_{G-1}`` and optional teacher
    ``scores`` ([B, G]) as labels. ``mini_batch_size`` turns on gradient caching: embeddings are
    computed in chunks without graphs, the loss is taken over the full batch, and the chunks are
    re-embedded with gradients, so batch size is bounded by compute, not memory.
    """

    def __init__(
        self,
        model: nn.Module,
        temperature: float = DEFAULT_TEMPERATURE,
        in_batch_negatives: bool = True,
        gather_across_devices: bool = False,
        mini_batch_size: int | None = None,
        distill_weight: float = 1.0,
        gathered_gradient_scale: float = 1.0,
        show_progress_bar: bool = False,
    ) -> None:
        """
        Args:
            model: the sentence-transformers model being trained.
            temperature: InfoNCE temperature (the paper's 0.02).
            in_batch_negatives: other queries' documents are negatives too.
            gather_across_devices: with in-batch negatives, every process's documents join.
            mini_batch_size: embed in chunks of this size (gradient caching); None embeds at once.
            distill_weight: weight of the KL term when a batch carries teacher scores.
            gathered_gradient_scale: factor on the gradient (not the value) of a gathered loss; the
                authors' code yields the global loss divided by the number of devices.
            show_progress_bar: progress bar over mini-batches.
        """
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if mini_batch_size is not None and mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be a positive integer or None, got {mini_batch_size}")
        self.model = model
        self.temperature = temperature
        self.in_batch_negatives = in_batch_negatives
        self.gather_across_devices = gather_across_devices
        self.mini_batch_size = mini_batch_size
        self.distill_weight = distill_weight
        self.gathered_gradient_scale = gathered_gradient_scale
        self.show_progress_bar = show_progress_bar
        # Tells sentence-transformers whether this instance defers its backward to a hook.
        self.uses_gradient_cache = mini_batch_size is not None

    @property
    def scale(self) -> float:
        """``1 / temperature`` (50 for the paper's 0.02)."""
        return 1.0 / self.temperature

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """The loss from per-column embeddings ``[query, positive, negatives...]``."""
        if len(embeddings) < 2:
            raise ValueError(
                f"expected a query and at least one document column, got {len(embeddings)} columns"
            )
        # LENS embeddings arrive normalised already; normalising again is a no-op there and makes
        # the loss well defined for any model (e.g. a dense baseline without a Normalize module).
        embeddings = [F.normalize(embedding, dim=-1) for embedding in embeddings]
        queries, documents = embeddings[0], embeddings[1:]
        loss = info_nce(queries, documents, self.scale, self.in_batch_negatives, self.gather_across_devices)
        if labels is not None and self.distill_weight > 0:
            loss = loss + self.distill_weight * distillation_kl(queries, documents, labels, self.scale)
        if self.gather_across_devices and self.in_batch_negatives and self.gathered_gradient_scale != 1.0:
            loss = scale_gradient(loss, self.gathered_gradient_scale)
        return loss

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """GradCache hook: join the mini-batch embeddings and take the full-batch loss."""
        loss = self.compute_loss_from_embeddings([torch.cat(column) for column in reps], labels)
        if with_backward:
            loss.backward()
            loss = loss.detach()
        return loss

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        features = list(sentence_features)
        if self.mini_batch_size is not None:
            return self.forward_cached(features, labels)
        return self.compute_loss_from_embeddings(embed_columns(self.model, features), labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "in_batch_negatives": self.in_batch_negatives,
            "gather_across_devices": self.gather_across_devices,
            "mini_batch_size": self.mini_batch_size,
            "distill_weight": self.distill_weight,
            "gathered_gradient_scale": self.gathered_gradient_scale,
        }

    @property
    def citation(self) -> str:
        return LENS_CITATION


def lexicon_part(embeddings: Tensor, n_clusters: int) -> Tensor:
    """The first K columns of LENS embeddings, L2-normalised (a no-op up to rounding for a lexicon-only
    model; a hybrid's dense part is left out)."""
    if embeddings.shape[-1] < n_clusters:
        raise ValueError(
            f"embeddings of dimension {embeddings.shape[-1]} have no {n_clusters} lexicon dimensions"
        )
    return F.normalize(embeddings[:, :n_clusters], p=2, dim=-1)


def normalized_l1(vectors: Tensor) -> Tensor:
    """Mean over rows of the L1 norm of each row L2-normalised: 1 for a one-hot row, sqrt(K) for a flat one.

    A sparsity measure that, unlike FLOPS on unit vectors (the batch's mean pairwise cosine), acts on each
    vector alone and cannot fall by spreading texts apart; being scale-invariant, it cannot fall by
    shrinking the un-normalised ``log1p(relu)`` weights either. A zero row counts 0.
    """
    return F.normalize(vectors, p=2, dim=-1).abs().sum(dim=-1).mean()


def soft_count(vectors: Tensor, epsilon: float) -> Tensor:
    """Mean over rows of ``sum_j u_j / (u_j + epsilon)``, ``u`` the row L2-normalised (non-negative, as LENS
    weights are): a smooth count of the active dimensions, ``1 / (1 + epsilon)`` for a one-hot row, about n
    for n equal weights far above ``epsilon``, 0 for a zero row.

    Why beside :func:`normalized_l1`: under a per-position top-k a text's size is how many clusters its
    positions pick, and most of them hold small weights, which the L1 norm hardly sees. Here a weight near 0
    costs ``1 / epsilon`` per unit, a large one almost nothing, so the gradient pushes the small tail below
    the ``relu`` (out of the vector) and leaves the weights that carry the score alone. Scale-invariant too.
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    unit = F.normalize(vectors, p=2, dim=-1).abs()
    return (unit / (unit + epsilon)).sum(dim=-1).mean()


class LexiconL1Loss(nn.Module):
    """A LENS loss plus a scale-invariant per-vector sparsity term on the lexicon part of each side, as
    ``SpladeLoss`` splits columns: the first is the queries, every other one documents. The term is
    :func:`normalized_l1` (``term="l1"``) or :func:`soft_count` (``term="count"``, at ``epsilon``).

    ``compute_loss_from_embeddings`` returns ``base_loss``, ``document_l1_loss`` and ``query_l1_loss``
    (weighted, whichever the term), which ``SpladeLoss`` passes on as loss components, and keeps the
    unweighted terms for the training logs (:meth:`take_l1_norms`: ``{side}_l1_norm`` or
    ``{side}_soft_count``).

    Args:
        loss: the LENS loss (embedding at once; the surrounding ``SpladeLoss`` embeds).
        n_clusters: K of the LENS model.
        document_weight: weight of the term on the documents (>= 0; 0 still measures them).
        query_weight: weight of the term on the queries (>= 0).
        term: ``"l1"`` or ``"count"``.
        epsilon: the count's scale (> 0; unused by ``"l1"``).
    """

    def __init__(
        self,
        loss: LensInfoNCELoss,
        n_clusters: int,
        document_weight: float,
        query_weight: float,
        term: str = "l1",
        epsilon: float = DEFAULT_COUNT_EPSILON,
    ) -> None:
        super().__init__()
        if min(document_weight, query_weight) < 0:
            raise ValueError(
                f"sparsity term weights must be >= 0, got document {document_weight}, query {query_weight}"
            )
        if term not in SPARSITY_TERMS:
            raise ValueError(f"term must be one of {SPARSITY_TERMS}, got {term!r}")
        if epsilon <= 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        self.loss = loss
        self.model = loss.model
        self.n_clusters = n_clusters
        self.document_weight = document_weight
        self.query_weight = query_weight
        self.term = term
        self.epsilon = epsilon
        self.l1_norms: dict[str, Tensor] = {}

    def measure(self, embeddings: Tensor) -> Tensor:
        """The term of these embeddings' lexicon part."""
        lexicon = lexicon_part(embeddings, self.n_clusters)
        return normalized_l1(lexicon) if self.term == "l1" else soft_count(lexicon, self.epsilon)

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None = None
    ) -> dict[str, Tensor]:
        base = self.loss.compute_loss_from_embeddings(embeddings, labels)
        query = self.measure(embeddings[0])
        documents = self.measure(torch.cat(embeddings[1:]))
        name = "l1_norm" if self.term == "l1" else "soft_count"
        self.l1_norms = {f"query_{name}": query.detach(), f"document_{name}": documents.detach()}
        return {
            "base_loss": base,
            "document_l1_loss": documents * self.document_weight,
            "query_l1_loss": query * self.query_weight,
        }

    def take_l1_norms(self) -> dict[str, Tensor]:
        """The unweighted terms of the last call (``query_l1_norm`` and ``document_l1_norm``, or
        ``..._soft_count``), then forgotten."""
        norms, self.l1_norms = self.l1_norms, {}
        return norms

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **self.loss.get_config_dict(),
            "document_l1_weight": self.document_weight,
            "query_l1_weight": self.query_weight,
            **({"sparsity_term": "count", "count_epsilon": self.epsilon} if self.term == "count" else {}),
        }

    @property
    def citation(self) -> str:
        return LENS_CITATION


class LexiconFlopsLoss(FlopsLoss):
    """sentence-transformers' ``FlopsLoss`` (SPLADE's FLOPS regulariser: the sum over dimensions of the
    squared mean activation over the batch) on the L2-normalised lexicon part of LENS embeddings.

    Which tensor: the lexicon part *after* L2 normalisation (for a hybrid, its first K columns,
    normalised again; its dense part is never regularised). The LENS loss compares cosines, so it leaves
    the scale of the un-normalised ``log1p(relu(.))`` vector free; FLOPS on that vector could fall by
    shrinking every weight towards zero without zeroing any, measuring scale rather than sparsity. On
    unit vectors with non-negative weights the term is ``||mean||^2``, the batch's mean pairwise cosine
    (self-pairs included): the support-overlap cost the FLOPS paper relaxes, which can only fall by
    giving texts fewer shared active dimensions, i.e. by sparsity. It lies in ``[1/n, 1]`` for the
    ``n`` rows it sees, and it acts on the vectors the index stores and ``--max-active-dims`` prunes.

    It also keeps the mean number of active (non-zero) lexicon dimensions of the rows it last saw, for
    the training logs (:meth:`take_active_dims`).

    Args:
        model: the model being trained (kept, as ``FlopsLoss`` does).
        n_clusters: K, the number of lexicon dimensions (the first K columns of an embedding).
        threshold: as ``FlopsLoss``: only rows with more active dimensions than this count (None: all).
    """

    def __init__(self, model: nn.Module, n_clusters: int, threshold: float | None = None) -> None:
        super().__init__(model, threshold=threshold)
        if n_clusters < 1:
            raise ValueError(f"n_clusters must be positive, got {n_clusters}")
        self.n_clusters = n_clusters
        self.active_dims: Tensor | None = None

    def compute_loss_from_embeddings(self, embeddings: Tensor) -> Tensor:
        lexicon = lexicon_part(embeddings, self.n_clusters)
        self.active_dims = (lexicon != 0).sum(dim=-1).float().mean().detach()
        return super().compute_loss_from_embeddings(lexicon)

    def take_active_dims(self) -> Tensor | None:
        """The mean active dimensions measured since the last call (None if none), then forgotten."""
        active, self.active_dims = self.active_dims, None
        return active

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "n_clusters": self.n_clusters}


def sparsity_regularized(
    loss: LensInfoNCELoss,
    n_clusters: int,
    document_regularizer_weight: float,
    query_regularizer_weight: float,
    mini_batch_size: int | None = None,
    document_l1_weight: float = 0.0,
    query_l1_weight: float = 0.0,
    sparsity_term: str = "l1",
    count_epsilon: float = DEFAULT_COUNT_EPSILON,
) -> SpladeLoss:
    """The LENS loss plus SPLADE's FLOPS regularisers: sentence-transformers' ``SpladeLoss`` (or, with
    ``mini_batch_size``, its ``CachedSpladeLoss``, so gradient caching covers both terms) around ``loss``
    (around :class:`LexiconL1Loss` of it when an L1 weight is above 0).

    As there, the first column is the query and every other column (positive, negatives) a document;
    each regulariser acts on this process's own embeddings (never gathered), while ``loss`` gathers
    negatives across devices as usual. The result is a dict (``base_loss``, ``document_regularizer_loss``,
    ``query_regularizer_loss``, the last two already weighted), which the trainer sums and logs.

    Args:
        loss: the LENS loss; it must not cache gradients itself (the wrapper embeds).
        n_clusters: K of the LENS model.
        document_regularizer_weight: weight of FLOPS on the documents (>= 0).
        query_regularizer_weight: weight of FLOPS on the queries (>= 0; 0 still measures them).
        mini_batch_size: gradient caching's chunk size (None: embed at once).
        document_l1_weight: weight of the scale-invariant sparsity term on the documents (>= 0).
        query_l1_weight: weight of the scale-invariant sparsity term on the queries (>= 0).
        sparsity_term: that term: ``"l1"`` (:func:`normalized_l1`) or ``"count"`` (:func:`soft_count`).
        count_epsilon: the count's scale.
    """
    if loss.mini_batch_size is not None:
        raise ValueError(
            "the wrapped LENS loss must embed at once: give mini_batch_size to sparsity_regularized"
        )
    if min(document_regularizer_weight, query_regularizer_weight) < 0:
        raise ValueError(
            "regulariser weights must be >= 0, got "
            f"document {document_regularizer_weight}, query {query_regularizer_weight}"
        )
    options: dict[str, Any] = {
        "model": loss.model,
        "loss": (
            LexiconL1Loss(loss, n_clusters, document_l1_weight, query_l1_weight, sparsity_term, count_epsilon)
            if document_l1_weight > 0 or query_l1_weight > 0
            else loss
        ),
        "document_regularizer_weight": document_regularizer_weight,
        "query_regularizer_weight": query_regularizer_weight,
        "document_regularizer": LexiconFlopsLoss(loss.model, n_clusters),
        "query_regularizer": LexiconFlopsLoss(loss.model, n_clusters),
    }
    if mini_batch_size is None:
        return SpladeLoss(**options)
    return CachedSpladeLoss(**options, mini_batch_size=mini_batch_size)
