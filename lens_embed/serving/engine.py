"""Qdrant as the serving engine: one small backend interface, two implementations.

* :class:`EdgeBackend` -- ``qdrant-edge-py``, Qdrant's in-process engine: a collection is a local
  folder, no server (the embedded default).
* :class:`ClientBackend` -- ``qdrant-client``: a Qdrant cluster at a URL (collections created with
  ``shard_number`` / ``replication_factor``), or ``QdrantClient(":memory:")`` in tests, which receives
  the same calls a cluster does.

Everything above the interface (:mod:`lens_embed.serving.collections`, the evaluation's search index) speaks
only :class:`Backend`: documents go in as :class:`EnginePoint` (a document id, its dense and/or
sparse vectors), queries as :class:`EngineQuery`, results come back as ``(document id, score)``.
A query with several vectors is fused by the engine (Qdrant's query API: one prefetch of
:data:`FUSION_DEPTH` candidates per vector, reciprocal-rank fusion). Qdrant point ids must be
integers or UUIDs, so a document id maps to ``uuid5(namespace, id)`` (:func:`point_id`) and the id
itself is kept in the payload. This module imports neither engine package until a backend is opened.

One process at a time: opening an in-process collection while another process writes it damages the
writer's shard (the engine's open path touches it before its own lock refuses), so :class:`EdgeBackend`
holds a lock of lens-embed's own, ``.NAME.lock`` beside the collection folder, from before the engine
opens the collection until the backend is closed. It is an ``flock``, so the kernel drops it when the
process dies, however it dies. Every opener takes it exclusively (the engine admits one process per
collection, readers included), and a second one is refused at once, naming the collection.
"""

from __future__ import annotations

import fcntl
import math
import os
import re
import shutil
import uuid
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lens_embed.base.defaults import DEFAULT_HNSW_EF_CONSTRUCT, DEFAULT_HNSW_M
from lens_embed.base.optional import require
from lens_embed.base.quantization import NO_QUANTIZATION, QuantizationSettings
from lens_embed.base.storage import check_writable_folder, staged_directory
from lens_embed.base.vocabulary import DENSE_DTYPES, BinaryBits, DenseDtype, TurboBits

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

PRODUCT_COMPRESSION = 16
"""Compression of ``product`` quantisation against float32 (Qdrant's ``x16``: 4 dimensions a byte)."""
SparseRow = tuple[Sequence[int], Sequence[float]]
Hit = tuple[str, float]

DENSE, SPARSE, BM25 = "dense", "lens", "bm25"
"""Names of the collection's vectors: the dense LENS vector, its active dimensions, BM25 term weights."""
DOC_ID = "doc_id"
"""Payload field holding a point's original document id."""
METADATA_KEY = "lens_embed"
"""Key of lens-embed's record in a collection's metadata (qdrant-client) or metadata point (edge)."""
MAX_DENSE_DIM = 65_536
"""Qdrant's largest dense vector; the in-process engine does not check it, so it is checked here."""
RRF_K = 60
"""Reciprocal-rank fusion constant (as Qdrant's server default): score = sum of 1 / (k + rank)."""
FUSION_DEPTH = 100
"""Each fused vector's prefetch returns this many candidates (or the limit, if larger): a document ranked
deep in both lists can outrank one that tops a single list, so fusing only the top ``limit`` would lose it."""
FULL_SCAN_THRESHOLD_KB = 10_000
"""Below this much vector data a segment is scanned instead of searched through its graph (Qdrant's
default)."""
QUANTIZED_INDEXING_THRESHOLD_KB = 1
"""The in-process engine builds quantised vectors when it optimises a segment into an indexed one, which it
does only above its indexing threshold (10 MB): a quantised collection is indexed whatever its size, so that
its searches always read the quantised vectors they were configured for."""


BINARY_ENCODINGS: dict[BinaryBits, str] = {"1": "one_bit", "1.5": "one_and_half_bits", "2": "two_bits"}
"""Qdrant's name of the encoding of each ``binary_bits`` (``BinaryQuantizationEncoding``)."""
TURBO_BIT_SIZES: dict[TurboBits, str] = {"1": "bits1", "1.5": "bits1_5", "2": "bits2", "4": "bits4"}
"""Qdrant's name of each ``turbo_bits`` (``TurboQuantBitSize``)."""
TURBO_VECTOR_BYTES = 8
"""What TurboQuant stores per vector beside its codes (measured in qdrant-edge 0.9.0: each vector's
``quantized.data`` row is its codes, rounded up to whole bytes, and 8 bytes more)."""


