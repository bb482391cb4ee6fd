"""mteb retrieval through a search index: in resumable shards on disk (``--shard-corpus``), in Qdrant
(``--engine qdrant``), or both.

mteb's own ``SearchEncoderWrapper`` does the searching through an index backend of mteb's protocol
(``IndexEncoderSearchProtocol``): mteb's faiss one (exact ``IndexFlatIP`` on normalised vectors,
reranking included), or :class:`QdrantSearchIndex`, a scratch collection of the engine
(:mod:`lens_embed.engine`) searched exactly, which gives the same scores. :class:`ShardedSearch`
changes only ``index``: the corpus is embedded through :func:`lens_embed.retrieval.encode_in_shards`,
so an interrupted run on a large corpus resumes where it stopped, in a folder keyed by
:func:`lens_embed.retrieval.corpus_key` (the key of every shard folder). Texts are mteb's own
(``title + " " + text``).
"""

from __future__ import annotations

import tempfile
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# Private, and kept: mteb's one definition of a corpus entry's text (title + " " + text, as its own
# dataloader builds it) has no public name, and a copy here could drift from the text mteb scores.
from mteb._create_dataloaders import _retrieval_texts
from mteb.models.model_meta import ScoringFunction
from mteb.models.search_encoder_index.search_indexes.faiss_search_index import FaissSearchIndex
from mteb.models.search_wrappers import SearchEncoderWrapper
from mteb.types import PromptType

from lens_embed.engine import Backend, EdgeBackend, EngineTarget
from lens_embed.evaluation.encoders import LoadedModelEncoder, PlainModelEncoder, text_loader
from lens_embed.model import is_lens_model, lexicon_pooling
from lens_embed.retrieval import corpus_key, encode_in_shards
from lens_embed.serving import CollectionSpec, check_contents, engine_queries, open_collection, upload_vectors

IndexFactory = Callable[[Any], Any]
"""Makes an mteb search index (``IndexEncoderSearchProtocol``) for an encoder, e.g. ``FaissSearchIndex``."""


class QdrantSearchIndex:
    """mteb's search-index protocol over a scratch Qdrant collection, searched exactly.

    ``add_documents`` uploads the corpus to a new collection (no HNSW graph: exact inner product on
    normalised vectors, i.e. cosine similarity, as mteb's faiss index); ``search`` asks the engine for
    every query's best documents, or reranks mteb's candidates (``top_ranked``) through an id filter;
    ``clear`` (mteb calls it after searching) deletes the collection. With ``target`` None the
    collection lives in the in-process engine in a temporary folder; else where the target says (a
    cluster: the collection is named ``lens-eval-<random>``). ``vectors="sparse"`` with
    ``max_active_dims`` searches the active dimensions, pruned, instead (scores then differ from dense).
    """

    def __init__(
        self,
        model: Any,
        target: EngineTarget | None = None,
        *,
        vectors: str = "dense",
        max_active_dims: int | None = None,
        query_batch_size: int = 64,
    ) -> None:
        meta = model.mteb_model_meta
        if meta.similarity_fn_name is not ScoringFunction.COSINE:
            raise ValueError(
                "the Qdrant search index scores cosine similarity; "
                f"{meta.name} uses {meta.similarity_fn_name}"
            )
        self.model_name = str(meta.name)
        self.target = target
        self.vectors = vectors
        self.max_active_dims = max_active_dims
        loaded = getattr(model, "loaded", None)  # the model behind lens-embed's mteb encoders
        # K of a LENS model: pruning keeps a hybrid's dense part whole, as index and search do
        self.clusters = (
            lexicon_pooling(loaded).n_clusters if loaded is not None and is_lens_model(loaded) else None
        )
        self.query_batch_size = query_batch_size
        self.backend: Backend | None = None
        self.spec: CollectionSpec | None = None
        self.ids: list[str] = []
        self._scratch: tempfile.TemporaryDirectory | None = None

    def _open(self, dim: int) -> Backend:
        name = f"lens-eval-{uuid.uuid4().hex[:12]}"
        if self.target is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="lens-embed-engine-")
            backend: Backend = EdgeBackend(self._scratch.name, name)
        else:
            backend = self.target.open(name)
        self.spec = CollectionSpec(
            model_name=self.model_name,
            model_key="mteb-evaluation",
            dim=dim,
            vectors=self.vectors,
            clusters=self.clusters,
            max_active_dims=self.max_active_dims,
            hnsw_m=0,
        )
        open_collection(backend, self.spec)
        return backend

    def add_documents(self, embeddings: Any, idxs: list[str]) -> None:
        """Upload documents (appending to those added since the last ``clear``)."""
        vectors = _numpy(embeddings)
        ids = [str(i) for i in idxs]
        if self.backend is None:
            self.backend = self._open(vectors.shape[1])
        upload_vectors(self.backend, self.spec, ids, vectors, show_progress=False)
        self.ids += ids
        check_contents(self.backend, self.ids)

    def search(
        self,
        embeddings: Any,
        top_k: int,
        similarity_fn: Any,
        top_ranked: dict[str, list[str]] | None = None,
        query_idx_to_id: dict[int, str] | None = None,
    ) -> tuple[list[list[float]], list[list[int]]]:
        """Scores and positions of every query's best documents: in the added corpus, or in its candidate
        list."""
        if self.backend is None:
            raise ValueError("No index built. Call add_documents() first.")
        vectors = _numpy(embeddings)
        if top_ranked is None:
            candidates = None
            positions = [{doc: i for i, doc in enumerate(self.ids)}] * len(vectors)
        else:
            if query_idx_to_id is None:
                raise ValueError("query_idx_to_id must be provided when reranking.")
            candidates = [list(top_ranked.get(query_idx_to_id[i]) or []) for i in range(len(vectors))]
            for i in (i for i, ranked in enumerate(candidates) if not ranked):
                warnings.warn(
                    f"No top-ranked documents for query {query_idx_to_id[i]}", stacklevel=2
                )  # as mteb's faiss
            positions = [{doc: j for j, doc in enumerate(ranked)} for ranked in candidates]
        queries = engine_queries(self.spec, vectors, max_active_dims=self.max_active_dims, only=candidates)
        scores: list[list[float]] = []
        indices: list[list[int]] = []
        for start in range(0, len(queries), self.query_batch_size):
            batch = range(start, min(len(queries), start + self.query_batch_size))
            wanted = [i for i in batch if candidates is None or candidates[i]]
            found = dict(
                zip(wanted, self.backend.query([queries[i] for i in wanted], top_k, exact=True), strict=True)
            )
            for i in batch:
                hits = found.get(i, [])
                scores.append([score for _, score in hits])
                indices.append([positions[i][doc] for doc, _ in hits])
        return scores, indices

    def clear(self) -> None:
        """Delete the scratch collection."""
        if self.backend is not None:
            self.backend.drop()
            self.backend.close()
        if self._scratch is not None:
            self._scratch.cleanup()
        self.backend, self.spec, self.ids, self._scratch = None, None, [], None


