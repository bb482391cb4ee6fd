"""Building, loading and using LENS models as sentence-transformers models."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoConfig

from lens_embed.backbone import (
    is_decoder_config,
    make_bidirectional,
    prepare_tokenizer,
    resize_embeddings,
    vocabulary_matrix,
)
from lens_embed.clustering import kmeans_vocabulary, validate_n_clusters
from lens_embed.modules import LensTransformer, LexiconPooling, validate_texts
from lens_embed.prompts import QUERY_TOKEN, default_prompts, query_prompt

logger = logging.getLogger(__name__)

DEFAULT_MAX_SEQ_LENGTH = 512


def assemble_lens_model(
    transformer: LensTransformer, pooling: LexiconPooling, device: str | None = None
) -> SentenceTransformer:
    """Wrap the two modules with the LENS prompts (query/document plus named instructions) and cosine."""
    return SentenceTransformer(
        modules=[transformer, pooling], prompts=default_prompts(), similarity_fn_name="cosine", device=device
    )


def ensure_output_dir(output_dir: str | Path, overwrite: bool) -> None:
    """Refuse to write over a non-empty directory unless asked: saved work is never lost silently."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"output path {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"output directory {path} is not empty; pass overwrite=True (--overwrite) to replace it")


def load_backbone(
    model_name_or_path: str | Path,
    *,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    attn_implementation: str | None = None,
    torch_dtype: str | torch.dtype | None = None,
) -> tuple[LensTransformer, bool]:
    """The backbone as a sentence-transformers input module, bidirectional if it is a decoder."""
    path = str(model_name_or_path)
    config = AutoConfig.from_pretrained(path)
    decoder = is_decoder_config(config)
    model_kwargs: dict[str, Any] = {}
    if attn_implementation is not None:
        model_kwargs["attn_implementation"] = attn_implementation
    if torch_dtype is not None:
        model_kwargs["dtype"] = torch_dtype
    config_kwargs = {"is_causal": False, "use_cache": False} if decoder else {}
    transformer = LensTransformer(
        path, model_kwargs=model_kwargs, config_kwargs=config_kwargs, max_seq_length=max_seq_length
    )
    if decoder:
        make_bidirectional(transformer.auto_model.config)
    return transformer, decoder


def build_lens_model(
    base_model: str | Path,
    n_clusters: int = 4000,
    output_dir: str | Path | None = None,
    *,
    dense_pooling: str | None = None,
    dense_weight: float = 1.0,
    seed: int = 0,
    kmeans_iterations: int = 20,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    attn_implementation: str | None = None,
    torch_dtype: str | torch.dtype | None = None,
    device: str | None = None,
    overwrite: bool = False,
) -> SentenceTransformer:
    """Turn a decoder LLM (or a BERT-style encoder) into a LENS model.

    Clusters the vocabulary matrix into ``n_clusters`` centroids that become the frozen head,
    prepares the tokenizer (special tokens, pad, one EOS), and saves to ``output_dir`` if given.
    """
    if output_dir is not None:
        ensure_output_dir(output_dir, overwrite)
    transformer, decoder = load_backbone(
        base_model, max_seq_length=max_seq_length, attn_implementation=attn_implementation, torch_dtype=torch_dtype
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
    )
    pooling.set_head(clustering.centroids, clustering.assignments)
    model = assemble_lens_model(transformer, pooling, device=device)
    if output_dir is not None:
        model.save(str(output_dir))
    return model


def load_lens_model(model_name_or_path: str | Path, device: str | None = None, **kwargs: Any) -> SentenceTransformer:
    """Load a saved LENS (or any sentence-transformers) model; a clear error if the path holds none.

    A released checkpoint name (``yibinlei/LENS-d4000``, ``-d8000``) is converted once and cached.
    """
    from lens_embed.convert import RELEASED_CHECKPOINTS, converted_release_path

    if str(model_name_or_path) in RELEASED_CHECKPOINTS and not Path(model_name_or_path).exists():
        model_name_or_path = converted_release_path(str(model_name_or_path))
    path = Path(model_name_or_path)
    looks_local = path.is_absolute() or str(model_name_or_path).startswith(".") or path.exists()
    if looks_local:
        if not path.is_dir():
            raise FileNotFoundError(f"model directory not found: {path}")
        if not (path / "modules.json").is_file():
            raise ValueError(
                f"{path} is not a sentence-transformers or lens-embed model (no modules.json); "
                "build one with `lens-embed build` or convert a released checkpoint with `lens-embed convert`"
            )
    return SentenceTransformer(str(model_name_or_path), device=device, trust_remote_code=True, **kwargs)


def is_lens_model(model: SentenceTransformer) -> bool:
    """Whether the model ends in LENS' lexicon pooling."""
    return any(isinstance(module, LexiconPooling) for module in model)


def lexicon_pooling(model: SentenceTransformer) -> LexiconPooling:
    """The model's LexiconPooling module, or a clear error for other models."""
    for module in model:
        if isinstance(module, LexiconPooling):
            return module
    raise ValueError("this is not a LENS model: it has no LexiconPooling module")


def encode(
    model: SentenceTransformer,
    texts: Sequence[str],
    *,
    query: bool = False,
    instruction: str | None = None,
    batch_size: int = 32,
    show_progress_bar: bool | None = None,
) -> np.ndarray:
    """Embed texts as documents, or as instructed queries; validated, (0, dim) for an empty list."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single string")
    texts = list(texts)
    validate_texts(texts)
    if not texts:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    if not query:
        if instruction is not None:
            raise ValueError("an instruction applies to queries only: pass query=True")
        return model.encode_document(texts, batch_size=batch_size, show_progress_bar=show_progress_bar)
    prompt = query_prompt(instruction) if instruction is not None else None
    return model.encode_query(texts, prompt=prompt, batch_size=batch_size, show_progress_bar=show_progress_bar)
