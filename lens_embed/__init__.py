"""lens-embed: LENS lexicon-based text embeddings from LLMs, as sentence-transformers models.

Public names resolve lazily (PEP 562), so ``import lens_embed`` stays instant: torch and
sentence-transformers load only when a name that needs them is first used.
"""

from __future__ import annotations

from lens_embed.lazy import lazy_exports

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "Clustering": "lens_embed.clustering",
    "kmeans_vocabulary": "lens_embed.clustering",
    "build_lens_model": "lens_embed.build",
    "set_position_top_k": "lens_embed.build",
    "default_model_path": "lens_embed.embedded",
    "untrained_default_path": "lens_embed.embedded",
    "convert_checkpoint": "lens_embed.convert",
    "DEFAULT_CLUSTERS": "lens_embed.defaults",
    "DEFAULT_MAX_SEQ_LENGTH": "lens_embed.defaults",
    "match_dimensions": "lens_embed.explain",
    "top_dimensions": "lens_embed.explain",
    "encode": "lens_embed.model",
    "is_lens_model": "lens_embed.model",
    "lexicon_pooling": "lens_embed.model",
    "load_lens_model": "lens_embed.loading",
    "LensTransformer": "lens_embed.modules",
    "LexiconPooling": "lens_embed.modules",
    "NAMED_INSTRUCTIONS": "lens_embed.prompts",
    "default_prompts": "lens_embed.prompts",
    "query_prompt": "lens_embed.prompts",
    "is_released_name": "lens_embed.storage",
    "write_sparse_encoder": "lens_embed.sparse",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
