"""lens-embed models inside mteb 2.x: an encoder with the authors' instruction protocol, its
``ModelMeta`` and the loader that makes ``mteb.evaluate`` run a LENS model like a registered one.

Protocol (the authors' mteb-1.x wrapper, ported): retrieval and reranking queries are embedded as
instructed queries, their documents as plain text (mteb already joins ``title + " " + text``);
every text of every other task type (STS, classification, clustering, pair classification,
summarization, ...) is embedded as an instructed query, both sides. The instruction is looked up
on every ``encode`` call from the metadata of the task being run (mteb's own prompt machinery), so
it can never stick from a previous task.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mteb
import numpy as np
from mteb.models import ModelMeta
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ScoringFunction
from mteb.types import PromptType

from lens_embed.model import is_lens_model
from lens_embed.prompts import query_prompt

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata
    from sentence_transformers import SentenceTransformer
    from torch.utils.data import DataLoader

logger = logging.getLogger(__name__)

# Task types whose two sides differ: queries get the instruction, documents are plain text.
ASYMMETRIC_TASK_TYPES = frozenset({"Retrieval", "Reranking", "InstructionRetrieval", "InstructionReranking"})
LENS_CITATION = (
    "@article{lei2025lens, title={Enhancing Lexicon-Based Text Embeddings with Large Language Models}, "
    "author={Lei, Yibin and Shen, Tao and Cao, Yu and Yates, Andrew}, journal={arXiv preprint "
    "arXiv:2501.09749}, year={2025}}"
)
_CONFIG_FILES = ("config.json", "modules.json", "config_sentence_transformers.json", "sentence_bert_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".npy")


def embeds_as_query(task_type: str, prompt_type: PromptType | None) -> bool:
    """Whether a text of this task type and side is an instructed query (else a plain document)."""
    if task_type in ASYMMETRIC_TASK_TYPES:
        return prompt_type != PromptType.document
    return True


class LensEncoder(AbsEncoder):
    """mteb ``EncoderProtocol`` over a sentence-transformers model.

    With ``use_instructions`` (a LENS model) texts are routed per the authors' protocol; without it
    (a plain dense model such as all-MiniLM-L6-v2) every text is encoded as is, exactly as mteb's
    own sentence-transformers wrapper does for a model without prompts.
    """

    def __init__(self, model: SentenceTransformer, meta: ModelMeta, use_instructions: bool | None = None) -> None:
        self.model = model
        self.mteb_model_meta = meta
        self.use_instructions = bool(meta.use_instructions) if use_instructions is None else use_instructions

    def instruction_for(self, task_metadata: TaskMetadata, prompt_type: PromptType | None) -> str | None:
        """The instruction for this task and side, or None for a plain document."""
        if not self.use_instructions or not embeds_as_query(task_metadata.type, prompt_type):
            return None
        return self.get_instruction(task_metadata, PromptType.query)

    def encode(
        self,
        inputs: DataLoader[Any],
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embed every text of the dataloader for the task being run; always returns an array."""
        texts = [text for batch in inputs for text in batch["text"]]
        options = {
            "batch_size": int(kwargs.get("batch_size") or 32),
            "show_progress_bar": bool(kwargs.get("show_progress_bar", True)),
            "convert_to_numpy": True,
        }
        if not self.use_instructions:
            embeddings = self.model.encode(texts, **options)
        elif (instruction := self.instruction_for(task_metadata, prompt_type)) is None:
            embeddings = self.model.encode_document(texts, **options)
        else:
            logger.info("Task %s: instruction %r", task_metadata.name, instruction)
            embeddings = self.model.encode_query(texts, prompt=query_prompt(instruction), **options)
        return np.asarray(embeddings, dtype=np.float32)


def model_revision(path: str | Path) -> str:
    """A content revision of a model folder: changes whenever its config or weights change.

    Hashes the config files and, for weight files, their size plus first and last MiB, so a
    multi-GB checkpoint gets a stable id in well under a second.
    """
    root = Path(path)
    digest = hashlib.sha1()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = file.relative_to(root).as_posix()
        if file.name in _CONFIG_FILES:
            digest.update(relative.encode() + file.read_bytes())
        elif file.suffix in _WEIGHT_SUFFIXES:
            size = file.stat().st_size
            with file.open("rb") as handle:
                head = handle.read(1 << 20)
                handle.seek(max(0, size - (1 << 20)))
                tail = handle.read(1 << 20)
            digest.update(relative.encode() + str(size).encode() + head + tail)
    return digest.hexdigest()[:12]


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


def build_model_meta(
    model: SentenceTransformer,
    path: str | Path,
    name: str | None = None,
    revision: str | None = None,
    adapted_from: str | None = None,
    use_instructions: bool | None = None,
) -> ModelMeta:
    """Real metadata measured on the loaded model; registry facts (training data) where known."""
    path = Path(path)
    registered = _registered_meta(name)
    base = _registered_meta(adapted_from)
    instructed = is_lens_model(model) if use_instructions is None else use_instructions
    return ModelMeta(
        loader=lens_loader,
        loader_kwargs={"model_path": str(path)},
        name=name or f"lens-embed/{path.name}",
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
    )


def load_encoder(
    model_path: str | Path,
    name: str | None = None,
    revision: str | None = None,
    device: str | None = None,
    adapted_from: str | None = None,
) -> LensEncoder:
    """Load a lens-embed (or any sentence-transformers) model folder as an mteb encoder."""
    from lens_embed import load_lens_model

    model = load_lens_model(model_path, device=device)
    meta = build_model_meta(model, model_path, name=name, revision=revision, adapted_from=adapted_from)
    return LensEncoder(model, meta)


def lens_loader(model_name: str, revision: str | None = None, *, model_path: str | None = None, **kwargs: Any) -> LensEncoder:
    """``ModelMeta.loader``: what ``mteb.evaluate(meta, tasks)`` calls to get the encoder."""
    return load_encoder(
        model_path or model_name,
        name=model_name,
        revision=revision,
        device=kwargs.get("device"),
        adapted_from=kwargs.get("adapted_from"),
    )


def released_lens_meta(name: str) -> ModelMeta:
    """mteb's registry entry for a released LENS model (``loader=None`` there) with our loader set."""
    registered = _registered_meta(name)
    if registered is None or not name.startswith("yibinlei/LENS"):
        raise KeyError(f"{name!r} is not a released LENS model in mteb's registry (yibinlei/LENS-d4000, -d8000)")
    return registered.model_copy(update={"loader": lens_loader, "loader_kwargs": {"model_path": name}})