def _numpy(embeddings: Any) -> np.ndarray:
    if hasattr(embeddings, "detach"):
        embeddings = embeddings.detach().cpu().numpy()
    return np.asarray(embeddings, dtype=np.float32)


class IndexedSearch(SearchEncoderWrapper):
    """mteb's ``SearchEncoderWrapper`` with a chosen index backend (a fresh one per task), keeping the
    wrapped encoder's protocol (recorded beside the results)."""

    def __init__(
        self, model: LoadedModelEncoder | PlainModelEncoder, index_factory: IndexFactory = FaissSearchIndex
    ) -> None:
        super().__init__(model, index_backend=index_factory(model))
        self.index_factory = index_factory

    def protocol(self) -> dict[str, Any]:
        """The wrapped encoder's protocol, recorded beside the results (the settings in it that change
        embeddings are part of :class:`ShardedSearch`'s shard key,
        :func:`lens_embed.retrieval.corpus_key`)."""
        return self.model.protocol()

    def index(self, corpus: Any, **kwargs: Any) -> None:
        self.index_backend = self.index_factory(self.model)  # a fresh index per task and split
        super().index(corpus, **kwargs)


class ShardedSearch(IndexedSearch):
    """mteb ``SearchProtocol`` whose corpus embeddings live in ``cache_dir/<task>/<key>/shard_*.npy``."""

    def __init__(
        self,
        model: LoadedModelEncoder | PlainModelEncoder,
        cache_dir: str | Path,
        shard_size: int = 10_000,
        index_factory: IndexFactory = FaissSearchIndex,
    ) -> None:
        super().__init__(model, index_factory)
        self.cache_dir = Path(cache_dir)
        self.shard_size = shard_size

    def index(
        self,
        corpus: Any,
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        encode_kwargs: Any,
        num_proc: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Embed the corpus shard by shard (skipping shards already on disk), then fill the search index."""
        self.task_corpus = corpus
        self.index_backend = self.index_factory(self.model)  # a fresh index per task and split
        texts = _retrieval_texts(corpus, PromptType.document)
        # the documents' instruction as mteb's lookup gives it to encode ("": plain documents)
        instructed = isinstance(self.model, LoadedModelEncoder)
        instruction = self.model.get_instruction(task_metadata, PromptType.document) if instructed else ""
        key = corpus_key(self.model.loaded, texts, query=bool(instruction), instruction=instruction or None)

        def encode(batch: list[str]) -> Any:
            return self.model.encode(
                text_loader(batch, encode_kwargs.get("batch_size", 32)),
                task_metadata=task_metadata,
                hf_split=hf_split,
                hf_subset=hf_subset,
                prompt_type=PromptType.document,
                **encode_kwargs,
            )

        folder = self.cache_dir / task_metadata.name / f"{hf_subset}-{hf_split}" / key
        embeddings = encode_in_shards(encode, texts, folder, key=key, shard_size=self.shard_size)
        self.index_backend.add_documents(embeddings, list(corpus["id"]))