def quantized_bytes(dim: int, quantization: QuantizationSettings) -> float:
    """Bytes of one vector's quantised copy (0 for ``none``): the RAM a quantised search reads per
    document (``binary_bits`` of ``binary`` quantisation, ``turbo_bits`` of ``turbo``, a dimension)."""
    if quantization.kind == "turbo":
        return math.ceil(dim * float(quantization.turbo_bits) / 8) + TURBO_VECTOR_BYTES
    per_dimension = {
        "none": 0.0,
        "int8": 1.0,
        "binary": float(quantization.binary_bits) / 8,
        "product": 4 / PRODUCT_COMPRESSION,
    }
    return dim * per_dimension[quantization.kind]


_DOCUMENT_NAMESPACE = uuid.UUID("6f1c3b52-7d0e-5b8e-9a4c-1e0b7c2d9a10")
# uuid5 never yields the nil UUID (its version bits are set), so no document can take this id.
_METADATA_POINT = uuid.UUID(int=0)
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
NAME_MAX = 255
"""The longest file name of common file systems: an in-process collection's staging folder must fit."""
_STAGING_EXTRA = len("..staging-") + 8  # staged_directory's ".NAME.staging-XXXXXXXX"


class EngineError(OSError):
    """The engine cannot be reached or refused an operation (reported in one line, exit code 2)."""


@contextmanager
def _refusals(where: str, action: str, errors: tuple[type[BaseException], ...]) -> Iterator[None]:
    """Report the engine's own errors (``errors``) as an :class:`EngineError` naming the collection and
    the step."""
    try:
        yield
    except errors as error:
        if type(error) in (TypeError, AttributeError):  # a bug of ours, not the engine's answer
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EngineError(f"{where}: {action} failed: {first}") from None


def point_id(doc_id: str) -> str:
    """The Qdrant point id of a document: a UUID derived from its id, the same on every run and engine."""
    return str(uuid.uuid5(_DOCUMENT_NAMESPACE, doc_id))


def check_collection_name(name: str) -> str:
    """A collection name that is also a safe folder name (letters, digits, ``._-``; no path separators)."""
    if not isinstance(name, str) or not _COLLECTION_NAME.fullmatch(name):
        raise ValueError(
            f"invalid collection name {name!r}: use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit, at most 255 characters)"
        )
    return name


@dataclass(frozen=True)
class Layout:
    """Which vectors a collection stores, and how.

    Attributes:
        dim: dimension of the dense vectors (and the index range of the sparse LENS ones).
        dense: store the dense vector (inner product on normalised vectors: cosine similarity).
        sparse: store the active dimensions as a sparse vector (inner product, always exact).
        bm25: store BM25 term weights as a sparse vector with the engine's IDF modifier.
        dense_dtype: storage type of the dense vectors (``float16`` halves their memory).
        hnsw_m: links per node of the dense vectors' HNSW graph; 0: no graph (exact search only, nothing
            to build).
        hnsw_ef_construct: candidates considered while building the graph.
        quantization: a quantised copy of the dense vectors, held in RAM for the search, and its settings.
        on_disk: keep the full vectors (dense storage, sparse index) on disk, read through the page cache,
            instead of in RAM.
    """

    dim: int
    dense: bool = True
    sparse: bool = False
    bm25: bool = False
    dense_dtype: DenseDtype = "float32"
    hnsw_m: int = DEFAULT_HNSW_M
    hnsw_ef_construct: int = DEFAULT_HNSW_EF_CONSTRUCT
    quantization: QuantizationSettings = NO_QUANTIZATION
    on_disk: bool = False

    def __post_init__(self) -> None:
        if not self.dense and not self.sparse:
            raise ValueError("a collection stores dense vectors, sparse ones, or both")
        if self.dim < 1:
            raise ValueError(f"vector dimension must be positive, got {self.dim}")
        if self.dense and self.dim > MAX_DENSE_DIM:
            raise ValueError(
                f"dense vectors of {self.dim} dimensions exceed Qdrant's limit of {MAX_DENSE_DIM}; "
                "store them as sparse vectors (--vectors sparse)"
            )
        if self.hnsw_m < 0 or self.hnsw_ef_construct < 4:
            raise ValueError(
                "HNSW m must be >= 0 (0: no graph) and ef_construct >= 4, "
                f"got {self.hnsw_m}, {self.hnsw_ef_construct}"
            )
        if self.dense_dtype not in DENSE_DTYPES:
            raise ValueError(f"dense dtype must be float32 or float16, got {self.dense_dtype!r}")
        self.quantization.check_dense(self.dense)


