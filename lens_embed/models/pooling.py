"""LENS lexicon pooling: which positions are pooled, and the chunked masked max.

The paper's embedding of a text is

    e = max_{i in pooled} log(1 + relu(h_i @ C^T)),    then e / ||e||

with ``h_i`` the last hidden state at position ``i`` and ``C`` the [K, H] centroid matrix.
``log1p(relu(.))`` is monotone, so the max is taken on raw logits and the activation applied
to the [batch, K] result; only pooled positions are multiplied, and the logits are never held
beyond one bounded chunk of rows. Sparse LENS (``position_top_k`` = k) keeps each pooled position's k
largest logits before the max (:func:`keep_top_k`), so a text has at most k active clusters per position
and at most k x positions in all. :func:`keep_max_active_dims` prunes a finished vector to its N
largest lexicon weights (``--max-active-dims``), the one pruning used at encode, index and search time.
"""

from __future__ import annotations

from collections.abc import Iterator
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

# Upper bound on elements of one [rows, K] logits chunk (64M floats = 256 MiB in fp32).
MAX_CHUNK_ELEMENTS = 1 << 26


def query_start(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    query_token_id: int | None,
    query_marker: torch.Tensor,
) -> torch.Tensor:
    """[batch, 1] rank (among real tokens) of the ``<query>`` token that opens each query's text; -1 for
    documents.

    Args:
        input_ids: [batch, seq] token ids.
        attention_mask: [batch, seq], 1 on real tokens.
        query_token_id: the id of ``<query>``.
        query_marker: [batch]; 0 for a document, ``n >= 1`` for a query whose text follows its n-th
            ``<query>`` token (the prompt's last one), so a ``<query>`` typed inside the text is text.
    """
    marker = query_marker.to(input_ids.device).long().unsqueeze(1)
    if query_token_id is None:
        if bool((marker > 0).any()):
            raise ValueError("this LENS head has no <query> token id, so it cannot pool queries")
        return torch.full_like(marker, -1)
    real = attention_mask.bool()
    rank = real.long().cumsum(dim=1) - 1
    is_marker = (input_ids == query_token_id) & real
    opens = is_marker & (is_marker.long().cumsum(dim=1) == marker) & (marker > 0)
    missing = (marker.squeeze(1) > 0) & ~opens.any(dim=1)
    if bool(missing.any()):
        row = int(missing.nonzero()[0])
        raise ValueError(
            f"query in row {row} has no <query> token #{int(marker[row])}: a LENS query reads "
            "'<instruct>{instruction}\\n<query>{text}' (was its prompt cut off by max_seq_length?)"
        )
    return torch.where(opens, rank, torch.full_like(rank, -1)).max(dim=1, keepdim=True).values


def pooling_mask(
    attention_mask: torch.Tensor, query_rank: torch.Tensor, next_token_outputs: bool
) -> torch.Tensor:
    """Boolean [batch, seq] mask of the positions whose outputs are pooled.

    Positions are counted among real tokens (``rank``), so the mask does not depend on the
    padding side or on the other texts of the batch.

    * Decoders (``next_token_outputs``): the output at position i stands for token i+1, so a
      document pools every real position except the last two (last text token, EOS); BOS is
      pooled. A query pools from its ``<query>`` token up to the same end: the instruction is excluded.
    * Encoders: every real token stands for itself (SPLADE-style); a query pools the tokens
      after its ``<query>`` token.

    Args:
        attention_mask: [batch, seq], 1 on real tokens.
        query_rank: [batch, 1] from :func:`query_start`: the rank of a query's ``<query>`` token, -1 for
            documents.
        next_token_outputs: whether the backbone is a decoder (outputs predict the next token).
    """
    real = attention_mask.bool()
    rank = real.long().cumsum(dim=1) - 1
    length = real.long().sum(dim=1, keepdim=True)
    is_query = query_rank >= 0
    start = torch.where(
        is_query, query_rank if next_token_outputs else query_rank + 1, torch.zeros_like(query_rank)
    )
    end = length - 2 if next_token_outputs else length
    return real & (rank >= start) & (rank < end)


