"""The authors' protocol per task type, and instructions that follow the task being run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import mteb
import numpy as np
import pytest
from mteb.types import PromptType

from lens_embed.evaluation.encoders import LoadedModelEncoder, minilm_meta
from lens_embed.evaluation.instructions import embeds_as_query
from lens_embed.evaluation.offline import offline_tasks
from lens_embed.evaluation.runner import ModelRun, evaluate_runs
from lens_embed.prompts import query_prompt


class RecordingModel:
    """Stands in for a LENS sentence-transformers model: records every call, returns stable vectors."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, int]] = []

    @staticmethod
    def _vectors(texts: list[str]) -> np.ndarray:
        seeds = [int(hashlib.md5(t.encode()).hexdigest()[:8], 16) for t in texts]
        return np.stack([np.random.default_rng(s).standard_normal(16) for s in seeds]).astype(np.float32)

    def encode_query(self, texts: list[str], prompt: str | None = None, **kwargs) -> np.ndarray:
        self.calls.append(("query", prompt, len(texts)))
        return self._vectors(texts)

    def encode_document(self, texts: list[str], **kwargs) -> np.ndarray:
        self.calls.append(("document", None, len(texts)))
        return self._vectors(texts)

    def encode(self, texts: list[str], **kwargs) -> np.ndarray:
        self.calls.append(("plain", kwargs.get("prompt"), len(texts)))
        return self._vectors(texts)


def _lens_encoder(model: RecordingModel) -> LoadedModelEncoder:
    meta = minilm_meta().model_copy(
        update={"name": "test/recording-lens", "revision": "r1", "use_instructions": True}
    )
    return LoadedModelEncoder(model, meta)


def _batches(texts: list[str]) -> list[dict[str, list[str]]]:
    return [{"text": texts}]


@pytest.mark.parametrize(
    ("task_type", "prompt_type", "expected"),
    [
        ("Retrieval", PromptType.query, True),
        ("Retrieval", PromptType.document, False),
        ("Reranking", PromptType.document, False),
        ("STS", None, True),
        ("Classification", None, True),
        ("Clustering", None, True),
        ("PairClassification", PromptType.document, True),
        ("Summarization", PromptType.document, True),
    ],
)
def test_protocol_by_task_type(task_type: str, prompt_type: PromptType | None, expected: bool) -> None:
    assert embeds_as_query(task_type, prompt_type == PromptType.document) is expected


def test_instruction_follows_each_task_and_never_sticks() -> None:
    model = RecordingModel()
    encoder = _lens_encoder(model)
    scifact, sts12, banking = (
        mteb.get_task(n).metadata for n in ("SciFact", "STS12", "Banking77Classification")
    )
    sequence = [
        (scifact, PromptType.query),
        (scifact, PromptType.document),
        (sts12, None),
        (banking, None),
        (scifact, PromptType.query),
    ]
    for metadata, prompt_type in sequence:
        encoder.encode(
            _batches(["a text"]),
            task_metadata=metadata,
            hf_split="test",
            hf_subset="default",
            prompt_type=prompt_type,
        )
    assert model.calls == [  # the authors' instructions: their map, "." appended
        (
            "query",
            query_prompt("Given a scientific claim, retrieve documents that support or refute the claim."),
            1,
        ),
        ("document", None, 1),
        ("query", query_prompt("Retrieve semantically similar text."), 1),
        ("query", query_prompt("Given a online banking query, find the corresponding intents."), 1),
        (
            "query",
            query_prompt("Given a scientific claim, retrieve documents that support or refute the claim."),
            1,
        ),
    ]


def test_dense_baseline_gets_plain_text() -> None:
    model = RecordingModel()
    encoder = LoadedModelEncoder(model, minilm_meta(), use_instructions=False)
    metadata = mteb.get_task("STS12").metadata
    embeddings = encoder.encode(
        _batches(["x", "y"]), task_metadata=metadata, hf_split="test", hf_subset="default"
    )
    assert model.calls == [("plain", None, 2)]
    assert embeddings.shape == (2, 16) and embeddings.dtype == np.float32  # an array even with no batch size


def test_routing_inside_mteb_evaluate(small_data_dir: Path, tmp_path: Path) -> None:
    """Through mteb's own evaluators: STS both sides instructed; retrieval queries instructed, docs plain."""
    model = RecordingModel()
    tasks = offline_tasks(small_data_dir, names=["SliceSTS16", "SliceSciFact"])
    evaluate_runs([ModelRun("rec", lambda: _lens_encoder(model))], tasks, tmp_path)
    sts_prompt = query_prompt("Retrieve semantically similar text.")
    retrieval_prompt = query_prompt(
        "Retrieve text based on user query."
    )  # the authors' default for Retrieval
    kinds = [(kind, prompt) for kind, prompt, _ in model.calls]
    assert set(kinds) == {("query", sts_prompt), ("query", retrieval_prompt), ("document", None)}
    assert kinds.index(("query", retrieval_prompt)) > max(
        i for i, k in enumerate(kinds) if k == ("query", sts_prompt)
    )
    documents = sum(n for kind, _, n in model.calls if kind == "document")
    corpus_size = sum(1 for _ in (small_data_dir / "retrieval" / "SliceSciFact" / "corpus.jsonl").open())
    assert documents == corpus_size
