"""lens-embed: LENS lexicon-based text embeddings from LLMs, as sentence-transformers models."""

from lens_embed.clustering import Clustering, kmeans_vocabulary
from lens_embed.convert import convert_checkpoint
from lens_embed.defaults import default_model_path
from lens_embed.explain import match_dimensions, top_dimensions
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
    "convert_checkpoint",
    "default_model_path",
    "match_dimensions",
    "top_dimensions",
    "default_prompts",
    "encode",
    "is_lens_model",
    "kmeans_vocabulary",
    "lexicon_pooling",
    "load_lens_model",
    "query_prompt",
]
