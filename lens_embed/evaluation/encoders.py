"""The mteb encoders an evaluation runs: a loaded model (LENS or plain), its ``ModelMeta`` and loader,
and the two baselines.

- :class:`LoadedModelEncoder`: mteb's own ``InstructSentenceTransformerModel``, built with the arguments a
  submission kit's registry entry declares (:func:`instruct_kwargs`), around a model loaded by
  lens-embed's one loader. mteb's ``encode`` embeds every text: its lookup gives each task side the
  instruction of an :class:`~lens_embed.evaluation.instructions.Instructions` source (the authors' map by
  default: the protocol of their mteb-1.x evaluation, ported) from the metadata of the task being run, so
  it never sticks from a previous task, and its template makes it the LENS query prompt; documents of
  retrieval-type tasks get no prompt and are embedded as they are (mteb already joins
  ``title + " " + text``).
- :class:`PlainModelEncoder`: mteb's own ``SentenceTransformerEncoderWrapper`` over a loaded model, for a
  model evaluated without instructions (the dense baseline).
- :func:`build_model_meta` / :func:`load_encoder` / :func:`lens_loader`: real metadata measured on the
  model, and the loader that makes ``mteb.evaluate(meta, tasks)`` run a LENS model like a registered one.
- :func:`dense_minilm` and :func:`bm25`: the baselines every run can put beside a model. Both use
  mteb's registry metadata, so their results land in the same folders (and under the same revisions)
  as the leaderboard's, and a score here is directly comparable with the published one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mteb
import torch
from datasets import Dataset
from mteb.models import ModelMeta
from mteb.models.instruct_wrapper import InstructSentenceTransformerModel
from mteb.models.model_meta import ScoringFunction
from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper
from sentence_transformers import SentenceTransformer
from torch.utils.data import DataLoader

from lens_embed.base.citation import LENS_CITATION
from lens_embed.base.defaults import TRAINING_RECORD, authors_dtype, minilm_path
from lens_embed.base.storage import is_released_name
from lens_embed.evaluation.instructions import (
    LENS_INSTRUCTION_TEMPLATE,
    Instructions,
    Prompt,
    load_instructions,
)
from lens_embed.evaluation.results import model_revision
from lens_embed.models.loading import load_lens_model
from lens_embed.models.model import LensSentenceTransformer
from lens_embed.models.pooling import keep_max_active_dims

DEFAULT_INSTRUCTIONS = "authors"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BM25_NAME = "mteb/baseline-bm25s"
# Task types BM25 can run: it is a search model, not an encoder.
BM25_TASK_TYPES = frozenset({"Retrieval"})
# The hub id a sentence-transformers model card loads itself with: SentenceTransformer("org/name").
_CARD_ID = re.compile(r"SentenceTransformer\(\s*['\"]([\w.-]+/[\w.-]+)['\"]")


def instruct_kwargs(prompts: dict[str, Prompt]) -> dict[str, Any]:
    """The arguments of mteb's ``InstructSentenceTransformerModel`` for a LENS model: the LENS template,
    instructions on every side mteb's lookup gives one (a retrieval task's documents get none, see
    :func:`lens_embed.evaluation.instructions.prompt_entry`), and ``prompts`` (mteb's ``prompts_dict``).
    Evaluation and a registry entry use these same arguments."""
    return {
        "instruction_template": LENS_INSTRUCTION_TEMPLATE,
        "apply_instruction_to_passages": True,
        "trust_remote_code": True,  # the model's modules travel as modeling_lens.py (see Sharing a model)
        "prompts_dict": prompts,
    }


class ActiveDimsPruning(torch.nn.Module):
    """The last step of an evaluated model's forward: each sentence embedding keeps its N largest lexicon
    weights (:func:`lens_embed.models.pooling.keep_max_active_dims`, the engine's pruning: a hybrid's dense
    part is kept whole, nothing is re-normalised), so mteb's ``encode`` returns pruned vectors."""

    def __init__(self, max_active_dims: int, lexicon_dims: int) -> None:
        super().__init__()
        self.max_active_dims = max_active_dims
        self.lexicon_dims = lexicon_dims

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        embeddings = features["sentence_embedding"]
        features["sentence_embedding"] = keep_max_active_dims(
            embeddings, self.max_active_dims, self.lexicon_dims
        )
        return features


class LoadedModelEncoder(InstructSentenceTransformerModel):
    """mteb's ``InstructSentenceTransformerModel`` around a model lens-embed has already loaded.

    mteb's class loads its model by name with plain sentence-transformers; this one hands it the model
    from :func:`lens_embed.models.loading.load_lens_model` (its refusals and checks, dtype, attention kernel)
    as the one module of the ``SentenceTransformer`` mteb builds, so nothing is loaded twice and the model's
    weights and modules are untouched. Everything else is mteb's: its ``__init__`` with
    :func:`instruct_kwargs`, its lookup, its template and its ``encode``, which calls
    ``model.encode(texts, prompt=...)``. The side of every text follows from that prompt (LENS'
    :class:`~lens_embed.modules.LensTransformer` rule: a prompt ending in ``<query>`` is a query, from the
    ``<query>`` that closes it; no prompt, a document, whatever its text holds), giving the same token ids
    as the router :func:`lens_embed.models.model.encode`.

    Args:
        model: the loaded sentence-transformers model (LENS, or a plain one trained to read instructions).
        meta: its mteb ``ModelMeta``.
        instructions: the instruction source (default: the authors' map).
        max_active_dims: keep each LENS vector's N largest lexicon weights (:class:`ActiveDimsPruning`,
            a step after the model's own); None keeps them all.

    Raises:
        ValueError: ``max_active_dims`` for a model that is not a LENS model (it has no lexicon).
    """

    def __init__(
        self,
        model: SentenceTransformer,
        meta: ModelMeta,
        instructions: Instructions | None = None,
        max_active_dims: int | None = None,
    ) -> None:
        instructions = instructions or load_instructions(DEFAULT_INSTRUCTIONS)
        pruning = (
            [ActiveDimsPruning(max_active_dims, LensSentenceTransformer.lexicon(model).n_clusters)]
            if max_active_dims is not None
            else []
        )
        super().__init__(
            None,  # no name to load: the model is handed over as a module
            str(meta.revision),
            modules=[model, *pruning],
            device=str(model.device),
            prompts=model.prompts,
            default_prompt_name=model.default_prompt_name,
            **instruct_kwargs(instructions.prompts),
        )
        self.loaded = model
        self.mteb_model_meta = meta
        self.instructions = instructions
        self.max_active_dims = max_active_dims

    def protocol(self) -> dict[str, Any]:
        """What decides the embeddings beyond the weights: recorded beside the results."""
        pruning = {} if self.max_active_dims is None else {"max_active_dims": self.max_active_dims}
        return {**self.instructions.describe(), **LensSentenceTransformer.settings(self.loaded), **pruning}


class PlainModelEncoder(SentenceTransformerEncoderWrapper):
    """mteb's ``SentenceTransformerEncoderWrapper`` over a loaded model evaluated without instructions (the
    dense baseline): mteb's own encoder for a plain sentence-transformers model, under the given metadata."""

    def __init__(self, model: SentenceTransformer, meta: ModelMeta) -> None:
        super().__init__(model)
        self.loaded = model
        self.mteb_model_meta = meta

    def protocol(self) -> dict[str, Any]:
        """What decides the embeddings beyond the weights: recorded beside the results."""
        return {"instructions": None, **LensSentenceTransformer.settings(self.loaded)}


def model_encoder(
    model: SentenceTransformer,
    meta: ModelMeta,
    instructions: Instructions | None = None,
    max_active_dims: int | None = None,
) -> LoadedModelEncoder | PlainModelEncoder:
    """The encoder a loaded model is evaluated with: instructed when its metadata says it uses
    instructions, else plain.

    Raises:
        ValueError: ``max_active_dims`` for a model that is not a LENS model.
    """
    if max_active_dims is not None and not LensSentenceTransformer.is_lens_model(model):
        raise ValueError(
            f"--max-active-dims prunes LENS lexicon vectors, and {meta.name} is not a LENS model"
        )
    if meta.use_instructions:
        return LoadedModelEncoder(model, meta, instructions, max_active_dims)
    return PlainModelEncoder(model, meta)


def text_loader(texts: Sequence[str], batch_size: int = 32) -> DataLoader:
    """Texts as the dataloader mteb's ``encode`` takes (a ``text`` column, as mteb's own loader of texts)."""
    return DataLoader(Dataset.from_dict({"text": list(texts)}), batch_size=batch_size)


def _weights(model: SentenceTransformer) -> list[Any]:
    """Parameters plus floating-point buffers: LENS keeps its frozen centroid head as a buffer."""
    buffers = [b for b in model.buffers() if b.is_floating_point()]
    return [*model.parameters(), *buffers]


def _registered_meta(name: str | None) -> ModelMeta | None:
    """mteb's registry entry for a model name, when there is one (offline: the registry is local)."""
    if not name:
        return None
    try:
        return mteb.get_model_meta(name, fetch_from_hf=False)
    except (KeyError, ValueError, TypeError):
        return None


def card_name(path: str | Path) -> str | None:
    """The hub id a plain sentence-transformers folder holds, read from its model card's usage line."""
    readme = Path(path) / "README.md"
    if not readme.is_file():
        return None
    match = _CARD_ID.search(readme.read_text(encoding="utf-8", errors="replace"))
    return match.group(1) if match else None


def default_name(model: SentenceTransformer, path: str | Path) -> str:
    """``lens-embed/<folder>`` for a LENS model; a plain folder is named after the model its card names,
    unless lens-embed trained it (its card is the base model's: its results must not pass for the base's)."""
    path = Path(path)
    if LensSentenceTransformer.is_lens_model(model):
        return f"lens-embed/{path.name}"
    if (path / TRAINING_RECORD).is_file():
        return f"local/{path.name}"
    return card_name(path) or f"local/{path.name}"


def evaluation_dtype(dtype: str | None, device: str | None) -> str:
    """The dtype asked for; else the authors' protocol on the device the model goes to
    (:func:`lens_embed.base.defaults.authors_dtype`: float16 on CUDA, float32 elsewhere)."""
    if dtype:
        return dtype
    return authors_dtype(str(device).startswith("cuda") if device else torch.cuda.is_available())


def build_model_meta(
    model: SentenceTransformer,
    path: str | Path,
    name: str | None = None,
    revision: str | None = None,
    adapted_from: str | None = None,
    use_instructions: bool | None = None,
    instructions: Instructions | None = None,
    max_active_dims: int | None = None,
) -> ModelMeta:
    """Real metadata measured on the loaded model; registry facts (training data) where known.

    Instructions other than the default, and pruned vectors (``max_active_dims``), are an mteb
    *experiment* (``experiment_kwargs``), so their results live in their own folder and never mix with
    the default protocol's.
    """
    path = Path(path)
    name = name or default_name(model, path)
    registered = _registered_meta(name)
    base = _registered_meta(adapted_from)
    instructed = (
        LensSentenceTransformer.is_lens_model(model) if use_instructions is None else use_instructions
    )
    source = instructions.source if instructions is not None else DEFAULT_INSTRUCTIONS
    experiment = {"instructions": source} if instructed and source != DEFAULT_INSTRUCTIONS else {}
    if max_active_dims is not None:
        experiment["max_active_dims"] = max_active_dims
    return ModelMeta(
        loader=lens_loader,
        loader_kwargs={"model_path": str(path)},
        name=name,
        revision=revision or (registered.revision if registered else None) or model_revision(path),
        release_date=registered.release_date if registered else None,
        languages=["eng-Latn"],
        n_parameters=sum(t.numel() for t in _weights(model)),
        memory_usage_mb=round(sum(t.numel() * t.element_size() for t in _weights(model)) / 2**20, 1),
        max_tokens=float(model.max_seq_length) if model.max_seq_length else None,
        embed_dim=int(model.get_embedding_dimension()),
        license=registered.license if registered else None,
        open_weights=True,
        public_training_code=registered.public_training_code if registered else None,
        public_training_data=registered.public_training_data if registered else None,
        framework=["Sentence Transformers", "PyTorch"],
        reference=registered.reference if registered else None,
        similarity_fn_name=ScoringFunction.COSINE,
        use_instructions=instructed,
        training_datasets=(registered or base).training_datasets if (registered or base) else None,
        adapted_from=adapted_from,
        citation=LENS_CITATION if instructed else (registered.citation if registered else None),
        experiment_kwargs=experiment or None,
    )


def load_encoder(
    model_path: str | Path,
    name: str | None = None,
    revision: str | None = None,
    device: str | None = None,
    adapted_from: str | None = None,
    *,
    dtype: str | None = None,
    attn_implementation: str | None = None,
    instructions: str = DEFAULT_INSTRUCTIONS,
    max_active_dims: int | None = None,
    backend: str = "torch",
    file_name: str | None = None,
) -> LoadedModelEncoder | PlainModelEncoder:
    """Load a lens-embed (or any sentence-transformers) model folder, or a released name, as an mteb encoder.

    Args:
        model_path: model folder or released LENS name.
        name: the model's name in the results (default: :func:`default_name`).
        revision: default: the registry's revision, else a content hash of the folder.
        device: torch device.
        adapted_from: the base model's registry name (its training data is recorded).
        dtype: one of :data:`lens_embed.base.defaults.DTYPES`; default :func:`evaluation_dtype`.
        attn_implementation: one of :data:`lens_embed.base.defaults.ATTN_IMPLEMENTATIONS` (default:
            transformers' choice).
        instructions: ``authors``, ``mteb`` or a JSON file (see :func:`load_instructions`).
        max_active_dims: prune each LENS vector to its N largest lexicon weights (an mteb experiment).
        backend: ``torch``, or ``onnx`` / ``openvino`` to run the folder's export ``file_name``
            (:func:`lens_embed.models.loading.load_lens_model`; recorded in the results' protocol).
        file_name: the export to run, as sentence-transformers' ``model_kwargs["file_name"]``.
    """
    source = load_instructions(instructions)
    exported = {} if file_name is None else {"model_kwargs": {"file_name": file_name}}
    model = load_lens_model(
        model_path,
        device=device,
        dtype=evaluation_dtype(dtype, device),
        attn_implementation=attn_implementation,
        backend=backend,
        **exported,
    )
    meta = build_model_meta(
        model,
        model_path,
        name=name,
        revision=revision,
        adapted_from=adapted_from,
        instructions=source,
        max_active_dims=max_active_dims,
    )
    return model_encoder(model, meta, source, max_active_dims)


def lens_loader(
    model_name: str, revision: str | None = None, *, model_path: str | None = None, **kwargs: Any
) -> LoadedModelEncoder | PlainModelEncoder:
    """``ModelMeta.loader``: what ``mteb.evaluate(meta, tasks)`` calls to get the encoder."""
    return load_encoder(
        model_path or model_name,
        name=model_name,
        revision=revision,
        device=kwargs.get("device"),
        adapted_from=kwargs.get("adapted_from"),
        dtype=kwargs.get("dtype"),
        attn_implementation=kwargs.get("attn_implementation"),
        instructions=kwargs.get("instructions") or DEFAULT_INSTRUCTIONS,
        max_active_dims=kwargs.get("max_active_dims"),
    )


def released_lens_meta(name: str) -> ModelMeta:
    """mteb's registry entry for a released LENS model (``loader=None`` there) with our loader set."""
    registered = _registered_meta(name)
    if registered is None or not is_released_name(name):
        raise ValueError(
            f"{name!r} is not a released LENS model in mteb's registry (yibinlei/LENS-d4000, -d8000)"
        )
    return registered.model_copy(update={"loader": lens_loader, "loader_kwargs": {"model_path": name}})


def minilm_meta() -> ModelMeta:
    """mteb's registry entry, unchanged: revision 8b3219a9, the one the published scores used.

    The offline weights are that revision; the encoder is built here (``dense_minilm``), so the
    registry's hub loader is never called and ``model_meta.json`` carries no local path."""
    return mteb.get_model_meta(MINILM_NAME)


def dense_minilm(
    device: str | None = None, dtype: str | None = None, attn_implementation: str | None = None
) -> PlainModelEncoder:
    """The dense baseline as an mteb encoder: plain texts, no instructions (as it was published)."""
    model = load_lens_model(
        minilm_path(),
        device=device,
        dtype=evaluation_dtype(dtype, device),
        attn_implementation=attn_implementation,
    )
    return PlainModelEncoder(model, minilm_meta())


def bm25() -> mteb.models.SearchProtocol:
    """mteb's own bm25s baseline (English stopwords + Snowball stemmer; needs PyStemmer)."""
    return mteb.get_model(BM25_NAME)
