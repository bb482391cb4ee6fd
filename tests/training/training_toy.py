"""Toy training data for the training tests (importable by tests and fixtures alike)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from transformers import TrainerCallback

from lens_embed.training.config import TrainConfig

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "what is the reserve bank of australia",
    "oilskin jackets are similar to rubberized waterproofs",
    "lexicon based embeddings map text onto vocabulary clusters",
    "large language models attend over every token of a passage",
    "given a web search query retrieve relevant passages",
    "retrieve semantically similar text",
    "since 2007 the bank reputation has been affected by a scandal",
    "a man is playing a guitar on the street while people watch",
    "the cat sat quietly on the warm windowsill all afternoon",
    "interest rates were raised by the central bank in march",
    "a child is flying a red kite in the park",
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def retrieval_rows(with_negatives: bool = True, seed: int = 0) -> list[dict]:
    """Query = a sentence's first words, positive = the sentence, negatives = other sentences."""
    rng = random.Random(seed)
    rows = []
    for sentence in SENTENCES:
        others = [other for other in SENTENCES if other != sentence]
        rows.append(
            {
                "query": " ".join(sentence.split()[:4]),
                "pos": [sentence],
                "neg": rng.sample(others, 2) if with_negatives else [],
                "type": "retrieval",
                "prompt": "Find the sentence",
            }
        )
    return rows


def classification_rows() -> list[dict]:
    """Symmetric classification rows: a text, a same-label text as positive, other labels as negatives."""
    labels = {"bank": [1, 7, 10], "animal": [0, 9], "leisure": [8, 11]}
    rows = []
    for label, members in labels.items():
        others = [SENTENCES[i] for name, group in labels.items() if name != label for i in group]
        for member in members:
            positive = SENTENCES[members[(members.index(member) + 1) % len(members)]]
            rows.append(
                {
                    "query": SENTENCES[member],
                    "pos": [positive],
                    "neg": others[:3],
                    "type": "symmetric_class",
                    "prompt": "Classify the topic",
                }
            )
    return rows


def toy_config(tiny_lens: Path, data: list[Path], output: Path, **overrides) -> TrainConfig:
    """A run on the tiny model that trains in seconds: small batches, no warmup, a log line per step."""
    values = dict(
        model=str(tiny_lens),
        data=[str(path) for path in data],
        output=str(output),
        batch_size=4,
        group_size=3,
        learning_rate=1e-3,
        warmup_steps=0,
        logging_steps=1,
        save_steps=1000,
        report_to=[],
        seed=7,
    )
    values.update(overrides)
    return TrainConfig(**values)


class StopAt(TrainerCallback):
    """Simulate a crash right after the checkpoint of ``step`` is written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_save = True
            control.should_training_stop = True
        return control
