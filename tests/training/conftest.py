"""Fixtures of the training tests: toy task files and tiny LENS models (built on the spot, no hub)."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_toy import classification_rows, retrieval_rows, write_jsonl


@pytest.fixture
def task_files(tmp_path: Path) -> list[Path]:
    """Two task files: retrieval (asymmetric, in-batch) and symmetric classification (no in-batch)."""
    return [
        write_jsonl(tmp_path / "data" / "toy_retrieval.jsonl", retrieval_rows()),
        write_jsonl(tmp_path / "data" / "toy_class.jsonl", classification_rows()),
    ]


@pytest.fixture
def lens_model(tiny_lens: Path):
    """A fresh copy of the tiny LENS model (tiny random Mistral, 16 clusters) per test."""
    from lens_embed import load_lens_model

    return load_lens_model(tiny_lens, device="cpu")
