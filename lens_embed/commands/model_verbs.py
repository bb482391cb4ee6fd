"""The model verbs at work: each takes its options instance (:mod:`lens_embed.commands.model_options`)."""

from __future__ import annotations

import json

from lens_embed.backbone import is_bidirectional
from lens_embed.commands.model_options import InfoOptions
from lens_embed.loading import load_lens_model
from lens_embed.model import LensSentenceTransformer


def run_info(options: InfoOptions) -> None:
    """Print what a model is, as JSON."""
    model = load_lens_model(options.model, **options.load_keywords())
    config = model[0].auto_model.config
    info = {
        "lens": LensSentenceTransformer.is_lens_model(model),
        "backbone": config.model_type,
        "bidirectional": is_bidirectional(config),
        "embedding_dimension": model.get_embedding_dimension(),
        "max_seq_length": model.max_seq_length,
        "prompts": sorted(model.prompts),
    }
    if info["lens"]:
        pooling = LensSentenceTransformer.lexicon(model)
        info.update(
            clusters=pooling.n_clusters,
            dense=pooling.dense_pooling,
            dense_weight=pooling.dense_weight,
            position_top_k=pooling.position_top_k,
        )
    print(json.dumps(info, indent=2))
