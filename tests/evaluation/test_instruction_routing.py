"""The authors' protocol per task type, and instructions that follow the task being run."""

from __future__ import annotations

from pathlib import Path

import mteb
import numpy as np
import pytest
from mteb.types import PromptType

from lens_embed.base.prompts import query_prompt
from lens_embed.evaluation.encoders import LoadedModelEncoder, PlainModelEncoder, minilm_meta, text_loader
from lens_embed.evaluation.instructions import embeds_as_query
from lens_embed.evaluation.offline import offline_tasks
from lens_embed.evaluation.runner import ModelRun, evaluate_runs
from lens_embed.models.loading import load_lens_model
from lens_embed.modules import QUERY_MARKER


class SideRecorder:
    """Records every batch of texts that reaches a model's first module, as the model sees it: ``(side,
    prompt, rows)``, the side read from the per-row marker LENS pools by ("plain" for a model without one),
    the prompt of a query (None for a document). sentence-transformers' own tokenizing of a prompt alone
    (for its length), made inside a batch's, is no batch of texts and is not recorded."""

    def __init__(self, model) -> None:
        self.calls: list[tuple[str, str | None, int]] = []
        self.depth = 0
        module = model[0]
        preprocess = module.preprocess

        def recording(inputs, prompt=None, **kwargs):
            self.depth += 1
            try:
                features = preprocess(inputs, prompt=prompt, **kwargs)
            finally:
                self.depth -= 1
            if self.depth:
                return features
            markers = features.get(QUERY_MARKER)
            if markers is None:
                self.calls.append(("plain", prompt or None, len(inputs)))
            else:
                [marker] = set(markers.tolist())  # one side per call
                side = "query" if marker else "document"
                self.calls.append((side, prompt if marker else None, len(inputs)))
            return features

        module.preprocess = recording


def _lens_encoder(folder: Path) -> tuple[LoadedModelEncoder, SideRecorder]:
    model = load_lens_model(folder, device="cpu")
    meta = minilm_meta().model_copy(
        update={"name": "test/recording-lens", "revision": "r1", "use_instructions": True}
    )
    return LoadedModelEncoder(model, meta), SideRecorder(model)


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


def test_instruction_follows_each_task_and_never_sticks(tiny_lens: Path) -> None:
    encoder, model = _lens_encoder(tiny_lens)
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
            text_loader(["a text"]),
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


def test_dense_baseline_gets_plain_text(minilm) -> None:
    encoder = PlainModelEncoder(minilm, minilm_meta())
    model = SideRecorder(minilm)
    metadata = mteb.get_task("STS12").metadata
    try:
        embeddings = encoder.encode(
            text_loader(["x", "y"]), task_metadata=metadata, hf_split="test", hf_subset="default"
        )
    finally:
        del minilm[0].preprocess  # the session's model, as it was
    assert model.calls == [("plain", None, 2)]
    assert embeddings.shape == (2, 384) and embeddings.dtype == np.float32  # an array even with no batch size


def test_routing_inside_mteb_evaluate(tiny_lens: Path, small_data_dir: Path, tmp_path: Path) -> None:
    """Through mteb's own evaluators: STS both sides instructed; retrieval queries instructed, docs plain."""
    encoder, model = _lens_encoder(tiny_lens)
    tasks = offline_tasks(small_data_dir, names=["SliceSTS16", "SliceSciFact"])
    evaluate_runs([ModelRun("rec", lambda: encoder)], tasks, tmp_path)
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