def checked_position_top_k(position_top_k: int | None) -> int | None:
    """``position_top_k`` as an int (or None: off), refused (ValueError) unless None or a positive integer."""
    if position_top_k is None:
        return None
    if isinstance(position_top_k, bool) or not isinstance(position_top_k, Integral) or position_top_k < 1:
        raise ValueError(f"position_top_k must be a positive integer or None (off), got {position_top_k!r}")
    return int(position_top_k)


def largest(values: torch.Tensor, n: int) -> torch.Tensor:
    """Boolean mask of each row's ``n`` largest values (``values`` [rows, width], n < width); ties at the
    n-th value keep the lowest columns, so exactly n per row whatever the kernel's ``topk`` order."""
    threshold = values.topk(n, dim=1).values[:, -1:]  # the n-th largest value per row
    keep = values >= threshold
    if bool((keep.sum(dim=1) > n).any()):  # ties at the threshold: only as many as still fit
        above = values > threshold
        tied = values == threshold
        room = n - above.sum(dim=1, keepdim=True)
        keep = above | (tied & (tied.long().cumsum(dim=1) <= room))
    return keep


def keep_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Each row of ``logits`` [rows, K] keeps its ``k`` largest values (:func:`largest`); the others become
    -inf, so the max over positions never picks them and ``log1p(relu)`` maps them to 0.

    Without gradients the chunk is masked in place. With gradients (:class:`KeepTopK`) the gradient reaches
    the kept logits only (the selection itself is piecewise constant), and autograd keeps just their
    [rows, k] column indices, never the chunk.
    """
    if k >= logits.shape[1]:
        return logits
    if logits.requires_grad and torch.is_grad_enabled():
        return KeepTopK.apply(logits, k)
    return logits.masked_fill_(~largest(logits, k), float("-inf"))


class KeepTopK(torch.autograd.Function):
    """:func:`keep_top_k` under autograd, saving only the kept columns: ``masked_fill``, ``where`` or
    ``gather`` would each keep a [rows, K] tensor of the chunk alive until the backward pass."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, k: int) -> torch.Tensor:
        kept = largest(logits, k)
        ctx.save_for_backward(kept.nonzero()[:, 1].view(-1, k))  # row-major: each row's k columns
        return logits.masked_fill(~kept, float("-inf"))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (columns,) = ctx.saved_tensors
        return torch.zeros_like(grad).scatter_(1, columns, grad.gather(1, columns)), None


