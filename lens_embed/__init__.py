"""lens-embed: LENS lexicon-based text embeddings from LLMs, as sentence-transformers models."""

from lens_embed.clustering import Clustering, kmeans_vocabulary
from lens_embed.model import (
    build_lens_model,
    encode,
    is_lens_model,
    lexicon_pooling,
    load_lens_model,
)
from lens_embed.modules import LensTransformer, LexiconPooling
from lens_embed.prompts import NAMED_INSTRUCTIONS, default_prompts, query_prompt

__version__ = "0.1.0"

__all__ = [
    "Clustering",
    "LensTransformer",
    "LexiconPooling",
    "NAMED_INSTRUCTIONS",
    "build_lens_model",
    "default_prompts",
    "encode",
    "is_lens_model",
    "kmeans_vocabulary",
    "lexicon_pooling",
    "load_lens_model",
    "query_prompt",
]
