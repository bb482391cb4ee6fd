"""Retrieval at corpus scale: corpus embeddings computed in shards on disk, a faiss index, search.

Shard ``i`` holds the embeddings of texts ``[i * shard_size, (i + 1) * shard_size)``. Each shard is
written to a temporary file and atomically renamed, so an interrupted run never leaves a partial
shard behind, and a rerun skips every finished shard. A manifest ties the folder to one corpus, one
model and one side (:func:`corpus_key`, the one key of every shard folder: ``encode-corpus``,
:class:`DenseRetriever`, mteb's sharded search), so stale embeddings are never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import faiss
import numpy as np
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm

from lens_embed.base.prompts import DEFAULT_QUERY_INSTRUCTION
from lens_embed.base.storage import atomic_write
from lens_embed.base.vocabulary import INDEX_KINDS, IndexKind
from lens_embed.models.model import LensSentenceTransformer, encode, side_prompt

logger = logging.getLogger(__name__)

EncodeFn = Callable[[list[str]], np.ndarray]
_PROBE_TEXT = "lens-embed fingerprint probe: the quick brown fox jumps over the lazy dog."


def fingerprint(*parts: str | Sequence[str]) -> str:
    """A short content hash of strings and lists of strings (order-sensitive)."""
    digest = hashlib.sha1()
    for part in parts:
        for text in [part] if isinstance(part, str) else part:
            digest.update(text.encode("utf-8"))
            digest.update(b"\x00")
        digest.update(b"\x01")
    return digest.hexdigest()[:16]


class ShardStore:
    """A folder of ``shard_NNNNN.npy`` files plus ``manifest.json`` describing what they embed."""

    def __init__(self, directory: str | Path, n_texts: int, shard_size: int, key: str) -> None:
        if shard_size <= 0:
            raise ValueError(f"shard_size must be positive, got {shard_size}")
        self.directory = Path(directory)
        self.n_texts = n_texts
        self.shard_size = shard_size
        self.n_shards = max(1, -(-n_texts // shard_size))
        self.key = key
        self._check_manifest()

    def _manifest(self) -> dict[str, object]:
        return {
            "key": self.key,
            "n_texts": self.n_texts,
            "shard_size": self.shard_size,
            "n_shards": self.n_shards,
        }

    def _check_manifest(self) -> None:
        """Create the manifest, or refuse a folder whose shards may embed something else.

        The folder's contract: it holds the shards of one corpus, one model, one side and one shard
        size. A manifest recording anything else (another ``shard_size`` included: shard ``i``
        would cover other rows) is refused, naming what differs, and so is a folder holding shards
        or a merged file without a manifest (nothing says what they embed). Nothing is deleted.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "manifest.json"
        if path.is_file():
            try:
                found = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as error:
                found = error
            if not isinstance(found, dict):
                raise ValueError(f"{path}: not a readable shard manifest ({found}); use another folder")
            wanted = self._manifest()
            differs = [key for key in wanted if found.get(key) != wanted[key]]
            if differs:
                detail = ", ".join(f"{key} {found.get(key)!r} there, {wanted[key]!r} here" for key in differs)
                raise ValueError(
                    f"{self.directory} holds shards of another corpus, model or shard size "
                    f"({detail}; the key fingerprints the corpus, the model and the side); "
                    "use another folder, or the options it was started with"
                )
            return
        if any(self.directory.glob("*.npy")):
            raise ValueError(
                f"{self.directory} holds .npy files but no manifest.json (what do they embed?); "
                "use another folder"
            )
        payload = json.dumps(self._manifest(), indent=2).encode("utf-8")
        atomic_write(path, lambda handle: handle.write(payload))

    def shard_path(self, index: int) -> Path:
        return self.directory / f"shard_{index:05d}.npy"

    def bounds(self, index: int) -> tuple[int, int]:
        return index * self.shard_size, min(self.n_texts, (index + 1) * self.shard_size)

    def is_done(self, index: int) -> bool:
        return self.shard_path(index).is_file()

    def pending(self) -> list[int]:
        return [i for i in range(self.n_shards) if not self.is_done(i)]

    def fill(self, encode: EncodeFn, texts: Sequence[str], indices: Sequence[int]) -> Iterator[int]:
        """Embed and write the shards ``indices`` of ``texts`` in turn, yielding each one's text count
        (the one loop over shards: for a progress bar, or a throughput)."""
        for index in indices:
            start, stop = self.bounds(index)
            self.write(index, np.asarray(encode(list(texts[start:stop])), dtype=np.float32))
            yield stop - start

    def require_complete(self) -> None:
        """Refuse to read the shards while any is missing."""
        missing = self.pending()
        if missing:
            raise RuntimeError(f"{self.directory}: shards {missing} are not computed yet")

    def write(self, index: int, embeddings: np.ndarray) -> None:
        start, stop = self.bounds(index)
        if embeddings.ndim != 2 or embeddings.shape[0] != stop - start:
            raise ValueError(
                f"shard {index} needs {stop - start} rows, got array of shape {embeddings.shape}"
            )
        array = np.ascontiguousarray(embeddings, dtype=np.float32)
        atomic_write(self.shard_path(index), lambda handle: np.save(handle, array))

    def load(self) -> np.ndarray:
        self.require_complete()
        return np.concatenate([np.load(self.shard_path(i)) for i in range(self.n_shards)], axis=0)