def _pooled_chunks(
    hidden: torch.Tensor, mask: torch.Tensor, n_clusters: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(rows, text of each row)`` of the pooled positions, text after text, in chunks whose [rows, K]
    logits hold at most ``MAX_CHUNK_ELEMENTS``; a text may be split across chunks."""
    pooled = mask.bool()
    rows = hidden[pooled]
    text_of_row = pooled.nonzero()[:, 0]
    step = max(1, MAX_CHUNK_ELEMENTS // max(1, n_clusters))
    for begin in range(0, rows.shape[0], step):
        yield rows[begin : begin + step], text_of_row[begin : begin + step]


def _segments(rows: torch.Tensor, texts: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """``(text, its rows)`` of one chunk (rows come text after text)."""
    ids, counts = texts.unique_consecutive(return_counts=True)
    yield from zip(ids.tolist(), rows.split(counts.tolist()), strict=True)


def masked_max_logits(
    hidden: torch.Tensor, centroids: torch.Tensor, mask: torch.Tensor, position_top_k: int | None = None
) -> torch.Tensor:
    """Max over masked positions of ``hidden @ centroids^T``; -inf where nothing is pooled.

    Only the pooled positions are multiplied (padding and a query's instruction cost nothing), as one
    [rows, K] product per chunk of at most ``MAX_CHUNK_ELEMENTS`` logits: no [batch, seq, K] block and
    no mask pass over the logits. With ``position_top_k`` = k each position first keeps its k largest
    logits (:func:`keep_top_k`, chunk by chunk), so a text has at most k active clusters per position. Without
    gradients each chunk is reduced into its texts' rows with one ``scatter_reduce``. With gradients each
    text's rows are reduced by ``max(dim=0)``, which keeps only argmax indices for autograd (``amax`` and
    ``scatter_reduce`` would keep every chunk's logits alive), so training holds O(batch x K) too.
    """
    n_clusters = centroids.shape[0]
    centroids_t = centroids.to(hidden.dtype).T
    tracked = hidden.requires_grad and torch.is_grad_enabled()
    best = hidden.new_full((hidden.shape[0], n_clusters), float("-inf"))
    pieces: list[list[torch.Tensor]] = [[] for _ in range(hidden.shape[0])]
    for rows, texts in _pooled_chunks(hidden, mask, n_clusters):
        logits = rows @ centroids_t
        if position_top_k is not None:
            logits = keep_top_k(logits, position_top_k)
        if tracked:
            for text, segment in _segments(logits, texts):
                pieces[text].append(segment.max(dim=0).values)
        else:
            best.scatter_reduce_(0, texts.unsqueeze(1).expand_as(logits), logits, "amax")
        del logits  # free this chunk before the next one is allocated
    if not tracked:
        return best
    return torch.stack([_max_of(parts) if parts else best[text] for text, parts in enumerate(pieces)])


def _max_of(parts: list[torch.Tensor]) -> torch.Tensor:
    """Elementwise max of one text's per-chunk maxima (usually just one), keeping argmax indices only."""
    return parts[0] if len(parts) == 1 else torch.stack(parts).max(dim=0).values


def lexicon_activation(max_logits: torch.Tensor) -> torch.Tensor:
    """log(1 + relu(x)): non-negative lexicon weights; -inf (nothing pooled) becomes 0."""
    return torch.log1p(torch.relu(max_logits))


def soft_top_k_max(rows: torch.Tensor, centroids_t: torch.Tensor, k: int, temperature: float) -> torch.Tensor:
    """[K] max over ``rows`` of ``log1p(relu(z)) * sigmoid((z - t) / temperature)``, ``z`` a row's logits and
    ``t`` its (detached) midpoint between the k-th and (k+1)-th largest: the top-k mask relaxed, which
    tends to the hard top-k pooling as the temperature goes to 0."""
    logits = rows @ centroids_t
    if k >= logits.shape[1]:
        return lexicon_activation(logits).max(dim=0).values
    top = logits.detach().topk(k + 1, dim=1).values
    threshold = (top[:, k - 1 : k] + top[:, k : k + 1]) / 2
    weights = torch.sigmoid((logits - threshold) / temperature)
    return (lexicon_activation(logits) * weights).max(dim=0).values


def straight_through_top_k(
    hidden: torch.Tensor, centroids: torch.Tensor, mask: torch.Tensor, k: int, temperature: float
) -> torch.Tensor:
    """The per-position top-k LENS vector [batch, K] with a straight-through gradient: the value is exactly
    the hard pooling's (:func:`masked_max_logits` with ``position_top_k`` = k, then ``log1p(relu)``), the
    gradient is that of the relaxed pooling (:func:`soft_top_k_max`).

    Why: the hard selection is piecewise constant, so a cluster outside a position's top k gets no gradient
    there, even when the loss would want it in; the relaxation gives the clusters near the k-th logit a
    gradient that says whether to enter or leave, while training still sees the exact vectors it will
    serve. Each (chunk, text) piece is recomputed in the backward pass (``torch.utils.checkpoint``), so
    memory stays O(batch x K) plus one chunk, as in the hard pooling.
    """
    with torch.no_grad():
        hard = lexicon_activation(masked_max_logits(hidden, centroids, mask, k).float())
    centroids_t = centroids.to(hidden.dtype).T
    pieces: list[list[torch.Tensor]] = [[] for _ in range(hidden.shape[0])]
    for rows, texts in _pooled_chunks(hidden, mask, centroids.shape[0]):
        for text, segment in _segments(rows, texts):
            pieces[text].append(
                checkpoint(soft_top_k_max, segment, centroids_t, k, temperature, use_reentrant=False)
            )
    zeros = hard.new_zeros(hard.shape[1])
    soft = torch.stack([_max_of(parts).float() if parts else zeros for parts in pieces])
    return (soft - soft.detach()) + hard  # exactly the hard values; the gradient of the soft ones


def lexicon_embedding(
    hidden: torch.Tensor,
    centroids: torch.Tensor,
    mask: torch.Tensor,
    position_top_k: int | None = None,
    topk_temperature: float | None = None,
) -> torch.Tensor:
    """The un-normalised LENS vector [batch, K], computed in float32 after the max.

    ``position_top_k``: each pooled position keeps only its k largest cluster logits before the max (None:
    every logit, the paper's pooling). ``topk_temperature`` (training only): with gradients, the top-k's
    straight-through gradient (:func:`straight_through_top_k`); None passes the gradient through the kept
    logits only. Values never depend on it.
    """
    if position_top_k is not None and topk_temperature is not None and torch.is_grad_enabled():
        if hidden.requires_grad:
            return straight_through_top_k(hidden, centroids, mask, position_top_k, topk_temperature)
    return lexicon_activation(masked_max_logits(hidden, centroids, mask, position_top_k).float())


def dense_embedding(
    hidden: torch.Tensor, mask: torch.Tensor, attention_mask: torch.Tensor, mode: str
) -> torch.Tensor:
    """The hybrid's dense part: mean of the pooled positions, or the last real token (EOS)."""
    if mode == "mean":
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        summed = (hidden * weights).sum(dim=1).float()
        return summed / weights.sum(dim=1).float().clamp(min=1.0)
    if mode == "last":
        rank = attention_mask.long().cumsum(dim=1) - 1
        length = attention_mask.long().sum(dim=1, keepdim=True)
        is_last = (rank == length - 1) & attention_mask.bool()
        return (hidden * is_last.to(hidden.dtype).unsqueeze(-1)).sum(dim=1).float()
    raise ValueError(f"unknown dense pooling mode {mode!r}; expected 'mean' or 'last'")


def checked_max_active_dims(max_active_dims: int) -> int:
    """``max_active_dims`` as an int, refused (ValueError) unless a positive integer."""
    if isinstance(max_active_dims, bool) or not isinstance(max_active_dims, Integral) or max_active_dims < 1:
        raise ValueError(f"max_active_dims must be a positive integer, got {max_active_dims!r}")
    return int(max_active_dims)


def keep_max_active_dims(
    embeddings: torch.Tensor | np.ndarray, max_active_dims: int, lexicon_dims: int | None = None
) -> torch.Tensor | np.ndarray:
    """A copy of ``embeddings`` [n, dim] keeping only each row's ``max_active_dims`` largest-magnitude
    lexicon dimensions; every other lexicon dimension becomes 0.

    The one pruning of a LENS vector, at encode time and in the engine (index and search), so a pruned
    vector is the same wherever it was pruned. Ties at the N-th magnitude keep the lowest indices, so
    exactly ``min(N, lexicon_dims)`` dimensions survive. Only the first ``lexicon_dims`` columns (K) are
    pruned: a hybrid's dense part (columns K onwards) is kept whole, since it is dense by construction and
    was never trained to be sparse; None prunes every column (a model without a lexicon part). The
    result is not re-normalised: a pruned vector is the model's unit vector with its smallest weights
    dropped, so a score against it is the unpruned score minus the dropped terms. Same type (numpy or
    torch), dtype and device as the input. (sentence-transformers' ``select_max_active_dims`` is not used:
    its ``topk`` leaves the order among ties unspecified, and it prunes every column.)
    """
    max_active_dims = checked_max_active_dims(max_active_dims)
    as_numpy = isinstance(embeddings, np.ndarray)
    pruned = (
        torch.from_numpy(np.array(embeddings)) if as_numpy else embeddings.detach().clone()
    )  # a copy either way
    if pruned.ndim != 2:
        raise ValueError(f"expected a [n, dim] matrix of embeddings, got shape {tuple(pruned.shape)}")
    width = pruned.shape[1] if lexicon_dims is None else lexicon_dims
    if not 0 < width <= pruned.shape[1]:
        raise ValueError(
            f"lexicon_dims {lexicon_dims} does not fit embeddings of dimension {pruned.shape[1]}"
        )
    if max_active_dims < width and pruned.shape[0] > 0:
        keep = largest(pruned[:, :width].abs(), max_active_dims)
        pruned[:, :width].masked_fill_(~keep, 0)
    return pruned.numpy() if as_numpy else pruned
