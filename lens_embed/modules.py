"""sentence-transformers modules of a LENS model: ``[LensTransformer, LexiconPooling]``.

Both follow the library's ``Module`` contract (``forward``, ``save``, ``load``, ``config_keys``),
so a LENS model is saved with ``model.save()`` and loaded with
``SentenceTransformer(path, trust_remote_code=True)``; the flag is needed because the classes
live outside sentence-transformers' namespace. A LENS model's SparseEncoder folder
(:mod:`lens_embed.models.sparse`) is ``[LensSparseTransformer, LexiconPooling]``: the same modules, the first
one naming output dimensions by their clusters (:class:`ClusterVocabulary`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from numbers import Integral
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.modules import Module, Transformer

from lens_embed.base.prompts import QUERY_TOKEN, SIDES, lone_surrogate
from lens_embed.base.vocabulary import DENSE_POOLING_MODES
from lens_embed.models.pooling import (
    checked_position_top_k,
    dense_embedding,
    keep_max_active_dims,
    lexicon_embedding,
    pooling_mask,
    query_start,
)

DENSE_MODES = (None, *DENSE_POOLING_MODES)
HEAD_FILES = ("model.safetensors", "pytorch_model.bin")  # what Module.load_torch_weights reads, in its order
HUB_KEYS = ("token", "cache_folder", "revision", "local_files_only")  # where a module's files are on the hub
CLUSTER_NAMES_FILE = "cluster_names.json"
"""The K cluster names of a SparseEncoder folder, beside its first module's config (a JSON list)."""
logger = logging.getLogger(__name__)


