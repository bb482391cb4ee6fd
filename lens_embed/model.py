"""The LENS model: one class, the one router, and the facts read off a model object.

:class:`LensSentenceTransformer` is the ``SentenceTransformer`` every LENS model lens-embed makes or
loads is; its ``save`` writes a self-contained folder (:mod:`lens_embed.portable`) and the LENS card
(:mod:`lens_embed.card`), handing both plain data. :func:`encode` is the one router of texts to the
query or document side; :func:`side_prompt` says which prompt a side gets. :func:`model_facts`,
:func:`model_provenance`, :func:`model_settings` and :func:`record_base_model` read or note what the
card, the results and the shard keys need to know about a model.

Making models (:mod:`lens_embed.build`, :mod:`lens_embed.convert`) and loading them
(:mod:`lens_embed.loading`) sit above this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from lens_embed.backbone import is_bidirectional, is_decoder_config
from lens_embed.card import (
    ModelFacts,
    Provenance,
    base_model_license,
    card_provenance,
    merge_provenance,
    write_card,
)
from lens_embed.modules import LexiconPooling, validate_texts
from lens_embed.pooling import checked_max_active_dims, keep_max_active_dims
from lens_embed.portable import make_portable
from lens_embed.prompts import query_prompt
from lens_embed.safety import MODELING_MODULE

# The prompt names sentence-transformers' encode_query / encode_document look for, in this order, when
# the call names none (then the model's default_prompt_name applies).
SIDE_PROMPT_NAMES = {"query": ("query",), "document": ("document", "passage", "corpus")}


class LensSentenceTransformer(SentenceTransformer):
    """A ``SentenceTransformer`` that saves a LENS model as a shareable folder.

    Every save path goes through ``save`` (``save_pretrained``, ``push_to_hub``, the trainer's
    checkpoints and final model), which adds ``modeling_lens.py`` (and points ``modules.json`` at
    it) and writes the LENS model card instead of sentence-transformers' generic one. Models
    without LENS modules save exactly as sentence-transformers saves them. The frozen head stays float32
    whatever the backbone's dtype (sentence-transformers casts every module to the first one's dtype).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if is_lens_model(self):
            lexicon_pooling(self).float()

    def save(
        self,
        path: str,
        model_name: str | None = None,
        create_model_card: bool = True,
        train_datasets: list[str] | None = None,
        safe_serialization: bool = True,
    ) -> None:
        lens = is_lens_model(self)
        super().save(path, model_name, create_model_card and not lens, train_datasets, safe_serialization)
        if not lens:
            return
        make_portable(path)
        if create_model_card:
            model_id = model_name if model_name and not Path(model_name).exists() else None
            write_card(path, model_facts(self), **model_provenance(self, model_id=model_id))


def _is_lexicon_pooling(module: torch.nn.Module) -> bool:
    """lens-embed's LexiconPooling, or the copy a folder's ``modeling_lens.py`` defines (the same code,
    loaded by plain sentence-transformers with ``trust_remote_code=True``)."""
    cls = type(module)
    return isinstance(module, LexiconPooling) or (
        cls.__name__ == LexiconPooling.__name__ and cls.__module__.rsplit(".", 1)[-1] == MODELING_MODULE
    )


def is_lens_model(model: SentenceTransformer) -> bool:
    """Whether the model ends in LENS' lexicon pooling."""
    return any(_is_lexicon_pooling(module) for module in model)


def lexicon_pooling(model: SentenceTransformer) -> LexiconPooling:
    """The model's LexiconPooling module, or a clear error for other models."""
    for module in model:
        if _is_lexicon_pooling(module):
            return module
    raise ValueError("this is not a LENS model: it has no LexiconPooling module")


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
            (:func:`lens_embed.pooling.keep_max_active_dims`, the engine's pruning: a hybrid's dense part
            is kept whole, nothing is re-normalised); None keeps all.
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
    if query:
        embeddings = model.encode_query(texts, prompt=prompt, **options)
    else:
        embeddings = model.encode_document(texts, **options)
    if max_active_dims is None:
        return embeddings
    lexicon_dims = lexicon_pooling(model).n_clusters if is_lens_model(model) else None
    return keep_max_active_dims(embeddings, max_active_dims, lexicon_dims)


def model_facts(model: SentenceTransformer) -> ModelFacts:
    """The card's facts, read off a loaded LENS model (a clear error for other models)."""
    pooling = lexicon_pooling(model)
    config = model[0].auto_model.config
    return ModelFacts(
        n_clusters=pooling.n_clusters,
        embedding_dimension=int(model.get_embedding_dimension()),
        backbone=config.model_type,
        decoder=is_decoder_config(config),
        bidirectional=is_bidirectional(config),
        dense_pooling=pooling.dense_pooling,
        dense_weight=pooling.dense_weight,
        max_seq_length=model.max_seq_length,
        prompts={name: text for name, text in model.prompts.items() if text is not None},
        truncation_keeps_eos=bool(getattr(model[0], "truncation_keeps_eos", True)),
    )


def model_settings(model: Any) -> dict[str, Any]:
    """dtype, attention kernel, maximum length and truncation of a sentence-transformers model, the
    per-position top-k when set, and the backend and export file when not torch: what decides its embeddings
    beyond the weights (recorded beside results, part of every shard key). The top-k and the backend are
    named only when they differ from the default, so the keys of every other model are those it always had."""
    if not isinstance(model, torch.nn.Module):
        return {}
    first = next(iter(model.parameters()), None)
    module = model[0]
    config = getattr(getattr(module, "auto_model", None), "config", None)
    settings = {
        "dtype": str(first.dtype).removeprefix("torch.") if first is not None else None,
        # transformers has no public name for the kernel a loaded model runs (only this property)
        "attn_implementation": getattr(config, "_attn_implementation", None),
        "max_seq_length": model.max_seq_length,
        "truncation_keeps_eos": getattr(module, "truncation_keeps_eos", None),
    }
    top_k = getattr(lexicon_pooling(model), "position_top_k", None) if is_lens_model(model) else None
    if top_k is not None:
        settings["position_top_k"] = top_k
    backend = getattr(module, "backend", "torch")
    if backend != "torch":  # an exported backbone (lens_embed.exported): which file ran, int8 or not
        settings.update(backend=backend, file_name=getattr(module.auto_model, "file_name", None))
    return settings


def record_base_model(model: SentenceTransformer, base_model: str | Path) -> None:
    """Note on the model (its ``model_card_data``) what it was made from and under which licence.

    A hub id is recorded as the card's ``base_model``; a local folder is not (the hub could not link
    it), but the licence in its card is still read.
    """
    model.model_card_data.license = base_model_license(base_model)
    model.model_card_data.base_model = None if Path(base_model).exists() else str(base_model)


def model_provenance(model: SentenceTransformer, model_id: str | None = None) -> dict[str, Any]:
    """Provenance of an in-memory model: the card it was loaded with, then what sentence-transformers'
    ``model_card_data`` knows now (base model, licence, and after training its datasets and settings)."""
    data = model.model_card_data
    recorded = (
        card_provenance(model._model_card_text) if getattr(model, "_model_card_text", None) else Provenance()
    )
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
