"""sentence-transformers modules of a LENS model: ``[LensTransformer, LexiconPooling]``.

Both follow the library's ``Module`` contract (``forward``, ``save``, ``load``, ``config_keys``),
so a LENS model is saved with ``model.save()`` and loaded with
``SentenceTransformer(path, trust_remote_code=True)``; the flag is needed because the classes
live outside sentence-transformers' namespace.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.modules import Module, Transformer

from lens_embed.pooling import dense_embedding, lexicon_embedding, pooling_mask

DENSE_MODES = (None, "mean", "last")
logger = logging.getLogger(__name__)


def validate_texts(texts: Sequence[Any]) -> None:
    """Reject what cannot be embedded, naming the offending position."""
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text at index {index} is {type(text).__name__}, expected str")


class LensTransformer(Transformer):
    """sentence-transformers' ``Transformer`` with LENS' input checks and no sequence packing.

    Packing (FA2 "unpadding") would merge the rows whose pooling masks LENS computes per text,
    so it is always off.
    """

    def __init__(self, model_name_or_path: str, **kwargs: Any) -> None:
        kwargs["unpad_inputs"] = False
        super().__init__(model_name_or_path, **kwargs)
        self.truncation_reported = False

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        validate_texts(inputs)
        features = super().preprocess(inputs, prompt=prompt, **kwargs)
        width = features["input_ids"].shape[1] if "input_ids" in features else 0
        if not self.truncation_reported and self.max_seq_length is not None and width >= self.max_seq_length:
            self._warn_truncated(inputs, prompt or "")
        return features

    def _warn_truncated(self, texts: Sequence[str], prompt: str) -> None:
        """Over-long texts are cut to max_seq_length (EOS kept): say so once, with how many in that batch."""
        lengths = [len(ids) for ids in self.tokenizer([prompt + text for text in texts])["input_ids"]]
        over = sum(length > self.max_seq_length for length in lengths)
        if over:
            self.truncation_reported = True
            logger.warning(
                "%d of %d texts in a batch exceed max_seq_length=%d tokens (longest %d) and were truncated, "
                "EOS kept; later truncations are not reported",
                over, len(texts), self.max_seq_length, max(lengths),
            )


class LexiconPooling(Module):
    """The frozen clustered head and the LENS max pooling; optionally a dense part (hybrid).

    Holds the [K, H] centroids and the token -> cluster map as buffers (never trained).
    Rows holding the ``<query>`` token are pooled as queries (instruction excluded), the others
    as documents. Outputs the L2-normalised ``sentence_embedding``.
    """

    config_keys = ["n_clusters", "hidden_size", "query_token_id", "next_token_outputs", "dense_pooling", "dense_weight"]

    def __init__(
        self,
        n_clusters: int,
        hidden_size: int,
        query_token_id: int | None,
        next_token_outputs: bool = True,
        dense_pooling: str | None = None,
        dense_weight: float = 1.0,
        vocab_size: int | None = None,
    ) -> None:
        super().__init__()
        if dense_pooling not in DENSE_MODES:
            raise ValueError(f"dense_pooling must be one of {DENSE_MODES}, got {dense_pooling!r}")
        if dense_weight < 0:
            raise ValueError(f"dense_weight must be >= 0, got {dense_weight}")
        self.n_clusters = n_clusters
        self.hidden_size = hidden_size
        self.query_token_id = query_token_id
        self.next_token_outputs = next_token_outputs
        self.dense_pooling = dense_pooling
        self.dense_weight = float(dense_weight)
        self.register_buffer("centroids", torch.zeros(n_clusters, hidden_size))
        self.register_buffer("token_clusters", torch.zeros(vocab_size or 0, dtype=torch.long))

    def set_head(self, centroids: torch.Tensor, token_clusters: torch.Tensor) -> None:
        """Install clustering results, checking their shapes against the configuration."""
        if tuple(centroids.shape) != (self.n_clusters, self.hidden_size):
            raise ValueError(
                f"centroids have shape {tuple(centroids.shape)}, expected ({self.n_clusters}, {self.hidden_size})"
            )
        self.centroids = centroids.detach().float().clone().to(self.centroids.device)
        self.token_clusters = token_clusters.detach().long().clone().to(self.centroids.device)

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        hidden = features["token_embeddings"]
        attention_mask = features["attention_mask"]
        mask = pooling_mask(features["input_ids"], attention_mask, self.query_token_id, self.next_token_outputs)
        embedding = F.normalize(lexicon_embedding(hidden, self.centroids, mask), p=2, dim=-1)
        if self.dense_pooling is not None:
            dense = F.normalize(dense_embedding(hidden, mask, attention_mask, self.dense_pooling), p=2, dim=-1)
            embedding = F.normalize(torch.cat([embedding, self.dense_weight * dense], dim=-1), p=2, dim=-1)
        features["sentence_embedding"] = embedding
        return features

    def get_embedding_dimension(self) -> int:
        return self.n_clusters + (self.hidden_size if self.dense_pooling is not None else 0)

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> LexiconPooling:
        hub_kwargs = {
            key: kwargs[key] for key in ("token", "cache_folder", "revision", "local_files_only") if key in kwargs
        }
        config = cls.load_config(model_name_or_path, subfolder=subfolder, **hub_kwargs)
        try:
            weights = cls.load_torch_weights(model_name_or_path, subfolder=subfolder, **hub_kwargs)
        except Exception as error:  # safetensors and torch raise several types for damaged files
            raise ValueError(f"cannot read the LENS head in {model_name_or_path}/{subfolder}: {error}") from error
        missing = {"centroids", "token_clusters"} - set(weights)
        if missing:
            raise ValueError(f"the LENS head in {model_name_or_path}/{subfolder} lacks {sorted(missing)}")
        module = cls(**config, vocab_size=weights["token_clusters"].shape[0])
        module.set_head(weights["centroids"], weights["token_clusters"])
        return module
