"""Making LENS models: the backbone, the clustered head, the assembled sentence-transformers model.

Sits above :mod:`lens_embed.models.model` (the LENS model class it assembles), below
:mod:`lens_embed.models.convert` (which makes one from a released checkpoint instead of a clustering, and
reuses the assembly and the staged save) and below :mod:`lens_embed.models.loading`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoConfig

from lens_embed.base.defaults import DEFAULT_CLUSTERS, DEFAULT_MAX_SEQ_LENGTH
from lens_embed.base.prompts import QUERY_TOKEN, default_prompts
from lens_embed.base.storage import (
    atomic_write,
    check_writable,
    give_usual_modes,
    refuse_overlap,
    staged_directory,
)
from lens_embed.models.backbone import (
    backbone_kwargs,
    is_decoder_config,
    make_bidirectional,
    prepare_tokenizer,
    resize_embeddings,
    vocabulary_matrix,
)
from lens_embed.models.clustering import kmeans_vocabulary, validate_n_clusters
from lens_embed.models.model import LensSentenceTransformer
from lens_embed.models.pooling import checked_position_top_k
from lens_embed.models.portable import make_portable
from lens_embed.models.safety import Manifest
from lens_embed.modules import LensTransformer, LexiconPooling

logger = logging.getLogger(__name__)


def assemble_lens_model(
    transformer: LensTransformer, pooling: LexiconPooling, device: str | None = None
) -> LensSentenceTransformer:
    """Wrap the two modules with the LENS prompts (query/document plus named instructions) and cosine."""
    return LensSentenceTransformer(
        modules=[transformer, pooling], prompts=default_prompts(), similarity_fn_name="cosine", device=device
    )


def ensure_output_dir(output_dir: str | Path, overwrite: bool, source: str | Path | None = None) -> None:
    """Refuse to write over a non-empty directory unless asked: saved work is never lost silently.

    With ``source`` (the model the output is made from), an output that is the source, lies inside
    it or holds it is refused too: replacing it would delete or damage the source. A file, a path under
    a file or a place this process cannot write in is refused (:func:`check_writable`).
    """
    path = Path(output_dir)
    if source is not None:
        refuse_overlap(path, "the output", source, "the model it is made from")
    check_writable(path, "the output", folder=True)
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output directory {path} is not empty; pass overwrite=True (--overwrite) to replace it"
        )


def save_staged(
    model: SentenceTransformer,
    output_dir: str | Path,
    overwrite: bool,
    check: Callable[[Path], None] | None = None,
) -> None:
    """Save ``model`` to ``output_dir`` through a staging folder renamed into place
    (:func:`staged_directory`).

    An interruption leaves ``output_dir`` as it was (absent, or the previous model whole); every
    file gets the usual mode; ``check(staging)`` may refuse the written folder before it is put in place.
    """
    with staged_directory(output_dir, replace=overwrite) as staging:
        model.save(str(staging))
        give_usual_modes(staging)
        if check is not None:
            check(staging)


def load_backbone(
    model_name_or_path: str | Path,
    *,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    attn_implementation: str | None = None,
    dtype: str | torch.dtype | None = None,
) -> tuple[LensTransformer, bool]:
    """The backbone as a sentence-transformers input module, bidirectional if it is a decoder."""
    model_kwargs = backbone_kwargs(dtype=dtype, attn_implementation=attn_implementation)
    path = str(model_name_or_path)
    config = AutoConfig.from_pretrained(path)
    decoder = is_decoder_config(config)
    config_kwargs = {"is_causal": False, "use_cache": False} if decoder else {}
    transformer = LensTransformer(
        path, model_kwargs=model_kwargs, config_kwargs=config_kwargs, max_seq_length=max_seq_length
    )
    if decoder:
        make_bidirectional(transformer.auto_model.config)
    return transformer, decoder


def build_lens_model(
    base_model: str | Path,
    n_clusters: int = DEFAULT_CLUSTERS,
    output_dir: str | Path | None = None,
    *,
    dense_pooling: str | None = None,
    dense_weight: float = 1.0,
    seed: int = 0,
    kmeans_iterations: int = 20,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    attn_implementation: str | None = None,
    dtype: str | torch.dtype | None = None,
    device: str | None = None,
    overwrite: bool = False,
    position_top_k: int | None = None,
) -> LensSentenceTransformer:
    """Turn a decoder LLM (or a BERT-style encoder) into a LENS model.

    Clusters the vocabulary matrix into ``n_clusters`` centroids that become the frozen head,
    prepares the tokenizer (special tokens, pad, one EOS), and saves to ``output_dir`` if given.

    Args:
        base_model: Local folder or hub id of a transformers causal LM (Mistral, Llama, Qwen2...)
            or BERT-style encoder.
        n_clusters: K, the number of centroids = output dimensions; 1 < K < vocabulary size.
        output_dir: Where to save the model (an empty or absent folder, apart from ``base_model``); None
            keeps it in memory only. The model is staged beside it and renamed into place.
        dense_pooling: None for pure LENS, or "mean" / "last" to append a dense part (hybrid).
        dense_weight: Weight of the normalised dense part in the hybrid embedding (>= 0).
        seed: Seed of the KMeans and of the new special-token embedding rows: one seed, one model.
        kmeans_iterations: Lloyd iterations of the vocabulary KMeans.
        max_seq_length: Token limit of the saved model (inputs are truncated, EOS kept).
        attn_implementation: One of :data:`lens_embed.base.defaults.ATTN_IMPLEMENTATIONS`; None for
            transformers' choice.
        dtype: Backbone dtype, one of :data:`lens_embed.base.defaults.DTYPES` or a torch.dtype (transformers'
            name for it); None keeps the checkpoint's.
        device: Device of the returned model (e.g. "cuda"); None lets sentence-transformers choose.
        overwrite: Replace a non-empty ``output_dir`` instead of refusing.
        position_top_k: Sparse LENS: each pooled position keeps its k largest cluster logits before the
            max (saved in the pooling module's config); None: the paper's pooling.

    Returns:
        The LENS model: a :class:`~lens_embed.models.model.LensSentenceTransformer`
        ``[LensTransformer, LexiconPooling]``.
    """
    position_top_k = checked_position_top_k(position_top_k)
    if output_dir is not None:
        ensure_output_dir(output_dir, overwrite, source=base_model)
    transformer, decoder = load_backbone(
        base_model, max_seq_length=max_seq_length, attn_implementation=attn_implementation, dtype=dtype
    )
    backbone = transformer.auto_model
    matrix = vocabulary_matrix(base_model, backbone, decoder)
    validate_n_clusters(n_clusters, matrix.shape[0])
    if matrix.shape[1] != backbone.config.hidden_size:
        raise ValueError(
            f"vocabulary matrix width {matrix.shape[1]} != hidden size {backbone.config.hidden_size}: "
            "this architecture's head does not read the last hidden state"
        )
    if prepare_tokenizer(transformer.tokenizer, decoder=decoder):
        resize_embeddings(backbone, len(transformer.tokenizer), seed)
    logger.info("clustering %d vocabulary rows into %d centroids", matrix.shape[0], n_clusters)
    clustering = kmeans_vocabulary(
        matrix,
        n_clusters,
        n_iter=kmeans_iterations,
        seed=seed,
        device="cuda" if torch.cuda.is_available() else "cpu",
        verbose=logger.isEnabledFor(logging.INFO),
    )
    pooling = LexiconPooling(
        n_clusters=n_clusters,
        hidden_size=backbone.config.hidden_size,
        query_token_id=transformer.tokenizer.convert_tokens_to_ids(QUERY_TOKEN),
        next_token_outputs=decoder,
        dense_pooling=dense_pooling,
        dense_weight=dense_weight,
        vocab_size=matrix.shape[0],
        position_top_k=position_top_k,
    )
    pooling.set_head(clustering.centroids, clustering.assignments)
    model = assemble_lens_model(transformer, pooling, device=device)
    model.record_base_model(base_model)
    if output_dir is not None:
        save_staged(model, output_dir, overwrite)
    return model


def set_position_top_k(folder: str | Path, position_top_k: int | None) -> Path:
    """Set (or, with None, remove) the per-position top-k of a saved LENS folder's pooling module.

    Only the module's ``config.json`` changes, so the folder's content revision and every cache key
    derived from the model change with it (shards, collections and results of another setting are never
    reused). The folder's ``modeling_lens.py`` is written again first, so that sentence-transformers'
    remote-code path honours the setting too; each file is replaced atomically
    (:func:`lens_embed.base.storage.atomic_write`), and a file hard-linked into the model's SparseEncoder
    folder is replaced, not written through.

    Args:
        folder: a LENS model folder, or a LENS model's SparseEncoder folder.
        position_top_k: k (a positive integer), or None for the paper's pooling.

    Returns:
        The pooling module's config file.

    Raises:
        ValueError: a bad ``position_top_k``, or a folder that is not a LENS model.
    """
    position_top_k = checked_position_top_k(position_top_k)
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"model directory not found: {root}")
    pooling = [
        entry
        for entry in Manifest(root).module_entries()
        if entry["type"].rsplit(".", 1)[-1] == "LexiconPooling"
    ]
    if len(pooling) != 1:
        raise ValueError(
            f"{root} is not a LENS model folder (its modules.json names no LexiconPooling module)"
        )
    config_file = root / pooling[0]["path"] / LexiconPooling.config_file_name
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{config_file}: cannot read the LENS pooling config ({error})") from None
    if not isinstance(config, dict) or "n_clusters" not in config:
        raise ValueError(f"{config_file}: not a LENS pooling config (no n_clusters)")
    config.pop("position_top_k", None)
    if position_top_k is not None:
        config["position_top_k"] = position_top_k
    make_portable(root)
    return atomic_write(
        config_file, lambda stream: stream.write(json.dumps(config, indent=4).encode("utf-8"))
    )
