"""LENS lexicon pooling: which positions are pooled, and the chunked masked max.

The paper's embedding of a text is

    e = max_{i in pooled} log(1 + relu(h_i @ C^T)),    then e / ||e||

with ``h_i`` the last hidden state at position ``i`` and ``C`` the [K, H] centroid matrix.
``log1p(relu(.))`` is monotone, so the max is taken on raw logits and the activation applied
to the [batch, K] result; only pooled positions are multiplied, and the logits are never held
beyond one bounded chunk of rows. :func:`keep_max_active_dims` prunes a finished vector to its N
largest lexicon weights (``--max-active-dims``), the one pruning used at encode, index and search time.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch

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


def masked_max_logits(hidden: torch.Tensor, centroids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over masked positions of ``hidden @ centroids^T``; -inf where nothing is pooled.

    Only the pooled positions are multiplied (padding and a query's instruction cost nothing), as one
    [rows, K] product per chunk of at most ``MAX_CHUNK_ELEMENTS`` logits: no [batch, seq, K] block and
    no mask pass over the logits. Without gradients each chunk is reduced into its texts' rows with one
    ``scatter_reduce``. With gradients each text's rows are reduced by ``max(dim=0)``, which keeps only
    argmax indices for autograd (``amax`` and ``scatter_reduce`` would keep every chunk's logits alive),
    so training holds O(batch x K) too.
    """
    n_clusters = centroids.shape[0]
    centroids_t = centroids.to(hidden.dtype).T
    pooled = mask.bool()
    rows = hidden[pooled]  # the pooled positions, text after text
    text_of_row = pooled.nonzero()[:, 0]
    step = max(1, MAX_CHUNK_ELEMENTS // max(1, n_clusters))
    best = hidden.new_full((hidden.shape[0], n_clusters), float("-inf"))
    pieces: list[list[torch.Tensor]] = [[] for _ in range(hidden.shape[0])]
    for begin in range(0, rows.shape[0], step):
        logits = rows[begin : begin + step] @ centroids_t
        texts = text_of_row[begin : begin + step]
        if rows.requires_grad:
            ids, counts = texts.unique_consecutive(return_counts=True)
            for text, segment in zip(ids.tolist(), logits.split(counts.tolist()), strict=True):
                pieces[text].append(segment.max(dim=0).values)
        else:
            best.scatter_reduce_(0, texts.unsqueeze(1).expand_as(logits), logits, "amax")
        del logits  # free this chunk before the next one is allocated
    if not rows.requires_grad:
        return best
    return torch.stack([_max_of(parts) if parts else best[text] for text, parts in enumerate(pieces)])


def _max_of(parts: list[torch.Tensor]) -> torch.Tensor:
    """Elementwise max of one text's per-chunk maxima (usually just one), keeping argmax indices only."""
    return parts[0] if len(parts) == 1 else torch.stack(parts).max(dim=0).values


def lexicon_activation(max_logits: torch.Tensor) -> torch.Tensor:
    """log(1 + relu(x)): non-negative lexicon weights; -inf (nothing pooled) becomes 0."""
    return torch.log1p(torch.relu(max_logits))


def lexicon_embedding(hidden: torch.Tensor, centroids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The un-normalised LENS vector [batch, K], computed in float32 after the max."""
    return lexicon_activation(masked_max_logits(hidden, centroids, mask).float())


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
        magnitude = pruned[:, :width].abs()
        threshold = magnitude.topk(max_active_dims, dim=1).values[
            :, -1:
        ]  # the N-th largest magnitude per row
        above = magnitude > threshold
        tied = magnitude == threshold
        room = max_active_dims - above.sum(dim=1, keepdim=True)  # how many tied dimensions still fit
        keep = above | (tied & (tied.long().cumsum(dim=1) <= room))
        pruned[:, :width].masked_fill_(~keep, 0)
    return pruned.numpy() if as_numpy else pruned
