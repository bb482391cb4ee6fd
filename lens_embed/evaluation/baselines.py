"""The baselines every run can put beside a model: dense all-MiniLM-L6-v2 (offline copy) and BM25.

Both use mteb's registry metadata, so their results land in the same folders (and under the same
revisions) as the leaderboard's, and a score here is directly comparable with the published one.
"""

from __future__ import annotations

import mteb
from mteb.models import ModelMeta

from lens_embed.defaults import minilm_path
from lens_embed.evaluation.mteb_model import LensEncoder

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BM25_NAME = "mteb/baseline-bm25s"
# Task types BM25 can run: it is a search model, not an encoder.
BM25_TASK_TYPES = frozenset({"Retrieval"})


def minilm_meta() -> ModelMeta:
    """mteb's registry entry, unchanged: revision 8b3219a9, the one the published scores used.

    The offline weights are that revision; the encoder is built here (``dense_minilm``), so the
    registry's hub loader is never called and ``model_meta.json`` carries no local path."""
    return mteb.get_model_meta(MINILM_NAME)


def dense_minilm(
    device: str | None = None, dtype: str | None = None, attn_implementation: str | None = None
) -> LensEncoder:
    """The dense baseline as an mteb encoder: plain texts, no instructions (as it was published)."""
    from lens_embed.evaluation.mteb_model import evaluation_dtype
    from lens_embed.model import load_lens_model

    model = load_lens_model(
        minilm_path(), device=device, dtype=evaluation_dtype(dtype, device), attn_implementation=attn_implementation
    )
    return LensEncoder(model, minilm_meta(), use_instructions=False)


def bm25() -> mteb.models.SearchProtocol:
    """mteb's own bm25s baseline (English stopwords + Snowball stemmer; needs PyStemmer)."""
    return mteb.get_model(BM25_NAME)