def hub_kwargs(load_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keywords of a module's ``load`` that locate its files (local folder or hub revision)."""
    return {key: load_kwargs[key] for key in HUB_KEYS if key in load_kwargs}


def unshare_files(folder: str) -> None:
    """Give each file directly in ``folder`` that has other hard links a private copy before a module saves
    into it.

    A LENS folder and its SparseEncoder folder share their files by hard links
    (:mod:`lens_embed.models.sparse`); transformers and safetensors rewrite a file in place, which would
    write through into the other folder. Each module calls this on its own folder first, so saving either
    model never changes the other. Files with one link (every ordinary folder) are left as they are.
    """
    if not os.path.isdir(folder):
        return
    for entry in os.scandir(folder):
        if not entry.is_file(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_nlink < 2:
            continue
        descriptor, private = tempfile.mkstemp(dir=folder, prefix=f".{entry.name}.", suffix=".unshared")
        os.close(descriptor)
        try:
            shutil.copy2(entry.path, private)
            os.replace(private, entry.path)
        except BaseException:
            os.unlink(private)
            raise


def give_weights_the_config_mode(folder: str) -> None:
    """Give the ``.safetensors`` files a module saved the mode of the ``config.json`` beside them.

    safetensors writes a private temporary file (mode 0600) and renames it into place, which would keep a
    saved model's weights from every other user; the config, written by ``open``, has the usual mode
    (0666 minus the umask), or whatever mode its owner gave it.
    """
    config = os.path.join(folder, "config.json")
    if not os.path.isfile(config):
        return
    mode = os.stat(config).st_mode & 0o777
    for entry in os.scandir(folder):
        if entry.name.endswith(".safetensors") and entry.is_file(follow_symlinks=False):
            if entry.stat(follow_symlinks=False).st_mode & 0o777 != mode:
                os.chmod(entry.path, mode)


def validate_texts(texts: Sequence[Any]) -> None:
    """Reject what cannot be embedded, naming the offending position (and, for a bad string, its start:
    sentence-transformers sorts texts by length, so inside a batch the position is the batch's)."""
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text at index {index} is {type(text).__name__}, expected str")
        position = lone_surrogate(text)
        if position is not None:
            raise ValueError(
                f"text at index {index} ({text[:40]!r}) holds a lone surrogate "
                f"U+{ord(text[position]):04X} at character {position}, "
                "which is not valid Unicode and cannot be tokenized"
            )


QUERY_MARKER = "query_marker"
"""Feature set by :meth:`LensTransformer.preprocess`, read by :class:`LexiconPooling`: per row, 0 for a
document, ``n >= 1`` for a query whose text follows its n-th ``<query>`` token."""


def _per_token(value: Any, features: dict[str, Any]) -> bool:
    """A [batch, width] tensor aligned with ``input_ids`` (ids, attention mask, token types)."""
    ids = features.get("input_ids")
    return isinstance(value, torch.Tensor) and ids is not None and value.shape == ids.shape


class LensTransformer(Transformer):
    """sentence-transformers' ``Transformer`` with LENS' input checks, query/document routing and right
    padding.

    The side of a text (query or document) comes from the call, never from the text: the ``task``
    that ``encode_query``/``encode_document`` and the trainer's ``router_mapping`` pass, else the
    prompt (a LENS query prompt ends with ``<query>``). It travels to the pooling as the per-row
    ``query_marker`` feature, so it survives batching, multi-process pools and column merging.
    Packing (FA2 "unpadding") would merge the rows whose pooling masks LENS computes per text,
    so it is always off; padding is always on the right, so encoders with absolute position
    embeddings see the same positions in any batch.

    Args:
        model_name_or_path: local folder or hub id of the backbone.
        truncation_keeps_eos: (saved) True for models built or trained here: an over-long text is cut
            before its EOS, as in training. Converted released checkpoints set False, reproducing the
            authors' evaluation input ``tokenizer(text + "</s>", truncation=True)`` with a BOS-only
            tokenizer, where an over-long text loses its EOS.
        **kwargs: passed to sentence-transformers' ``Transformer``.
    """

    config_keys = [*Transformer.config_keys, "truncation_keeps_eos"]
    _DEFAULT_CONFIG_VALUES = {**Transformer._DEFAULT_CONFIG_VALUES, "truncation_keeps_eos": True}

    def __init__(self, model_name_or_path: str, truncation_keeps_eos: bool = True, **kwargs: Any) -> None:
        kwargs["unpad_inputs"] = False
        super().__init__(model_name_or_path, **kwargs)
        self.truncation_keeps_eos = truncation_keeps_eos
        self.truncation_reported = False
        self._prompt_markers: dict[str, int] = {}

    def preprocess(
        self, inputs: Sequence[Any], prompt: str | None = None, task: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Tokenize ``prompt + text`` (right-padded) and record each row's side as ``query_marker``.

        Args:
            inputs: the texts.
            prompt: prepended to every text; a LENS query prompt ends with ``<query>``.
            task: ``"query"`` or ``"document"`` (from ``encode_query``/``encode_document`` or the
                trainer's ``router_mapping``); None decides by the prompt.
            **kwargs: passed to sentence-transformers' ``Transformer.preprocess``.
        """
        validate_texts(inputs)
        marker = self.query_marker(prompt, task)
        kwargs["processing_kwargs"] = right_padded(kwargs.get("processing_kwargs"))
        max_length = kwargs.get("max_length") or self.max_seq_length
        if self.truncation_keeps_eos or max_length is None:
            features = super().preprocess(inputs, prompt=prompt, task=task, **kwargs)
        else:
            # one token more, then rows that used it lose their last token (EOS):
            # BOS + (text + EOS)[:max_length - 1]
            features = super().preprocess(
                inputs, prompt=prompt, task=task, **{**kwargs, "max_length": max_length + 1}
            )
            features = {k: v[:, :max_length] if _per_token(v, features) else v for k, v in features.items()}
        if "input_ids" not in features:
            return features
        features[QUERY_MARKER] = torch.full((features["input_ids"].shape[0],), marker, dtype=torch.long)
        width = features["input_ids"].shape[1]
        if not self.truncation_reported and self.max_seq_length is not None and width >= self.max_seq_length:
            self._warn_truncated(inputs, prompt or "")
        return features

    def query_marker(self, prompt: str | None, side: str | None) -> int:
        """0 for a document; for a query, which ``<query>`` token (counted from the start) opens its text.

        A query's text follows the last ``<query>`` of its prompt; with no ``<query>`` in the prompt
        the instruction is part of the text (``<instruct>{I}\\n<query>{q}``) and its first ``<query>`` counts.

        Args:
            prompt: the call's prompt.
            side: one of :data:`SIDES` (sentence-transformers' ``task``) or None (then a prompt ending in
                ``<query>`` means query).
        """
        if side is not None and side not in SIDES:
            raise ValueError(f"task must be one of {SIDES}, the side of the texts (or None), got {side!r}")
        if side is None:
            side = "query" if prompt and prompt.endswith(QUERY_TOKEN) else "document"
        if side == "document":
            return 0
        if not prompt:
            return 1
        if prompt not in self._prompt_markers:
            query_id = self.tokenizer.convert_tokens_to_ids(QUERY_TOKEN)
            ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            self._prompt_markers[prompt] = max(1, ids.count(query_id))
        return self._prompt_markers[prompt]

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # The backbone must not see the marker (models taking **kwargs would pass it to their layers).
        marker = features.pop(QUERY_MARKER, None)
        features = super().forward(features, **kwargs)
        if marker is not None:
            features[QUERY_MARKER] = marker
        return features

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        unshare_files(output_path)
        super().save(output_path, *args, **kwargs)
        give_weights_the_config_mode(output_path)

    def _warn_truncated(self, texts: Sequence[str], prompt: str) -> None:
        """Over-long texts are cut to max_seq_length: say so once, with how many in that batch."""
        lengths = [len(ids) for ids in self.tokenizer([prompt + text for text in texts])["input_ids"]]
        over = sum(length > self.max_seq_length for length in lengths)
        if over:
            self.truncation_reported = True
            logger.warning(
                "%d of %d texts in a batch exceed max_seq_length=%d tokens (longest %d) and were truncated, "
                "%s; later truncations are not reported",
                over,
                len(texts),
                self.max_seq_length,
                max(lengths),
                "EOS kept" if self.truncation_keeps_eos else "EOS dropped (the authors' evaluation)",
            )


def right_padded(processing_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Per-call processor kwargs with padding forced to the right, whatever the caller or tokenizer set.

    Left padding shifts the positions of absolute position embeddings (BERT/MiniLM), so a text
    would embed differently depending on the longest text of its batch.
    """
    merged = dict(processing_kwargs or {})
    merged["common"] = {**merged.get("common", {}), "padding_side": "right"}
    return merged


class ClusterVocabulary:
    """A LENS model's tokenizer as sentence-transformers' ``SparseEncoder`` reads it: the tokenizer for
    text, the K cluster names for output dimensions.

    ``SparseEncoder.decode`` names an output dimension ``i`` with
    ``model.tokenizer.convert_ids_to_tokens(i)``: in SPLADE a dimension is a vocabulary id. In LENS it
    is a cluster of tokens, so this view answers that one question with the cluster's name; every
    other attribute and call (tokenizing, special tokens, ``model_max_length``, saving) is the wrapped
    tokenizer's own.

    Args:
        tokenizer: the model's tokenizer.
        names: one name per cluster, in dimension order.
    """

    def __init__(self, tokenizer: Any, names: Sequence[str]) -> None:
        object.__setattr__(self, "tokenizer", tokenizer)
        object.__setattr__(self, "cluster_names", names)

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> Any:
        """The name of each output dimension (cluster index) in ``ids``; a single index gives one name."""
        if isinstance(ids, Integral):
            return self._name(int(ids))
        return [self._name(int(index)) for index in ids]

    def _name(self, index: int) -> str:
        if not 0 <= index < len(self.cluster_names):
            raise IndexError(
                f"dimension {index} is not a cluster of this model (0..{len(self.cluster_names) - 1})"
            )
        return self.cluster_names[index]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.tokenizer(*args, **kwargs)

    def __len__(self) -> int:
        return len(self.tokenizer)

    def __getattr__(self, name: str) -> Any:
        # own attributes are missing only while an object is rebuilt (pickle, copy): nothing to delegate yet
        if name in ("tokenizer", "cluster_names") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.tokenizer, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.tokenizer, name, value)

    def __repr__(self) -> str:
        return f"ClusterVocabulary({len(self.cluster_names)} clusters, {type(self.tokenizer).__name__})"


class LensSparseTransformer(LensTransformer):
    """The first module of a LENS model's SparseEncoder folder: :class:`LensTransformer`, whose
    ``tokenizer`` is the :class:`ClusterVocabulary` of the cluster names saved beside it
    (:data:`CLUSTER_NAMES_FILE`), so that ``SparseEncoder.decode`` names each dimension by its
    cluster's tokens. Embeddings are exactly :class:`LensTransformer`'s.

    Args:
        model_name_or_path: local folder or hub id of the backbone.
        cluster_names: one name per cluster (K), in dimension order.
        **kwargs: passed to :class:`LensTransformer`.
    """

    def __init__(self, model_name_or_path: str, cluster_names: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(model_name_or_path, **kwargs)
        self.cluster_names = tuple(cluster_names)

    @property
    def tokenizer(self) -> Any:
        tokenizer = super().tokenizer
        names = self.__dict__.get("cluster_names")  # unset while the parent's __init__ reads the tokenizer
        return ClusterVocabulary(tokenizer, names) if names and tokenizer is not None else tokenizer

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        super().save(output_path, *args, **kwargs)
        save_cluster_names(output_path, self.cluster_names)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> LensSparseTransformer:
        located = hub_kwargs(kwargs)
        path = cls.load_file_path(model_name_or_path, CLUSTER_NAMES_FILE, subfolder=subfolder, **located)
        where = os.path.join(str(model_name_or_path), subfolder, CLUSTER_NAMES_FILE)
        if path is None:
            raise ValueError(f"{where}: missing; a LENS SparseEncoder folder names its clusters there")
        try:
            with open(path, encoding="utf-8") as stream:
                names = json.load(stream)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{where}: not valid JSON ({error})") from error
        if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
            raise ValueError(f"{where}: expected a non-empty JSON list of cluster names (strings)")
        module = super().load(model_name_or_path, subfolder=subfolder, **kwargs)
        module.cluster_names = tuple(names)
        return module


def save_cluster_names(folder: str, names: Sequence[str]) -> None:
    """Write :data:`CLUSTER_NAMES_FILE` into ``folder``: one JSON string per line, in dimension order."""
    with open(os.path.join(folder, CLUSTER_NAMES_FILE), "w", encoding="utf-8") as stream:
        json.dump(list(names), stream, ensure_ascii=False, indent=0)
        stream.write("\n")


class LexiconPooling(Module):
    """The frozen clustered head and the LENS max pooling; optionally a dense part (hybrid).

    Holds the [K, H] centroids and the token -> cluster map as buffers (never trained). Each row
    is pooled as the ``query_marker`` feature of :class:`LensTransformer` says: a query from the
    ``<query>`` token that closes its prompt (instruction excluded), a document over all of it.
    Outputs the L2-normalised ``sentence_embedding``.

    Args:
        n_clusters: K, the number of lexicon dimensions (centroids).
        hidden_size: H, the backbone's hidden size.
        query_token_id: the id of ``<query>`` in the model's tokenizer.
        next_token_outputs: True for decoders (the output at i stands for token i+1), False for encoders.
        dense_pooling: None (lexicon only), ``"mean"`` or ``"last"``: append a normalised dense vector
            (hybrid).
        dense_weight: the dense part's weight in the hybrid (>= 0).
        vocab_size: rows of the token -> cluster map (set when loading saved weights).
        position_top_k: sparse LENS: each pooled position keeps only its k largest cluster logits before
            the max over positions, for queries and documents alike (the dense part is untouched); None
            (the default): every logit, the paper's pooling. Saved in the module's config only when set,
            so a folder without it embeds exactly as before.

    ``forward(features, max_active_dims=N)`` (sentence-transformers passes it from ``encode``, as this
    module's ``forward_kwargs`` declare) keeps each vector's N largest lexicon weights
    (:func:`lens_embed.models.pooling.keep_max_active_dims`, for inference: the result is detached).

    ``topk_temperature`` is a training-time attribute, never saved: with ``position_top_k`` set and
    gradients on in training mode, the top-k passes a straight-through gradient at that temperature
    (:func:`lens_embed.models.pooling.straight_through_top_k`); None (the default) passes it through the kept
    logits only. It never changes the embeddings' values.
    """

    config_keys = [
        "n_clusters",
        "hidden_size",
        "query_token_id",
        "next_token_outputs",
        "dense_pooling",
        "dense_weight",
        "position_top_k",
    ]
    forward_kwargs = {"max_active_dims"}

    def __init__(
        self,
        n_clusters: int,
        hidden_size: int,
        query_token_id: int | None,
        next_token_outputs: bool = True,
        dense_pooling: str | None = None,
        dense_weight: float = 1.0,
        vocab_size: int | None = None,
        position_top_k: int | None = None,
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
        self.position_top_k = position_top_k
        self.topk_temperature: float | None = None
        self.register_buffer("centroids", torch.zeros(n_clusters, hidden_size))
        self.register_buffer("token_clusters", torch.zeros(vocab_size or 0, dtype=torch.long))

    @property
    def position_top_k(self) -> int | None:
        """k of the per-position top-k pooling (sparse LENS), None when off."""
        return self._position_top_k

    @position_top_k.setter
    def position_top_k(self, value: int | None) -> None:
        self._position_top_k = checked_position_top_k(value)

    def get_config_dict(self) -> dict[str, Any]:
        config = super().get_config_dict()
        if config["position_top_k"] is None:  # off: the config of every folder saved before the option
            del config["position_top_k"]
        return config

    def set_head(self, centroids: torch.Tensor, token_clusters: torch.Tensor) -> None:
        """Install clustering results, checking their shapes against the configuration."""
        if tuple(centroids.shape) != (self.n_clusters, self.hidden_size):
            raise ValueError(
                f"centroids have shape {tuple(centroids.shape)}, "
                f"expected ({self.n_clusters}, {self.hidden_size})"
            )
        self.centroids = centroids.detach().float().clone().to(self.centroids.device)
        self.token_clusters = token_clusters.detach().long().clone().to(self.centroids.device)

    def forward(
        self, features: dict[str, Any], max_active_dims: int | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        hidden = features["token_embeddings"]
        attention_mask = features["attention_mask"]
        if QUERY_MARKER not in features:
            raise ValueError(
                f"features carry no {QUERY_MARKER!r}: "
                "build them with the model's preprocess (LensTransformer)"
            )
        query_rank = query_start(
            features["input_ids"], attention_mask, self.query_token_id, features[QUERY_MARKER]
        )
        mask = pooling_mask(attention_mask, query_rank, self.next_token_outputs)
        temperature = self.topk_temperature if self.training else None
        lexicon = lexicon_embedding(hidden, self.centroids, mask, self.position_top_k, temperature)
        embedding = F.normalize(lexicon, p=2, dim=-1)
        if self.dense_pooling is not None:
            dense = F.normalize(
                dense_embedding(hidden, mask, attention_mask, self.dense_pooling), p=2, dim=-1
            )
            embedding = F.normalize(torch.cat([embedding, self.dense_weight * dense], dim=-1), p=2, dim=-1)
        if max_active_dims is not None:
            embedding = keep_max_active_dims(embedding, max_active_dims, self.n_clusters)
        features["sentence_embedding"] = embedding
        return features

    def get_embedding_dimension(self) -> int:
        return self.n_clusters + (self.hidden_size if self.dense_pooling is not None else 0)

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        unshare_files(output_path)
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)
        give_weights_the_config_mode(output_path)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> LexiconPooling:
        located = hub_kwargs(kwargs)
        config = cls.load_config(model_name_or_path, subfolder=subfolder, **located)
        # the file load_torch_weights reads, so that every error below names it
        found = (
            cls.load_file_path(model_name_or_path, name, subfolder=subfolder, **located)
            for name in HEAD_FILES
        )
        head_file = next(filter(None, found), f"{model_name_or_path}/{subfolder}")
        try:
            weights = cls.load_torch_weights(model_name_or_path, subfolder=subfolder, **located)
        except Exception as error:  # safetensors and torch raise several types for damaged files
            reason = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise ValueError(f"{head_file}: cannot read the LENS head ({reason})") from error
        missing = {"centroids", "token_clusters"} - set(weights)
        if missing:
            raise ValueError(f"{head_file}: the LENS head lacks {sorted(missing)}")
        module = cls(**config, vocab_size=weights["token_clusters"].shape[0])
        try:
            module.set_head(weights["centroids"], weights["token_clusters"])
        except ValueError as error:
            raise ValueError(f"{head_file}: {error}") from error
        return module
