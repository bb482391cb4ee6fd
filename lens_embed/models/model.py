"""The LENS model: one class, the one router of texts to a side.

:class:`LensSentenceTransformer` is the ``SentenceTransformer`` every LENS model lens-embed makes or
loads is. Its methods are what a LENS model does beyond sentence-transformers: its lexicon module and K,
its facts (for the card), its settings (for shard keys and results), its provenance, naming its
dimensions by their tokens (:meth:`~LensSentenceTransformer.top_dimensions`), and a default
``max_active_dims`` saved as sentence-transformers' ``SparseEncoder`` saves it. Its ``save`` writes a
self-contained folder (:mod:`lens_embed.models.portable`) and the LENS card (:mod:`lens_embed.models.card`),
handing both plain data.

:func:`encode` is the one router of texts to the query or document side of *any* sentence-transformers
model (baselines included); :func:`side_prompt` says which prompt a side gets.

Making models (:mod:`lens_embed.models.build`, :mod:`lens_embed.models.convert`) and loading them
(:mod:`lens_embed.models.loading`) sit above this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from lens_embed.base.prompts import query_prompt
from lens_embed.models.backbone import is_bidirectional, is_decoder_config
from lens_embed.models.card import (
    ModelFacts,
    Provenance,
    base_model_license,
    card_provenance,
    merge_provenance,
    write_card,
)
from lens_embed.models.pooling import checked_max_active_dims, keep_max_active_dims
from lens_embed.models.portable import make_portable
from lens_embed.models.safety import MODELING_MODULE
from lens_embed.modules import LexiconPooling, validate_texts

# The prompt names sentence-transformers' encode_query / encode_document look for, in this order, when
# the call names none (then the model's default_prompt_name applies).
SIDE_PROMPT_NAMES = {"query": ("query",), "document": ("document", "passage", "corpus")}
# The key of config_sentence_transformers.json that holds the default max_active_dims (SparseEncoder's).
MAX_ACTIVE_DIMS_KEY = "max_active_dims"


@dataclass(frozen=True)
class Dimension:
    """One lexicon dimension of an embedding: its index, weight and member tokens."""

    index: int
    weight: float
    tokens: list[str]


def _is_lexicon_pooling(module: torch.nn.Module) -> bool:
    """lens-embed's LexiconPooling, or the copy a folder's ``modeling_lens.py`` defines (the same code,
    loaded by plain sentence-transformers with ``trust_remote_code=True``)."""
    cls = type(module)
    return isinstance(module, LexiconPooling) or (
        cls.__name__ == LexiconPooling.__name__ and cls.__module__.rsplit(".", 1)[-1] == MODELING_MODULE
    )


class LensSentenceTransformer(SentenceTransformer):
    """A LENS model: a ``SentenceTransformer`` ending in :class:`~lens_embed.modules.LexiconPooling`, with
    the methods of a lexicon-based model.

    Saving: every save path goes through ``save`` (``save_pretrained``, ``push_to_hub``, the trainer's
    checkpoints and final model), which adds ``modeling_lens.py`` (and points ``modules.json`` at it)
    and writes the LENS card instead of sentence-transformers' generic one. Models without LENS modules
    save exactly as sentence-transformers saves them. The frozen head stays float32 whatever the
    backbone's dtype (sentence-transformers casts every module to the first one's dtype).

    ``max_active_dims`` (like ``SparseEncoder``'s): the default number of lexicon weights each vector
    keeps in ``encode`` (None keeps all); ``encode(..., max_active_dims=N)`` overrides it per call. It is
    saved in ``config_sentence_transformers.json`` under the key ``SparseEncoder`` uses, and read back on
    load, through the same two hooks ``SparseEncoder`` overrides for it (``_get_model_config``,
    ``_parse_model_config``). The pruning runs in the lexicon module (its ``forward_kwargs``), so a
    plain ``SentenceTransformer(path, trust_remote_code=True)`` accepts ``encode(..., max_active_dims=N)``
    too.

    Any model: every method but ``encode``, ``save`` and :attr:`n_clusters` reads only what every
    sentence-transformers model has, so it also answers for a model of another class, called on the
    class: ``LensSentenceTransformer.settings(model)`` for a baseline, or
    ``LensSentenceTransformer.top_dimensions(model, embedding)`` for a LENS folder loaded by plain
    ``SentenceTransformer(path, trust_remote_code=True)`` or ``SparseEncoder``.

    The one private sentence-transformers call: :func:`lens_embed.models.loading.load_lens_model` builds this
    class with ``_load_with_module_classes``, the only way to hand ``SentenceTransformer`` the classes of
    ``modules.json`` types (lens-embed's modules, and a folder's ``modeling_lens.py`` types whose code is
    exactly lens-embed's) without opening its ``trust_remote_code`` gate to every other type; the public
    alternatives are ``trust_remote_code=True`` (which would also run any code the folder names) or
    re-implementing sentence-transformers' loader around each module's public ``load``.
    """

    def __init__(self, *args: Any, max_active_dims: int | None = None, **kwargs: Any) -> None:
        # set before loading: _parse_model_config fills it from a saved folder unless given here
        self.max_active_dims = None if max_active_dims is None else checked_max_active_dims(max_active_dims)
        super().__init__(*args, **kwargs)
        if self.max_active_dims is not None:
            self.max_active_dims = checked_max_active_dims(self.max_active_dims)
        if self.is_lens_model():
            self.lexicon().float()

    def _get_model_config(self) -> dict[str, Any]:
        config = super()._get_model_config()
        if self.max_active_dims is not None:
            config[MAX_ACTIVE_DIMS_KEY] = self.max_active_dims
        return config

    def _parse_model_config(self, model_config: dict[str, Any]) -> None:
        super()._parse_model_config(model_config)
        if self.max_active_dims is None:
            self.max_active_dims = model_config.get(MAX_ACTIVE_DIMS_KEY)

    def encode(self, *args: Any, max_active_dims: int | None = None, **kwargs: Any) -> Any:
        """sentence-transformers' ``encode``, each vector keeping its ``max_active_dims`` largest lexicon
        weights (:func:`lens_embed.models.pooling.keep_max_active_dims`: a hybrid's dense part is kept whole,
        nothing is re-normalised); None uses the model's default (:attr:`max_active_dims`). ``encode_query``
        and ``encode_document`` take it too."""
        chosen = self.max_active_dims if max_active_dims is None else max_active_dims
        if chosen is not None:
            if not self.is_lens_model():
                raise ValueError("max_active_dims prunes a LENS model's lexicon weights; this model has none")
            kwargs[MAX_ACTIVE_DIMS_KEY] = checked_max_active_dims(chosen)
        return super().encode(*args, **kwargs)

    def save(
        self,
        path: str,
        model_name: str | None = None,
        create_model_card: bool = True,
        train_datasets: list[str] | None = None,
        safe_serialization: bool = True,
    ) -> None:
        lens = self.is_lens_model()
        super().save(path, model_name, create_model_card and not lens, train_datasets, safe_serialization)
        if not lens:
            return
        make_portable(path)
        if create_model_card:
            model_id = model_name if model_name and not Path(model_name).exists() else None
            write_card(path, self.facts(), **self.provenance(model_id=model_id))

    def is_lens_model(self: SentenceTransformer) -> bool:
        """Whether the model ends in LENS' lexicon pooling (lens-embed's, or a folder's ``modeling_lens.py``
        copy); any sentence-transformers model: ``LensSentenceTransformer.is_lens_model(model)``."""
        return any(_is_lexicon_pooling(module) for module in self)

    def lexicon(self: SentenceTransformer) -> LexiconPooling:
        """The model's LexiconPooling module (centroids, token -> cluster map, pooling options), or a clear
        error for other models; any sentence-transformers model:
        ``LensSentenceTransformer.lexicon(model)``."""
        for module in self:
            if _is_lexicon_pooling(module):
                return module
        raise ValueError("this is not a LENS model: it has no LexiconPooling module")

    def settings(self: SentenceTransformer) -> dict[str, Any]:
        """dtype, attention kernel, maximum length and truncation, the per-position top-k and the default
        ``max_active_dims`` when set, and the backend and export file when not torch: what decides the
        model's embeddings beyond its weights (recorded beside results, part of every shard key). The
        top-k, ``max_active_dims`` and the backend are named only when they differ from the default, so the
        keys of every other model are those it always had. Any sentence-transformers model:
        ``LensSentenceTransformer.settings(model)``."""
        first = next(iter(self.parameters()), None)
        module = self[0]
        config = getattr(getattr(module, "auto_model", None), "config", None)
        settings = {
            "dtype": str(first.dtype).removeprefix("torch.") if first is not None else None,
            # transformers has no public name for the kernel a loaded model runs (only this property)
            "attn_implementation": getattr(config, "_attn_implementation", None),
            "max_seq_length": self.max_seq_length,
            "truncation_keeps_eos": getattr(module, "truncation_keeps_eos", None),
        }
        lens = LensSentenceTransformer.is_lens_model(self)
        top_k = LensSentenceTransformer.lexicon(self).position_top_k if lens else None
        if top_k is not None:
            settings["position_top_k"] = top_k
        if getattr(self, MAX_ACTIVE_DIMS_KEY, None) is not None:
            settings[MAX_ACTIVE_DIMS_KEY] = self.max_active_dims
        backend = getattr(module, "backend", "torch")
        if backend != "torch":  # an exported backbone (lens_embed.models.exported): which file, int8 or not
            settings.update(backend=backend, file_name=getattr(module.auto_model, "file_name", None))
        return settings

    @property
    def n_clusters(self) -> int:
        """K: the number of lexicon dimensions (clusters), the first K columns of an embedding."""
        return self.lexicon().n_clusters

    def facts(self: SentenceTransformer) -> ModelFacts:
        """The card's facts, read off the loaded model (a clear error for a model that is not LENS)."""
        pooling = LensSentenceTransformer.lexicon(self)
        config = self[0].auto_model.config
        return ModelFacts(
            n_clusters=pooling.n_clusters,
            embedding_dimension=int(self.get_embedding_dimension()),
            backbone=config.model_type,
            decoder=is_decoder_config(config),
            bidirectional=is_bidirectional(config),
            dense_pooling=pooling.dense_pooling,
            dense_weight=pooling.dense_weight,
            max_seq_length=self.max_seq_length,
            prompts={name: text for name, text in self.prompts.items() if text is not None},
            truncation_keeps_eos=bool(getattr(self[0], "truncation_keeps_eos", True)),
        )

    def record_base_model(self: SentenceTransformer, base_model: str | Path) -> None:
        """Note on the model (its ``model_card_data``) what it was made from and under which licence.

        A hub id is recorded as the card's ``base_model``; a local folder is not (the hub could not link
        it), but the licence in its card is still read.
        """
        self.model_card_data.license = base_model_license(base_model)
        self.model_card_data.base_model = None if Path(base_model).exists() else str(base_model)

    def provenance(self: SentenceTransformer, model_id: str | None = None) -> dict[str, Any]:
        """Provenance of the in-memory model: the card it was loaded with, then what sentence-transformers'
        ``model_card_data`` knows now (base model, licence, and after training its datasets and settings)."""
        data = self.model_card_data
        recorded = card_provenance(self._model_card_text) if self._model_card_text else Provenance()
        datasets = [
            str(d.get("id") or d.get("name")) for d in data.train_datasets if d.get("id") or d.get("name")
        ]
        recipe = {key: str(value) for key, value in (data.non_default_hyperparameters or {}).items()}
        now = merge_provenance(
            recorded,
            model_id=model_id or data.model_id,
            base_model=data.base_model,
            license=data.license,
            training_datasets=datasets,
            training_recipe=recipe,
        )
        return dict(now.__dict__)

    def check_top(self: SentenceTransformer, k: int) -> None:
        """Refuse a number of dimensions to show that is not in ``1..K`` (before anything is embedded)."""
        n_clusters = LensSentenceTransformer.lexicon(self).n_clusters
        if isinstance(k, bool) or not isinstance(k, int) or not 0 < k <= n_clusters:
            raise ValueError(
                f"the number of dimensions to show must be an integer in 1..{n_clusters} (K), got {k!r}"
            )

    def cluster_tokens(self: SentenceTransformer, cluster: int, limit: int = 8) -> list[str]:
        """Up to ``limit`` readable member tokens of a cluster, in token-id order (which for BPE/WordPiece
        vocabularies puts frequent tokens first).

        Args:
            cluster: the dimension (cluster index, ``0 <= cluster < K``).
            limit: the most tokens to return.
        """
        pooling = LensSentenceTransformer.lexicon(self)
        if not 0 <= cluster < pooling.n_clusters:
            raise IndexError(f"cluster {cluster} out of range [0, {pooling.n_clusters})")
        members = (pooling.token_clusters == cluster).nonzero().flatten().tolist()
        tokenizer = self[0].tokenizer
        names: list[str] = []
        for token_id in members:
            text = tokenizer.convert_tokens_to_string([tokenizer.convert_ids_to_tokens(token_id)]).strip()
            if text and text not in names:
                names.append(text)
            if len(names) == limit:
                break
        return names

    def top_dimensions(
        self: SentenceTransformer, embedding: np.ndarray, k: int = 10, tokens: int = 8
    ) -> list[Dimension]:
        """The ``k`` heaviest lexicon dimensions of one embedding of this model, named by their tokens.

        Args:
            embedding: one embedding ([dimension]).
            k: how many dimensions (1..K); fewer come back when fewer are non-zero.
            tokens: member tokens listed per dimension.
        """
        weights = LensSentenceTransformer._lexicon_part(self, embedding)
        return LensSentenceTransformer._heaviest(self, weights, k, tokens)

    def match_dimensions(
        self: SentenceTransformer, query: np.ndarray, document: np.ndarray, k: int = 10, tokens: int = 8
    ) -> list[Dimension]:
        """Why a document matched a query: the dimensions with the largest products q_i * d_i.

        Args:
            query: the query embedding.
            document: the document embedding.
            k: how many dimensions (1..K).
            tokens: member tokens listed per dimension.
        """
        part = LensSentenceTransformer._lexicon_part
        return LensSentenceTransformer._heaviest(self, part(self, query) * part(self, document), k, tokens)

    def _lexicon_part(self: SentenceTransformer, embedding: np.ndarray) -> np.ndarray:
        """The K lexicon weights of one embedding (a hybrid's dense part dropped), checked against the
        model."""
        vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.get_embedding_dimension():
            raise ValueError(
                f"embedding has {vector.shape[0]} dimensions, the model {self.get_embedding_dimension()}"
            )
        return vector[: LensSentenceTransformer.lexicon(self).n_clusters]

    def _heaviest(self: SentenceTransformer, weights: np.ndarray, k: int, tokens: int) -> list[Dimension]:
        """The ``k`` largest positive entries of ``weights``, named by their clusters' tokens."""
        LensSentenceTransformer.check_top(self, k)
        order = np.argsort(-weights, kind="stable")[:k]
        return [
            Dimension(int(i), float(weights[i]), LensSentenceTransformer.cluster_tokens(self, int(i), tokens))
            for i in order
            if weights[i] > 0
        ]


def instruction_prompt(*, query: bool, instruction: str | None) -> str | None:
    """The prompt an explicit instruction gives a text: the LENS query prompt
    ``<instruct>{instruction}\\n<query>``; None without one (the side's own prompt then applies). An
    instruction on the document side is refused."""
    if instruction is None:
        return None
    if not query:
        raise ValueError("an instruction applies to queries only: pass query=True")
    return query_prompt(instruction)


def side_prompt(model: SentenceTransformer, *, query: bool, instruction: str | None = None) -> str | None:
    """The prompt a text of this side is embedded with by :func:`encode`; None for no prompt.

    The one place the side's prompt is decided: an instruction gives the LENS query prompt
    (:func:`instruction_prompt`); otherwise the model's own prompt for the side applies, chosen as
    sentence-transformers' ``encode_query`` / ``encode_document`` choose it (:data:`SIDE_PROMPT_NAMES`,
    then ``default_prompt_name``). Token-budget batching counts tokens with it and shard keys record it.

    Args:
        model: the model (LENS or any sentence-transformers model).
        query: the query side (else the document side).
        instruction: the query instruction; None uses the model's ``query`` prompt. Queries only.
    """
    prompt = instruction_prompt(query=query, instruction=instruction)
    if prompt is not None:
        return prompt
    names = SIDE_PROMPT_NAMES["query" if query else "document"]
    name = next((name for name in names if name in model.prompts), model.default_prompt_name)
    return model.prompts.get(name) if name is not None else None


def encode(
    model: SentenceTransformer,
    texts: Sequence[str],
    *,
    query: bool = False,
    instruction: str | None = None,
    batch_size: int = 32,
    show_progress_bar: bool | None = None,
    max_active_dims: int | None = None,
    **encode_kwargs: Any,
) -> np.ndarray:
    """Embed texts as documents, or as instructed queries; validated, (0, dim) for an empty list.

    Args:
        model: A loaded model (LENS or any sentence-transformers model).
        texts: The texts (a list of strings; a single string is refused).
        query: Embed as queries (with the instruction prompt) instead of documents.
        instruction: The query instruction; None uses the model's "query" prompt. Queries only.
        batch_size: Texts per forward pass.
        show_progress_bar: Show a progress bar; None lets sentence-transformers decide.
        max_active_dims: Keep only each vector's N largest lexicon weights
            (:func:`lens_embed.models.pooling.keep_max_active_dims`, the engine's pruning: a hybrid's dense
            part is kept whole, nothing is re-normalised); None keeps all, or a LensSentenceTransformer's
            default (:attr:`LensSentenceTransformer.max_active_dims`).
        **encode_kwargs: Passed on to ``encode_query`` / ``encode_document`` (e.g. ``convert_to_tensor``);
            not ``prompt`` or ``prompt_name``: the side and the instruction decide the prompt
            (:func:`side_prompt`).

    Returns:
        A float32 array [len(texts), dimension].
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single string")
    chosen = sorted({"prompt", "prompt_name"} & set(encode_kwargs))
    if chosen:
        raise TypeError(f"encode() takes no {' or '.join(chosen)}: query= and instruction= decide the prompt")
    texts = list(texts)
    validate_texts(texts)
    prompt = instruction_prompt(query=query, instruction=instruction)  # None: the side's own (side_prompt)
    if max_active_dims is not None:
        checked_max_active_dims(max_active_dims)  # before the texts are embedded
    if not texts:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    options = {"batch_size": batch_size, "show_progress_bar": show_progress_bar, **encode_kwargs}
    # a LENS model of this class prunes in its encode (over its own default); any other model afterwards
    prunes_itself = isinstance(model, LensSentenceTransformer) and model.is_lens_model()
    if prunes_itself and max_active_dims is not None:
        options[MAX_ACTIVE_DIMS_KEY] = max_active_dims
    if query:
        embeddings = model.encode_query(texts, prompt=prompt, **options)
    else:
        embeddings = model.encode_document(texts, **options)
    if max_active_dims is None or prunes_itself:
        return embeddings
    lexicon_dims = (
        LensSentenceTransformer.lexicon(model).n_clusters
        if LensSentenceTransformer.is_lens_model(model)
        else None
    )
    return keep_max_active_dims(embeddings, max_active_dims, lexicon_dims)
