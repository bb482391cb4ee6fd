"""mteb retrieval with the corpus embedded in resumable shards on disk (``--shard-corpus``).

mteb's own ``SearchEncoderWrapper`` with its faiss backend (exact ``IndexFlatIP`` on normalised
vectors, reranking included) does the searching; only ``index`` changes: the corpus is embedded
through :func:`lens_embed.retrieval.encode_in_shards`, so an interrupted run on a large corpus
resumes where it stopped, in a folder keyed by :func:`lens_embed.retrieval.corpus_key` (the key of
every shard folder). Texts are mteb's own (``title + " " + text``), scores are unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Private, and kept: mteb's one definition of a corpus entry's text (title + " " + text, as its own
# dataloader builds it) has no public name, and a copy here could drift from the text mteb scores.
from mteb._create_dataloaders import _retrieval_texts
from mteb.models.search_encoder_index.search_indexes.faiss_search_index import FaissSearchIndex
from mteb.models.search_wrappers import SearchEncoderWrapper
from mteb.types import PromptType

from lens_embed.evaluation.encoders import LoadedModelEncoder
from lens_embed.retrieval import corpus_key, encode_in_shards


class ShardedSearch(SearchEncoderWrapper):
    """mteb ``SearchProtocol`` whose corpus embeddings live in ``cache_dir/<task>/<key>/shard_*.npy``."""

    def __init__(self, model: LoadedModelEncoder, cache_dir: str | Path, shard_size: int = 10_000) -> None:
        super().__init__(model, index_backend=FaissSearchIndex(model))
        self.cache_dir = Path(cache_dir)
        self.shard_size = shard_size

    def protocol(self) -> dict[str, Any]:
        """The wrapped encoder's protocol, recorded beside the results."""
        return self.model.protocol()

    def index(self, corpus: Any, *, task_metadata: Any, hf_split: str, hf_subset: str, encode_kwargs: Any, num_proc: int | None = None, **kwargs: Any) -> None:
        """Embed the corpus shard by shard (skipping shards already on disk), then build mteb's faiss index."""
        self.task_corpus = corpus
        self.index_backend = FaissSearchIndex(self.model)  # a fresh index per task and split
        texts = _retrieval_texts(corpus, PromptType.document)
        query, instruction = self.model.side(task_metadata, PromptType.document)
        key = corpus_key(self.model.model, texts, query=query, instruction=instruction)

        def encode(batch: list[str]) -> Any:
            return self.model.encode(
                [{"text": batch}],
                task_metadata=task_metadata,
                hf_split=hf_split,
                hf_subset=hf_subset,
                prompt_type=PromptType.document,
                **encode_kwargs,
            )

        folder = self.cache_dir / task_metadata.name / f"{hf_subset}-{hf_split}" / key
        embeddings = encode_in_shards(encode, texts, folder, key=key, shard_size=self.shard_size)
        self.index_backend.add_documents(embeddings, list(corpus["id"]))