def encode_in_shards(
    encode: EncodeFn,
    texts: Sequence[str],
    directory: str | Path,
    *,
    key: str,
    shard_size: int = 10_000,
    show_progress: bool = True,
) -> np.ndarray:
    """Embeddings of ``texts``, computing only the shards not yet on disk, then loading them all."""
    store = ShardStore(directory, len(texts), shard_size, key)
    todo = store.pending()
    if len(todo) < store.n_shards:
        logger.info(
            "%s: resuming, %d of %d shards already done",
            directory,
            store.n_shards - len(todo),
            store.n_shards,
        )
    with tqdm(total=len(todo), desc="Encoding corpus shards", unit="shard", disable=not show_progress) as bar:
        for _ in store.fill(encode, texts, todo):
            bar.update()
    return store.load()


def normalized(embeddings: np.ndarray) -> np.ndarray:
    """Float32, C-contiguous, L2-normalised rows: inner product is then cosine similarity."""
    array = np.ascontiguousarray(embeddings, dtype=np.float32).copy()
    faiss.normalize_L2(array)
    return array


def pq_subquantizers(dim: int, target_bytes: int) -> int:
    """The largest divisor of ``dim`` not above ``target_bytes``: PQ needs ``dim % m == 0`` (8-bit codes)."""
    return max(m for m in range(1, min(dim, target_bytes) + 1) if dim % m == 0)


def index_factory_string(
    kind: IndexKind,
    dim: int,
    n_vectors: int,
    *,
    hnsw_m: int = 32,
    ivf_nlist: int | None = None,
    pq_bytes: int = 512,
    opq_dim: int = 512,
) -> str:
    """The faiss ``index_factory`` description of an index kind.

    * ``flat``: exact, float32 (4 x dim bytes per vector); ``flat16``: exact search over float16 codes (half);
    * ``hnsw``: HNSW graph over float32 vectors (more memory than flat, sub-linear search);
    * ``ivf``: inverted lists over float32 vectors; ``ivfpq``: inverted lists of ``pq_bytes``-byte PQ codes;
    * ``opq``: a learned rotation to ``opq_dim`` dimensions, then IVF-PQ (the best recall per byte).
    """
    nlist = ivf_nlist or max(1, min(4096, int(4 * np.sqrt(n_vectors))))
    if kind == "flat":
        return "Flat"
    if kind == "flat16":
        return "SQfp16"
    if kind == "hnsw":
        return f"HNSW{hnsw_m}"
    if kind == "ivf":
        return f"IVF{nlist},Flat"
    if kind == "ivfpq":
        return f"IVF{nlist},PQ{pq_subquantizers(dim, pq_bytes)}x8"
    if kind == "opq":
        out = min(opq_dim, dim)
        m = pq_subquantizers(out, pq_bytes)
        return f"OPQ{m}_{out},IVF{nlist},PQ{m}x8"
    raise ValueError(f"Unknown index kind {kind!r}; expected one of {', '.join(INDEX_KINDS)}")


