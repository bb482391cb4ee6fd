"""lens-embed: LENS lexicon-based text embeddings from LLMs, as sentence-transformers models.

Public names resolve lazily (PEP 562), so ``import lens_embed`` stays instant: torch and
sentence-transformers load only when a name that needs them is first used.
"""

from __future__ import annotations

from lens_embed.base.lazy import lazy_exports

__version__ = "0.1.0"

# the module that defines each public name -> those names
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "lens_embed.models.clustering": ("Clustering", "kmeans_vocabulary"),
        "lens_embed.models.build": ("build_lens_model", "set_position_top_k"),
        "lens_embed.models.embedded": ("default_model_path", "untrained_default_path"),
        "lens_embed.models.convert": ("convert_checkpoint",),
        "lens_embed.base.defaults": ("DEFAULT_CLUSTERS", "DEFAULT_MAX_SEQ_LENGTH"),
        "lens_embed.models.model": ("Dimension", "LensSentenceTransformer", "encode", "side_prompt"),
        "lens_embed.models.loading": ("load_lens_model",),
        "lens_embed.modules": ("LensTransformer", "LexiconPooling"),
        "lens_embed.base.prompts": ("NAMED_INSTRUCTIONS", "default_prompts", "query_prompt"),
        "lens_embed.base.storage": ("is_released_name",),
        "lens_embed.models.sparse": ("write_sparse_encoder",),
    },
)
