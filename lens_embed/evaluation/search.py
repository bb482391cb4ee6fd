"""mteb retrieval through a search index: in resumable shards on disk (``--shard-corpus``), in Qdrant
(``--engine qdrant``), or both.

mteb's own ``SearchEncoderWrapper`` does the searching through an index backend of mteb's protocol
(``IndexEncoderSearchProtocol``): mteb's faiss one (exact ``IndexFlatIP`` on normalised vectors,
reranking included), or :class:`QdrantSearchIndex`, a scratch collection of the engine
(:mod:`lens_embed.serving.engine`) searched exactly, which gives the same scores. :class:`ShardedSearch`
changes only ``index``: the corpus is embedded through :func:`lens_embed.serving.retrieval.encode_in_shards`,
so an interrupted run on a large corpus resumes where it stopped, in a folder keyed by
:func:`lens_embed.serving.retrieval.corpus_key` (the key of every shard folder). Texts are mteb's own
(``title + " " + text``).

A killed evaluation cannot delete its scratch collection, so later ones do. In-process, the collection
lives in a locked scratch folder (:func:`lens_embed.base.storage.scratch_directory`), which the next run
removes once no live process holds it. On a cluster, where no lock can be seen, the collection's name
says who made it and when (:func:`scratch_collection_name`); a later run deletes those it can judge
stale (:func:`is_stale_scratch`): made on this host by a process that is gone, or made on any host
more than :data:`STALE_AFTER_S` ago.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from contextlib import ExitStack
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

from lens_embed.base.quantization import NO_QUANTIZATION, QuantizationSettings
from lens_embed.base.storage import scratch_directory
from lens_embed.evaluation.encoders import LoadedModelEncoder, PlainModelEncoder, text_loader
from lens_embed.models.model import LensSentenceTransformer
from lens_embed.serving.collections import (
    CollectionSpec,
    check_contents,
    check_quantized_search,
    engine_queries,
    open_collection,
    upload_vectors,
)
from lens_embed.serving.engine import Backend, ClientBackend, EdgeBackend, EngineTarget
from lens_embed.serving.retrieval import corpus_key, encode_in_shards

IndexFactory = Callable[[Any], Any]
"""Makes an mteb search index (``IndexEncoderSearchProtocol``) for an encoder, e.g. ``FaissSearchIndex``."""
SCRATCH_FOLDER_PREFIX = "lens-embed-engine-"  # in $TMPDIR (older versions' leftovers have it too)
SCRATCH_COLLECTION_PREFIX = "lens-eval-"
_SCRATCH_COLLECTION = re.compile(
    re.escape(SCRATCH_COLLECTION_PREFIX) + r"(?P<host>[A-Za-z0-9._-]+)-(?P<pid>\d+)-(?P<made>\d+)-[0-9a-f]{6}"
)
STALE_AFTER_S = 7 * 24 * 3600
"""A scratch collection older than this (a week; one task's corpus is embedded and searched in hours)
is stale whichever host made it: the host may be gone for good (a container, a cluster node)."""
logger = logging.getLogger(__name__)


def _host() -> str:
    """This machine's name as a collection name may spell it."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:63] or "host"


def scratch_collection_name() -> str:
    """``lens-eval-<host>-<pid>-<unix seconds>-<random>``: who made the collection and when."""
    return f"{SCRATCH_COLLECTION_PREFIX}{_host()}-{os.getpid()}-{int(time.time())}-{uuid.uuid4().hex[:6]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def is_stale_scratch(name: str, now: float) -> bool:
    """Whether a collection is a scratch collection nobody will delete: made on this host by a process
    that is gone, or made more than :data:`STALE_AFTER_S` before ``now``. Names of any other form
    (other collections, the random names of older versions) are never stale."""
    match = _SCRATCH_COLLECTION.fullmatch(name)
    if match is None:
        return False
    mine = match["host"] == _host()
    return (mine and not _alive(int(match["pid"]))) or now - int(match["made"]) > STALE_AFTER_S


def sweep_stale_scratch(backend: ClientBackend, now: float | None = None) -> list[str]:
    """Delete the stale scratch collections (:func:`is_stale_scratch`) of the cluster ``backend`` is
    connected to; returns their names. A failure is logged, never raised: it must not stop the run."""
    now = time.time() if now is None else now
    try:
        names = [collection.name for collection in backend.client.get_collections().collections]
    except Exception as error:  # noqa: BLE001 - the evaluation goes on without the sweep
        logger.warning("could not list the collections to remove stale scratch ones: %s", error)
        return []
    removed = []
    for name in (name for name in names if is_stale_scratch(name, now)):
        try:
            backend.client.delete_collection(name)
        except Exception as error:  # noqa: BLE001 - another run may be deleting it too
            logger.warning("could not delete the stale scratch collection %s: %s", name, error)
            continue
        logger.info("deleted %s, a scratch collection left by an interrupted evaluation", name)
        removed.append(name)
    return removed


class QdrantSearchIndex:
    """mteb's search-index protocol over a scratch Qdrant collection, searched exactly.

    ``add_documents`` uploads the corpus to a new collection (no HNSW graph: exact inner product on
    normalised vectors, i.e. cosine similarity, as mteb's faiss index); ``search`` asks the engine for
    every query's best documents, or reranks mteb's candidates (``top_ranked``) through an id filter;
    ``clear`` (mteb calls it after searching) deletes the collection. With ``target`` None the
    collection lives in the in-process engine in a scratch folder of ``$TMPDIR``; else where the target
    says (a cluster: the collection is named by :func:`scratch_collection_name`, and stale ones are
    deleted first). ``vectors="sparse"`` with
    ``max_active_dims`` searches the active dimensions, pruned, instead (scores then differ from dense).
    A ``quantization`` (:class:`~lens_embed.base.quantization.QuantizationSettings`, as ``lens-embed index``)
    searches the quantised vectors instead, every one of them (still no graph), with ``rescore`` and
    ``oversampling`` as ``lens-embed search`` (None: the engine's defaults): the evaluation measures what
    quantisation costs.
    """

    def __init__(
        self,
        model: Any,
        target: EngineTarget | None = None,
        *,
        vectors: str = "dense",
        max_active_dims: int | None = None,
        quantization: QuantizationSettings = NO_QUANTIZATION,
        rescore: bool | None = None,
        oversampling: float | None = None,
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
        self.quantization = quantization
        self.rescore, self.oversampling = rescore, oversampling
        loaded = getattr(model, "loaded", None)  # the model behind lens-embed's mteb encoders
        # K of a LENS model: pruning keeps a hybrid's dense part whole, as index and search do
        self.clusters = (
            LensSentenceTransformer.lexicon(loaded).n_clusters
            if loaded is not None and LensSentenceTransformer.is_lens_model(loaded)
            else None
        )
        self.query_batch_size = query_batch_size
        self.backend: Backend | None = None
        self.spec: CollectionSpec | None = None
        self.ids: list[str] = []
        self._scratch: ExitStack | None = None

    def _open(self, dim: int) -> Backend:
        self.spec = CollectionSpec(
            model_name=self.model_name,
            model_key="mteb-evaluation",
            dim=dim,
            vectors=self.vectors,
            clusters=self.clusters,
            max_active_dims=self.max_active_dims,
            hnsw_m=0,
            quantization=self.quantization,
        )
        check_quantized_search(self.spec, rescore=self.rescore, oversampling=self.oversampling)
        name = scratch_collection_name()
        if self.target is None:
            self._scratch = ExitStack()
            folder = self._scratch.enter_context(
                scratch_directory(tempfile.gettempdir(), SCRATCH_FOLDER_PREFIX)
            )
            backend: Backend = EdgeBackend(folder, name)
        else:
            backend = self.target.open(name)
            if isinstance(backend, ClientBackend):
                sweep_stale_scratch(backend)
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
        check_contents(self.backend, self.ids, self.spec)

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
            found = dict(zip(wanted, self._query([queries[i] for i in wanted], top_k), strict=True))
            for i in batch:
                hits = found.get(i, [])
                scores.append([score for _, score in hits])
                indices.append([positions[i][doc] for doc, _ in hits])
        return scores, indices

    def _query(self, queries: list[Any], top_k: int) -> list[list[tuple[str, float]]]:
        """Exact search, or a scan of the quantised vectors (rescored as asked) in a quantised collection."""
        if self.quantization.kind == "none":
            return self.backend.query(queries, top_k, exact=True)
        return self.backend.query(queries, top_k, rescore=self.rescore, oversampling=self.oversampling)

    def protocol(self) -> dict[str, Any]:
        """The search settings that change scores, recorded beside the results (none for an exact
        search; binary encodings only where they differ from the defaults, which results recorded before
        these settings existed used; TurboQuant's bits always, as no result predates them)."""
        kind = self.quantization.kind
        if kind == "none":
            return {}
        always = ("quantization", "turbo_bits") if kind == "turbo" else ("quantization",)
        defaults = NO_QUANTIZATION.record()
        settings = self.quantization.record().items()
        return {
            "search": {
                **{name: value for name, value in settings if name in always or value != defaults[name]},
                "rescore": self.rescore,
                "oversampling": self.oversampling,
            }
        }

    def clear(self) -> None:
        """Delete the scratch collection."""
        if self.backend is not None:
            self.backend.drop()
            self.backend.close()
        if self._scratch is not None:
            self._scratch.close()
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
        :func:`lens_embed.serving.retrieval.corpus_key`), and the search index's settings that change
        scores."""
        index = getattr(self.index_backend, "protocol", None)
        return {**self.model.protocol(), **(index() if index is not None else {})}

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
