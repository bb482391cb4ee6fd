"""Toy training data for the training tests (importable by tests and fixtures alike)."""

from __future__ import annotations

import json
import random
from pathlib import Path

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