def build_index(
    embeddings: np.ndarray,
    kind: IndexKind = "flat",
    *,
    hnsw_m: int = 32,
    hnsw_ef_search: int = 128,
    ivf_nlist: int | None = None,
    ivf_nprobe: int = 16,
    pq_bytes: int = 512,
    opq_dim: int = 512,
    opq_iterations: int = 20,
    train_size: int = 100_000,
    seed: int = 0,
) -> faiss.Index:
    """An inner-product faiss index over ``embeddings``: exact by default, else a smaller or faster
    approximation.

    Args:
        embeddings: [n, dim] vectors (normalise them first for cosine similarity).
        kind: one of :data:`INDEX_KINDS` (see :func:`index_factory_string` for memory and recall trade-offs).
        hnsw_m: HNSW graph degree; ``hnsw_ef_search``: its search breadth.
        ivf_nlist: inverted lists (default ``4 sqrt(n)``); ``ivf_nprobe``: lists searched per query.
        pq_bytes: bytes per vector of the PQ codes (``ivfpq``, ``opq``), rounded down to a divisor of the
            dimension.
        opq_dim: dimensions after the OPQ rotation; ``opq_iterations``: its training rounds (each trains a
            PQ).
        train_size: vectors sampled (seeded) to train IVF/PQ/OPQ.
        seed: the sample's and faiss' clustering seed.
    """
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    dim = vectors.shape[1]
    description = index_factory_string(
        kind, dim, len(vectors), hnsw_m=hnsw_m, ivf_nlist=ivf_nlist, pq_bytes=pq_bytes, opq_dim=opq_dim
    )
    index = faiss.index_factory(dim, description, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        sample = (
            vectors
            if len(vectors) <= train_size
            else vectors[np.sort(rng.choice(len(vectors), train_size, False))]
        )
        _seed_clustering(index, seed)
        if kind == "opq":
            faiss.downcast_VectorTransform(faiss.downcast_index(index).chain.at(0)).niter = opq_iterations
        index.train(sample)
    if kind == "hnsw":
        index.hnsw.efSearch = hnsw_ef_search
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = min(ivf_nprobe, ivf.nlist)
    index.add(vectors)
    return index


def _seed_clustering(index: faiss.Index, seed: int) -> None:
    """Make IVF and PQ training reproducible (faiss seeds its k-means from ``cp.seed``) and skip the
    polysemous code reordering, which only serves Hamming-distance filtering and trains for minutes."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return
    ivf = faiss.downcast_index(ivf)
    ivf.cp.seed = seed
    if isinstance(ivf, faiss.IndexIVFPQ):
        ivf.do_polysemous_training = False
        ivf.pq.cp.seed = seed


def index_bytes(index: faiss.Index) -> int:
    """Serialized size of an index: what it costs in memory and on disk."""
    return int(faiss.serialize_index(index).nbytes)


def index_memory(index: faiss.Index) -> tuple[float, int]:
    """``(bytes per stored vector, fixed bytes)``: the fixed part (codebooks, rotation, coarse centroids)
    is what an emptied copy still holds, so memory for n vectors is ``fixed + n * per_vector``."""
    empty = faiss.clone_index(index)
    empty.reset()
    fixed = index_bytes(empty)
    return (index_bytes(index) - fixed) / max(1, index.ntotal), fixed


def search(
    index: faiss.Index, queries: np.ndarray, top_k: int, batch_size: int = 1024, show_progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k ``(scores, row ids)`` per query, searched in batches with a progress bar."""
    k = min(top_k, index.ntotal)
    vectors = np.ascontiguousarray(queries, dtype=np.float32)
    scores, ids = [], []
    starts = range(0, len(vectors), batch_size)
    for start in tqdm(starts, desc="Searching", unit="batch", disable=not show_progress):
        batch_scores, batch_ids = index.search(vectors[start : start + batch_size], k)
        scores.append(batch_scores)
        ids.append(batch_ids)
    return np.concatenate(scores), np.concatenate(ids)


def model_key(model: SentenceTransformer) -> str:
    """Identifies a model by what it computes: the rounded document embedding of a fixed probe text."""
    probe = np.round(np.asarray(encode(model, [_PROBE_TEXT]), dtype=np.float64), 4)
    return hashlib.sha1(probe.tobytes()).hexdigest()[:16]


def corpus_key(
    model: SentenceTransformer, texts: Sequence[str], *, query: bool = False, instruction: str | None = None
) -> str:
    """What a shard folder embeds, the one key of every shard folder: the model (its probe embedding and
    the settings that change embeddings beyond it: dtype, attention, maximum length, truncation), the side
    with the prompt it gets (:func:`lens_embed.models.model.side_prompt`), and the texts.

    Compute it on one process: devices may round the probe differently.

    Args:
        model: the model that embeds the texts.
        texts: the corpus, in order.
        query: the query side (else documents).
        instruction: the query instruction (None: the model's ``query`` prompt).
    """
    prompt = side_prompt(model, query=query, instruction=instruction)
    side = json.dumps({"side": "query" if query else "document", "prompt": prompt})
    return fingerprint(
        model_key(model), json.dumps(LensSentenceTransformer.settings(model), sort_keys=True), side, texts
    )


class DenseRetriever:
    """Sharded corpus encoding + faiss search over a sentence-transformers model.

    Texts go through the one router (:func:`lens_embed.models.model.encode`): on a LENS model queries
    carry the instruction and documents are plain (the authors' protocol); on any other model
    queries and documents get whatever ``query``/``document`` prompts the model defines.
    """

    def __init__(
        self,
        model: SentenceTransformer,
        cache_dir: str | Path,
        *,
        instruction: str = DEFAULT_QUERY_INSTRUCTION,
        index_kind: IndexKind = "flat",
        shard_size: int = 10_000,
        batch_size: int = 32,
        show_progress: bool = True,
    ) -> None:
        self.model = model
        self.cache_dir = Path(cache_dir)
        self.instruction = instruction
        self.index_kind: IndexKind = index_kind
        self.shard_size = shard_size
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.instructed = bool(LensSentenceTransformer.is_lens_model(model))

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        return encode(self.model, texts, batch_size=self.batch_size, show_progress_bar=False)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        instruction = self.instruction if self.instructed else None
        return encode(
            self.model,
            texts,
            query=True,
            instruction=instruction,
            batch_size=self.batch_size,
            show_progress_bar=False,
        )

    def corpus_embeddings(self, doc_texts: Sequence[str]) -> np.ndarray:
        """Sharded, resumable corpus embeddings in ``cache_dir/<corpus key>/`` (:func:`corpus_key`)."""
        key = corpus_key(self.model, doc_texts)
        return encode_in_shards(
            self.encode_documents,
            doc_texts,
            self.cache_dir / key,
            key=key,
            shard_size=self.shard_size,
            show_progress=self.show_progress,
        )

    def retrieve(
        self, corpus: Mapping[str, str], queries: Mapping[str, str], top_k: int = 100
    ) -> dict[str, dict[str, float]]:
        """``{query id: {doc id: score}}`` with the top_k documents of every query."""
        doc_ids = list(corpus)
        index = build_index(normalized(self.corpus_embeddings([corpus[d] for d in doc_ids])), self.index_kind)
        query_ids = list(queries)
        query_vectors = normalized(self.encode_queries([queries[q] for q in query_ids]))
        scores, rows = search(index, query_vectors, top_k, show_progress=self.show_progress)
        return {
            qid: {doc_ids[r]: float(s) for s, r in zip(scores[i], rows[i], strict=True) if r >= 0}
            for i, qid in enumerate(query_ids)
        }