@dataclass
class EnginePoint:
    """One document: its id, the vectors its collection's layout holds, and extra payload fields."""

    doc_id: str
    dense: np.ndarray | None = None
    sparse: SparseRow | None = None
    bm25: SparseRow | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    def vectors(self) -> dict[str, Any]:
        """``{vector name: values}`` of the vectors this point carries (sparse ones as
        ``(indices, values)``)."""
        named = {DENSE: self.dense, SPARSE: self.sparse, BM25: self.bm25}
        return {name: value for name, value in named.items() if value is not None}


@dataclass
class EngineQuery:
    """One query: each given vector searches its own named vector; two or more are fused (RRF).

    ``only`` restricts the search to these document ids (reranking a candidate list).
    """

    dense: np.ndarray | None = None
    sparse: SparseRow | None = None
    bm25: SparseRow | None = None
    only: Sequence[str] | None = None

    def vectors(self) -> dict[str, Any]:
        named = {DENSE: self.dense, SPARSE: self.sparse, BM25: self.bm25}
        present = {name: value for name, value in named.items() if value is not None}
        if not present:
            raise ValueError("a query needs at least one vector")
        return present


class Backend(ABC):
    """One collection in one engine. Implementations translate these calls and nothing more."""

    collection: str

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the collection lives, for messages (a folder, or URL and collection name)."""

    @abstractmethod
    def exists(self) -> bool:
        """Whether the collection exists."""

    @abstractmethod
    def create(self, layout: Layout, metadata: dict[str, Any]) -> None:
        """Create the collection with ``metadata`` recorded in it, atomically (never without it)."""

    @abstractmethod
    def metadata(self) -> dict[str, Any] | None:
        """lens-embed's record of the collection, or None when it has none."""

    @abstractmethod
    def upsert(self, points: Sequence[EnginePoint]) -> None:
        """Insert or replace points by document id (a point never exists twice)."""

    @abstractmethod
    def count(self) -> int:
        """Number of documents stored (exact)."""

    @abstractmethod
    def records(
        self, fields: Sequence[str], batch_size: int = 1000, *, with_vectors: bool = False
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        """``(payload fields, vectors)`` of every stored document, in the engine's order (vectors
        ``{name: values}``, read only ``with_vectors``: the engine then reads every stored vector)."""

    def payloads(self, fields: Sequence[str], batch_size: int = 1000) -> Iterator[dict[str, Any]]:
        """The payload fields of every stored document, in the engine's order."""
        return (payload for payload, _ in self.records(fields, batch_size))

    def query(
        self,
        queries: Sequence[EngineQuery],
        limit: int,
        *,
        exact: bool = False,
        hnsw_ef: int | None = None,
        rescore: bool | None = None,
        oversampling: float | None = None,
    ) -> list[list[Hit]]:
        """The ``limit`` best documents of every query, best first (``hnsw_ef``: the graph search's
        breadth; ``rescore``, ``oversampling``: a quantised collection's search, None for the engine's
        defaults)."""
        if not queries:
            return []
        types = self._types()
        quantization = (
            types.QuantizationSearchParams(rescore=rescore, oversampling=oversampling)
            if rescore is not None or oversampling is not None
            else None
        )
        params = types.SearchParams(exact=exact, hnsw_ef=hnsw_ef, quantization=quantization)
        return self._query_batch(queries, limit, params)

    @staticmethod
    @abstractmethod
    def _types() -> Any:
        """The module of the engine's request types (``qdrant_edge`` or ``qdrant_client.models``: both
        name ``SearchParams`` and ``QuantizationSearchParams`` alike)."""

    @abstractmethod
    def _query_batch(self, queries: Sequence[EngineQuery], limit: int, params: Any) -> list[list[Hit]]:
        """:meth:`query` for a non-empty batch, with the search parameters already built."""

    @abstractmethod
    def optimize(self) -> None:
        """Build indexes and merge segments after a bulk load."""

    @abstractmethod
    def drop(self) -> None:
        """Delete the collection and everything in it."""

    @abstractmethod
    def reload(self) -> None:
        """Make what was written durable, and answer later calls from storage rather than from what this
        process holds in memory (a closing check then reads what a later process will find)."""

    @abstractmethod
    def free_space(self) -> int | None:
        """Bytes free where the collection is stored, when that is this machine's disk (None: a server's)."""

    @abstractmethod
    def close(self) -> None:
        """Release the engine (files, locks, connections)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sparse_lists(row: SparseRow) -> tuple[list[int], list[float]]:
    indices, values = row
    return [int(i) for i in indices], [float(v) for v in values]


def _dense_list(vector: np.ndarray) -> list[float]:
    return np.asarray(vector, dtype=np.float32).tolist()


# ---------------------------------------------------------------------------------------------
# qdrant-edge-py: the in-process engine


class EdgeBackend(Backend):
    """A collection of the in-process engine (``qdrant-edge-py``): the shard folder ``path/collection``.

    Edge shards have no collection metadata, so lens-embed's record lives in a reserved point with
    no vectors (the nil UUID), left out of counts and listings. A new collection is built in a
    staging folder, record included, and renamed into place: a folder that exists is complete.
    The first call that touches the collection (or creates it) takes its lock, ``path/.collection.lock``
    (see the module's docstring), and :meth:`close` releases it: use one backend per collection, and close
    it (``with EdgeBackend(...) as backend``) so that the next process may open the collection.
    """

    def __init__(self, path: str | Path, collection: str) -> None:
        self.collection = check_collection_name(collection)
        if len(collection) + _STAGING_EXTRA > NAME_MAX:
            raise ValueError(
                f"collection name of {len(collection)} characters is too long for the in-process engine "
                f"(at most {NAME_MAX - _STAGING_EXTRA}: its staging folder's name adds {_STAGING_EXTRA})"
            )
        self.folder = Path(path) / collection
        self.lock_file = self.folder.with_name(f".{collection}.lock")
        self._shard: Any = None
        self._lock: int | None = None

    @property
    def location(self) -> str:
        return str(self.folder)

    def exists(self) -> bool:
        return self.folder.is_dir()

    def check(self) -> None:
        """Refuse, before any work, a collection path this backend could not use: a file where the folder
        of collections or the collection should be, or a folder it cannot write in."""
        check_writable_folder(self.folder.parent, "the folder of collections (--path)")
        if os.path.lexists(self.folder) and not self.folder.is_dir():
            raise NotADirectoryError(
                f"{self.folder} is a file, not a collection; choose another --collection"
            )

    def _hold(self) -> None:
        """Take the collection's lock (once), before the engine touches the collection; refuse at once if
        another backend (of this or another process) holds it."""
        if self._lock is not None:
            return
        self.check()
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        while True:
            descriptor = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
                os.close(descriptor)
                raise EngineError(
                    f"{self.folder} is in use by another lens-embed process"
                    + (f" (pid {holder})" if holder.isdigit() else "")
                    + ": an index, search or evaluation holds it; run this when it has finished"
                ) from None
            try:
                same = os.path.samestat(os.stat(self.lock_file), os.fstat(descriptor))
            except FileNotFoundError:  # removed by a drop() between our open and our lock
                same = False
            if same:
                break
            os.close(descriptor)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
        self._lock = descriptor

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor drops the flock
            self._lock = None

    @property
    def shard(self) -> Any:
        """The open shard (opened on first use, under the collection's lock)."""
        if self._shard is None:
            import qdrant_edge

            if not self.exists():
                raise EngineError(f"no collection at {self.folder}")
            self._hold()
            if not (self.folder / "segments").is_dir():  # the engine would open it empty, as if new
                raise EngineError(
                    f"{self.folder} is damaged: its segments/ folder (the stored documents) is missing; "
                    "delete the collection and index the corpus again"
                )
            try:
                self._shard = qdrant_edge.EdgeShard.load(str(self.folder))
            except Exception as error:  # the engine raises plain Exceptions
                raise EngineError(
                    f"cannot open the collection at {self.folder} (damaged, or held by a program other than "
                    f"lens-embed): {str(error).strip().splitlines()[0] if str(error).strip() else error!r}"
                ) from None
        return self._shard

    @staticmethod
    def _quantization(layout: Layout) -> Any:
        """The engine's configuration of the layout's quantisation, its quantised vectors pinned in RAM."""
        import qdrant_edge as qe

        pinned, settings = qe.Memory.Pinned, layout.quantization
        # the engine's enum members are the camel-case names: one_and_half_bits -> OneAndHalfBits
        encoding = "".join(word.title() for word in BINARY_ENCODINGS[settings.binary_bits].split("_"))
        query = {"binary": "Binary", "scalar8bits": "Scalar8Bits", "scalar4bits": "Scalar4Bits"}
        return {
            "none": None,
            "int8": lambda: qe.ScalarQuantizationConfig(qe.ScalarType.Int8, memory=pinned),
            "binary": lambda: qe.BinaryQuantizationConfig(
                encoding=getattr(qe.BinaryQuantizationEncoding, encoding),
                query_encoding=getattr(qe.BinaryQuantizationQueryEncoding, query[settings.binary_query]),
                memory=pinned,
            ),
            "product": lambda: qe.ProductQuantizationConfig(
                getattr(qe.CompressionRatio, f"X{PRODUCT_COMPRESSION}"), memory=pinned
            ),
            # the engine's enum members are the names title-cased: bits1_5 -> Bits1_5
            "turbo": lambda: qe.TurboQuantQuantizationConfig(
                bits=getattr(qe.TurboQuantBitSize, TURBO_BIT_SIZES[settings.turbo_bits].title()),
                memory=pinned,
            ),
        }[settings.kind]

    @classmethod
    def _config(cls, layout: Layout) -> Any:
        import qdrant_edge as qe

        dtype = (
            qe.VectorStorageDatatype.Float16
            if layout.dense_dtype == "float16"
            else qe.VectorStorageDatatype.Float32
        )
        graph = qe.HnswIndexConfig(
            m=layout.hnsw_m, ef_construct=layout.hnsw_ef_construct, full_scan_threshold=FULL_SCAN_THRESHOLD_KB
        )
        quantization = cls._quantization(layout)
        storage = qe.Memory.Cold if layout.on_disk else None  # None: the engine's default, in RAM
        vectors = (
            {
                DENSE: qe.EdgeVectorParams(
                    size=layout.dim,
                    distance=qe.Distance.Dot,
                    datatype=dtype,
                    hnsw_config=graph,
                    quantization_config=quantization() if quantization else None,
                    memory=storage,
                )
            }
            if layout.dense
            else {}
        )
        sparse = {SPARSE: qe.EdgeSparseVectorParams(memory=storage)} if layout.sparse else {}
        if layout.bm25:
            sparse[BM25] = qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf, memory=storage)
        if (
            layout.quantization.kind != "none"
        ):  # with hnsw_m = 0 the indexed segment has no graph, and is scanned
            optimizers = qe.EdgeOptimizersConfig(indexing_threshold=QUANTIZED_INDEXING_THRESHOLD_KB)
        elif layout.hnsw_m == 0:  # indexing_threshold 0: no HNSW graph is ever built (exact search only)
            optimizers = qe.EdgeOptimizersConfig(indexing_threshold=0)
        else:
            optimizers = None
        return qe.EdgeConfig(vectors=vectors or None, sparse_vectors=sparse or None, optimizers=optimizers)

    def create(self, layout: Layout, metadata: dict[str, Any]) -> None:
        import qdrant_edge as qe

        self._hold()
        with staged_directory(self.folder) as staging:
            shard = qe.EdgeShard.create(str(staging), self._config(layout))
            shard.update(
                qe.UpdateOperation.upsert_points([qe.Point(_METADATA_POINT, {}, {METADATA_KEY: metadata})])
            )
            shard.flush()
            shard.close()

    def metadata(self) -> dict[str, Any] | None:
        shard = self.shard
        with self._calls("reading lens-embed's record"):
            records = shard.retrieve([_METADATA_POINT], True, False)
        return records[0].payload.get(METADATA_KEY) if records else None

    def _point(self, point: EnginePoint) -> Any:
        import qdrant_edge as qe

        vectors = {
            name: qe.SparseVector(*_sparse_lists(value)) if name != DENSE else _dense_list(value)
            for name, value in point.vectors().items()
        }
        return qe.Point(uuid.UUID(point_id(point.doc_id)), vectors, {**point.payload, DOC_ID: point.doc_id})

    def _calls(self, action: str) -> Any:
        """The in-process engine raises plain ``Exception``s: reported as :class:`EngineError`."""
        return _refusals(str(self.folder), action, (Exception,))

    def upsert(self, points: Sequence[EnginePoint]) -> None:
        import qdrant_edge as qe

        update = qe.UpdateOperation.upsert_points([self._point(p) for p in points])
        with self._calls("the upload"):
            self.shard.update(update)

    def _documents(self) -> Any:
        import qdrant_edge as qe

        return qe.Filter(must_not=[qe.HasIdCondition({_METADATA_POINT})])

    def count(self) -> int:
        import qdrant_edge as qe

        shard = self.shard
        with self._calls("counting the documents"):
            return int(shard.count(qe.CountRequest(exact=True, filter=self._documents())))

    def records(
        self, fields: Sequence[str], batch_size: int = 1000, *, with_vectors: bool = False
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        import qdrant_edge as qe

        shard, offset = self.shard, None
        while True:
            request = qe.ScrollRequest(
                offset=offset,
                limit=batch_size,
                filter=self._documents(),
                with_payload=list(fields),
                with_vector=with_vectors,
            )
            with self._calls("reading the documents"):
                records, offset = shard.scroll(request)
            yield from ((record.payload or {}, record.vector if with_vectors else None) for record in records)
            if offset is None:
                return

    def _request(self, query: EngineQuery, limit: int, params: Any) -> Any:
        import qdrant_edge as qe

        restrict = (
            qe.Filter(must=[qe.HasIdCondition({uuid.UUID(point_id(d)) for d in query.only})])
            if query.only is not None
            else None
        )
        nearest = [
            qe.Query.Nearest(
                qe.SparseVector(*_sparse_lists(value)) if name != DENSE else _dense_list(value), using=name
            )
            for name, value in query.vectors().items()
        ]
        if len(nearest) == 1:
            return qe.QueryRequest(
                limit=limit, query=nearest[0], filter=restrict, params=params, with_payload=[DOC_ID]
            )
        depth = max(limit, FUSION_DEPTH)
        prefetches = [qe.Prefetch(limit=depth, query=q, params=params, filter=restrict) for q in nearest]
        return qe.QueryRequest(
            limit=limit, prefetches=prefetches, query=qe.Fusion.Rrf(k=RRF_K), with_payload=[DOC_ID]
        )

    @staticmethod
    def _types() -> Any:
        import qdrant_edge

        return qdrant_edge

    def _query_batch(self, queries: Sequence[EngineQuery], limit: int, params: Any) -> list[list[Hit]]:
        import qdrant_edge as qe

        request = qe.QueryBatchRequest([self._request(q, limit, params) for q in queries])
        with self._calls("the search"):
            results = self.shard.query_batch(request)
        return [[(hit.payload[DOC_ID], float(hit.score)) for hit in hits] for hits in results]

    def optimize(self) -> None:
        """Build the HNSW graph and merge segments now (the in-process engine has no background optimiser)."""
        with self._calls("optimising"):
            self.shard.optimize()
            self.shard.flush()

    def drop(self) -> None:
        self._hold()  # never under another process
        self.reload()
        shutil.rmtree(self.folder, ignore_errors=True)
        self.lock_file.unlink(missing_ok=True)  # a process that opened it before is sent to a new one
        self._release()

    def reload(self) -> None:
        """Flush and close the engine, keeping the lock: the next call opens the collection from disk."""
        if self._shard is not None:
            shard, self._shard = self._shard, None
            with self._calls("writing the collection to disk"):
                shard.flush()
                shard.close()

    def free_space(self) -> int | None:
        existing = next(p for p in (self.folder, *self.folder.parents) if p.is_dir())
        return shutil.disk_usage(existing).free

    def close(self) -> None:
        try:
            self.reload()
        finally:
            self._release()


# ---------------------------------------------------------------------------------------------
# qdrant-client: a cluster (or the in-memory stand-in of the tests)


class ClientBackend(Backend):
    """A collection reached through ``qdrant-client``: a cluster at a URL, or ``QdrantClient(":memory:")``.

    lens-embed's record is the collection's own metadata. ``shard_number`` and
    ``replication_factor`` apply when the collection is created (None: the cluster's defaults).
    """

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        *,
        location: str = ":memory:",
        shard_number: int | None = None,
        replication_factor: int | None = None,
    ) -> None:
        self.client = client
        self.collection = check_collection_name(collection)
        self._location = location
        self.shard_number = shard_number
        self.replication_factor = replication_factor

    @classmethod
    def connect(
        cls,
        url: str,
        collection: str,
        *,
        api_key: str | None = None,
        timeout: int = 60,
        shard_number: int | None = None,
        replication_factor: int | None = None,
    ) -> ClientBackend:
        """Connect to the Qdrant at ``url`` (``":memory:"``: a fresh in-process store) and check it
        answers."""
        QdrantClient = require("qdrant_client", "cluster").QdrantClient  # noqa: N806 - the class itself

        if url == ":memory:":
            client = QdrantClient(":memory:")
        else:
            client = QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)
            try:
                client.get_collections()
            except Exception as error:  # connection refused, DNS, TLS, 401...: all mean "not usable here"
                client.close()
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise EngineError(f"cannot reach Qdrant at {url}: {reason}") from None
        return cls(
            client, collection, location=url, shard_number=shard_number, replication_factor=replication_factor
        )

    @property
    def location(self) -> str:
        return f"{self._location} collection {self.collection!r}"

    def _calls(self, action: str) -> Any:
        """The server's refusals and lost connections, reported as :class:`EngineError`."""
        from qdrant_client.http.exceptions import ApiException

        return _refusals(self.location, action, (ApiException, OSError))

    def exists(self) -> bool:
        return bool(self.client.collection_exists(self.collection))

    def create(self, layout: Layout, metadata: dict[str, Any]) -> None:
        from qdrant_client import models

        dtype = models.Datatype.FLOAT16 if layout.dense_dtype == "float16" else models.Datatype.FLOAT32
        hnsw = models.HnswConfigDiff(
            m=layout.hnsw_m, ef_construct=layout.hnsw_ef_construct
        )  # m = 0: no graph
        settings = layout.quantization
        quantization = {
            "none": None,
            "int8": lambda: models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
            ),
            "binary": lambda: models.BinaryQuantization(
                binary=models.BinaryQuantizationConfig(
                    encoding=models.BinaryQuantizationEncoding(BINARY_ENCODINGS[settings.binary_bits]),
                    query_encoding=models.BinaryQuantizationQueryEncoding(settings.binary_query),
                    always_ram=True,
                )
            ),
            "product": lambda: models.ProductQuantization(
                product=models.ProductQuantizationConfig(
                    compression=models.CompressionRatio(f"x{PRODUCT_COMPRESSION}"), always_ram=True
                )
            ),
            "turbo": lambda: models.TurboQuantization(
                turbo=models.TurboQuantQuantizationConfig(
                    bits=models.TurboQuantBitSize(TURBO_BIT_SIZES[settings.turbo_bits]), always_ram=True
                )
            ),
        }[settings.kind]
        on_disk = layout.on_disk or None  # None: the cluster's default, in RAM
        vectors = {
            DENSE: models.VectorParams(
                size=layout.dim,
                distance=models.Distance.DOT,
                datatype=dtype,
                hnsw_config=hnsw,
                quantization_config=quantization() if quantization else None,
                on_disk=on_disk,
            )
        }
        index = models.SparseIndexParams(on_disk=on_disk) if on_disk else None
        sparse = {SPARSE: models.SparseVectorParams(index=index)} if layout.sparse else {}
        if layout.bm25:
            sparse[BM25] = models.SparseVectorParams(index=index, modifier=models.Modifier.IDF)
        with self._calls("creating the collection"):
            self.client.create_collection(
                self.collection,
                vectors_config=vectors if layout.dense else {},
                sparse_vectors_config=sparse or None,
                shard_number=self.shard_number,
                replication_factor=self.replication_factor,
                metadata={METADATA_KEY: metadata},
            )

    def metadata(self) -> dict[str, Any] | None:
        with self._calls("reading lens-embed's record"):
            recorded = self.client.get_collection(self.collection).config.metadata or {}
        return recorded.get(METADATA_KEY)

    def upsert(self, points: Sequence[EnginePoint]) -> None:
        from qdrant_client import models

        structs = [
            models.PointStruct(
                id=point_id(p.doc_id),
                vector={
                    name: models.SparseVector(indices=(pair := _sparse_lists(value))[0], values=pair[1])
                    if name != DENSE
                    else _dense_list(value)
                    for name, value in p.vectors().items()
                },
                payload={**p.payload, DOC_ID: p.doc_id},
            )
            for p in points
        ]
        with self._calls("the upload"):
            self.client.upsert(self.collection, structs, wait=True)

    def count(self) -> int:
        with self._calls("counting the documents"):
            return int(self.client.count(self.collection, exact=True).count)

    def records(
        self, fields: Sequence[str], batch_size: int = 1000, *, with_vectors: bool = False
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        offset = None
        while True:
            with self._calls("reading the documents"):
                records, offset = self.client.scroll(
                    self.collection,
                    limit=batch_size,
                    offset=offset,
                    with_payload=list(fields),
                    with_vectors=with_vectors,
                )
            yield from ((record.payload or {}, record.vector if with_vectors else None) for record in records)
            if offset is None:
                return

    def _request(self, query: EngineQuery, limit: int, params: Any) -> Any:
        from qdrant_client import models

        restrict = (
            models.Filter(must=[models.HasIdCondition(has_id=[point_id(d) for d in query.only])])
            if query.only is not None
            else None
        )
        nearest = [
            (
                name,
                models.SparseVector(indices=(pair := _sparse_lists(value))[0], values=pair[1])
                if name != DENSE
                else _dense_list(value),
            )
            for name, value in query.vectors().items()
        ]
        if len(nearest) == 1:
            name, vector = nearest[0]
            return models.QueryRequest(
                query=vector, using=name, limit=limit, filter=restrict, params=params, with_payload=[DOC_ID]
            )
        depth = max(limit, FUSION_DEPTH)
        prefetch = [
            models.Prefetch(query=vector, using=name, limit=depth, filter=restrict, params=params)
            for name, vector in nearest
        ]
        return models.QueryRequest(
            prefetch=prefetch,
            query=models.RrfQuery(rrf=models.Rrf(k=RRF_K)),
            limit=limit,
            with_payload=[DOC_ID],
        )

    @staticmethod
    def _types() -> Any:
        from qdrant_client import models

        return models

    def _query_batch(self, queries: Sequence[EngineQuery], limit: int, params: Any) -> list[list[Hit]]:
        with warnings.catch_warnings():
            # the in-memory stand-in is always exact and says so at every call; a cluster uses the flag
            warnings.filterwarnings("ignore", message="Local mode performs exact")
            requests = [self._request(q, limit, params) for q in queries]
            with self._calls("the search"):
                responses = self.client.query_batch_points(self.collection, requests)
        return [
            [(hit.payload[DOC_ID], float(hit.score)) for hit in response.points] for response in responses
        ]

    def optimize(self) -> None:
        """Nothing to do: a Qdrant server optimises in the background."""

    def drop(self) -> None:
        self.client.delete_collection(self.collection)

    def reload(self) -> None:
        """Nothing to do: every call already reads the server's storage (an upsert returns once written)."""

    def free_space(self) -> int | None:
        return None

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class EngineTarget:
    """Where collections live: a folder of the in-process engine, or a Qdrant URL (``":memory:"`` in tests).

    Attributes:
        path: folder of in-process collections (one sub-folder each); used when ``url`` is None.
        url: a Qdrant server or cluster, e.g. ``http://host:6333``.
        api_key: the cluster's API key.
        shard_number: shards of a collection created on the cluster (None: the cluster's default).
        replication_factor: copies of each shard (None: the cluster's default).
    """

    path: Path | None = None
    url: str | None = None
    api_key: str | None = None
    shard_number: int | None = None
    replication_factor: int | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.url is None):
            raise ValueError(
                "give either a folder (--path) for the in-process engine or a Qdrant URL (--url), not both"
            )
        if self.url is None and (self.api_key or self.shard_number or self.replication_factor):
            raise ValueError(
                "--api-key, --shard-number and --replication-factor apply to a cluster (--url) only"
            )

    def check(self, collection: str) -> None:
        """Fail now, in one line, where ``collection`` could not be used, before any model loads: an
        unreachable cluster; for the in-process engine a name too long, a file where a folder should be,
        a folder this process cannot write in (see :meth:`EdgeBackend.check`)."""
        if self.url is not None:
            self.check_reachable()
        else:
            EdgeBackend(self.path, collection).check()

    def check_reachable(self) -> None:
        """Fail now, in one line, if the cluster cannot be reached (rather than in the middle of a run)."""
        if self.url is not None:
            self.open("lens-embed-probe").close()

    def open(self, collection: str) -> Backend:
        """The backend of one collection (connecting to the cluster, if any)."""
        if self.url is not None:
            return ClientBackend.connect(
                self.url,
                collection,
                api_key=self.api_key,
                shard_number=self.shard_number,
                replication_factor=self.replication_factor,
            )
        return EdgeBackend(self.path, collection)
