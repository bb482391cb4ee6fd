"""Serving a LENS corpus from Qdrant: the Python API of ``lens-embed index`` and ``lens-embed search``
(whose options and runners are :mod:`lens_embed.commands.serving_options` and ``serving_verbs``).

``index`` embeds the documents through the corpus-encoding path
(:func:`lens_embed.serving.corpus.encode_corpus`: resumable shards, data-parallel under torchrun) and upserts
them by document id in batches. A collection records what it holds (:class:`CollectionSpec`: the model's name
and probe-text hash, the dimension and K, the side, which vectors, their dtype and pruning), so a rerun with
another model or configuration is refused, and a rerun of an interrupted upload sends only the documents
still missing (or whose text changed) and ends by checking that the collection holds exactly the corpus.
``search`` embeds instructed queries and asks the engine for the best documents: dense, sparse, BM25,
or LENS and BM25 fused by the engine (hybrid). Every engine call goes through
:class:`lens_embed.serving.engine.Backend`, so the in-process engine and a cluster share this one code path.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm

from lens_embed.base.defaults import DEFAULT_HNSW_EF_CONSTRUCT, DEFAULT_HNSW_M
from lens_embed.base.quantization import NO_QUANTIZATION, QuantizationSettings
from lens_embed.base.storage import atomic_write, cache_dir
from lens_embed.base.vocabulary import USING_CHOICES, VECTOR_CHOICES, DenseDtype, Using, Vectors
from lens_embed.models.model import LensSentenceTransformer, encode
from lens_embed.models.pooling import keep_max_active_dims
from lens_embed.serving.corpus import broadcast, encode_corpus, rank_zero
from lens_embed.serving.engine import (
    DENSE,
    DOC_ID,
    Backend,
    EngineError,
    EnginePoint,
    EngineQuery,
    Layout,
    quantized_bytes,
)
from lens_embed.serving.retrieval import corpus_key, fingerprint, model_key, normalized

logger = logging.getLogger(__name__)

SPEC_FORMAT = 1
TEXT_HASH = "text_hash"
"""Payload field with a hash of the document's text: a changed text is uploaded again."""
UPLOAD_DISK_FACTOR = 2.5
"""Disk an upload takes per byte of vectors in the in-process engine: the stored vectors, their copy in
the write-ahead log, and the graph (measured: 12 MB of dense vectors took 28 MB, 36 MB of dense and sparse
ones 79 MB once optimised)."""
EMBEDDING_SETTINGS = ("max_seq_length", "truncation_keeps_eos")
"""The model settings a collection records beside its probe hash: they change embeddings of texts longer
than the short probe (dtype and attention kernel only round differently, and move the probe hash)."""


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection holds, recorded in it at creation and checked by every later index or search.

    Attributes:
        model_name: the model as it was named (informative: a moved folder is the same model).
        model_key: the model's probe-text hash (:func:`lens_embed.serving.retrieval.model_key`, as the shard
            manifest).
        dim: the embedding dimension (K, plus H for a hybrid LENS model).
        clusters: K of a LENS model (None for other models).
        side: what was embedded (``document``).
        vectors: ``dense``, ``sparse`` (the active dimensions) or ``both``.
        dense_dtype: storage type of the dense vectors.
        max_active_dims: sparse vectors keep only their largest-magnitude dimensions (None: all active ones).
        bm25_avg_len: BM25 vectors are stored, with this average document length (words); None: no BM25.
        hnsw_m: links per node of the dense vectors' HNSW graph (0: no graph, exact search only).
        hnsw_ef_construct: candidates considered while building the graph.
        quantization: a quantised copy of the dense vectors in RAM for the search, and its settings; recorded
            flat (``quantization``, ``binary_bits``, ...: :meth:`QuantizationSettings.record`), a setting an
            older version did not record read as its default.
        on_disk: the full vectors are kept on disk (read through the page cache) instead of in RAM.
        settings: what else decides the embeddings (:func:`embedding_settings`: maximum length,
            truncation, the pooling module's configuration); None in a collection of an older version.
    """

    model_name: str
    model_key: str
    dim: int
    clusters: int | None = None
    side: str = "document"
    vectors: Vectors = "dense"
    dense_dtype: DenseDtype = "float32"
    max_active_dims: int | None = None
    bm25_avg_len: float | None = None
    hnsw_m: int = DEFAULT_HNSW_M
    hnsw_ef_construct: int = DEFAULT_HNSW_EF_CONSTRUCT
    quantization: QuantizationSettings = NO_QUANTIZATION
    on_disk: bool = False
    settings: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.vectors not in VECTOR_CHOICES:
            raise ValueError(f"vectors must be one of {', '.join(VECTOR_CHOICES)}, got {self.vectors!r}")
        if self.max_active_dims is not None and (self.max_active_dims < 1 or self.vectors == "dense"):
            raise ValueError(
                "max_active_dims (a positive number) prunes sparse vectors: "
                "use it with vectors sparse or both"
            )
        self.layout()  # dimension and dtype checks

    @property
    def dense(self) -> bool:
        return self.vectors in ("dense", "both")

    @property
    def sparse(self) -> bool:
        return self.vectors in ("sparse", "both")

    @property
    def bm25(self) -> bool:
        return self.bm25_avg_len is not None

    def layout(self) -> Layout:
        """The engine's layout: the spec's settings of the same names (the rest is lens-embed's record)."""
        return Layout(**{setting.name: getattr(self, setting.name) for setting in fields(Layout)})

    def record(self) -> dict[str, Any]:
        """The spec as the collection records it: flat keys, the quantisation's settings among them."""
        record: dict[str, Any] = {"format": SPEC_FORMAT}
        for name, value in asdict(self).items():
            record.update(self.quantization.record() if name == "quantization" else {name: value})
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None, where: str) -> CollectionSpec:
        """The spec a collection recorded; a collection lens-embed did not make (or a newer format) is
        refused."""
        if not isinstance(record, Mapping):
            raise ValueError(
                f"{where} has no lens-embed record: it was not made by lens-embed index, or it is damaged"
            )
        if record.get("format") != SPEC_FORMAT:
            raise ValueError(
                f"{where} has lens-embed record format {record.get('format')!r}; "
                f"this version reads {SPEC_FORMAT}"
            )
        names = {f.name for f in fields(cls)} - {"quantization"}  # recorded flat: read by its settings
        return cls(
            **{key: value for key, value in record.items() if key in names},
            quantization=QuantizationSettings.read(record),
        )

    def differences(self, recorded: CollectionSpec) -> list[str]:
        """What differs from the recorded spec, in words (empty: the same model and configuration)."""
        found = []
        here, there = self.record(), recorded.record()
        if self.model_key != recorded.model_key:
            found.append(
                f"model: {recorded.model_name!r} (probe hash {recorded.model_key}) there, "
                f"{self.model_name!r} (probe hash {self.model_key}) now"
            )
        for name in (
            "dim",
            "clusters",
            "side",
            "vectors",
            "dense_dtype",
            "max_active_dims",
            "hnsw_m",
            "hnsw_ef_construct",
            "quantization",
            "binary_bits",
            "binary_query",
            "turbo_bits",
            "on_disk",
        ):
            if here[name] != there[name]:
                found.append(f"{name}: {there[name]!r} there, {here[name]!r} now")
        if self.bm25 != recorded.bm25:
            found.append(f"bm25: {recorded.bm25} there, {self.bm25} now")
        return found + setting_differences(recorded.settings, self.settings)


def _flat(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def setting_differences(recorded: Mapping[str, Any] | None, now: Mapping[str, Any] | None) -> list[str]:
    """Each setting that differs, ``name: value there, value now`` (a setting only one side has counts:
    a new pooling option, say); nothing when either side recorded none (an older collection)."""
    if recorded is None or now is None:
        return []
    there, here = _flat(recorded), _flat(now)
    return [
        f"{name}: {there.get(name)!r} there, {here.get(name)!r} now"
        for name in sorted(there.keys() | here.keys())
        if there.get(name) != here.get(name)
    ]


def embedding_settings(model: SentenceTransformer) -> dict[str, Any]:
    """The settings that change a model's embeddings beyond its probe hash: :data:`EMBEDDING_SETTINGS`,
    and a LENS model's whole pooling configuration (its ``get_config_dict()``: every option a version adds
    is compared without naming it here)."""
    settings = {
        name: value
        for name, value in LensSentenceTransformer.settings(model).items()
        if name in EMBEDDING_SETTINGS
    }
    if LensSentenceTransformer.is_lens_model(model):
        settings["pooling"] = json.loads(json.dumps(LensSentenceTransformer.lexicon(model).get_config_dict()))
    return settings


def model_spec(model: SentenceTransformer, model_name: str | None = None, **options: Any) -> CollectionSpec:
    """The spec of a collection of ``model``'s document vectors with these options (see
    :class:`CollectionSpec`)."""
    name = model_name or getattr(model.model_card_data, "model_name", None) or type(model).__name__
    clusters = (
        LensSentenceTransformer.lexicon(model).n_clusters
        if LensSentenceTransformer.is_lens_model(model)
        else None
    )
    return CollectionSpec(
        model_name=str(name),
        model_key=model_key(model),
        dim=model.get_embedding_dimension(),
        clusters=clusters,
        settings=embedding_settings(model),
        **options,
    )


def sparse_rows(
    vectors: np.ndarray, max_active_dims: int | None = None, lexicon_dims: int | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The active (non-zero) dimensions of every row as ``(indices, values)``, indices ascending.

    With ``max_active_dims`` the vectors are pruned first by
    :func:`lens_embed.models.pooling.keep_max_active_dims` (the encode-time pruning): the largest lexicon
    weights in magnitude, ties to the lower index, not re-normalised. ``lexicon_dims`` is a LENS model's K (a
    hybrid's dense part is kept whole); None prunes every dimension.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if max_active_dims is not None:
        vectors = keep_max_active_dims(vectors, max_active_dims, lexicon_dims)
    rows = []
    for vector in vectors:
        active = np.flatnonzero(vector)
        rows.append((active, vector[active]))
    return rows


def open_collection(backend: Backend, spec: CollectionSpec) -> CollectionSpec:
    """Create the collection for ``spec``, or check that an existing one holds the same model and
    configuration.

    Returns the recorded spec (an existing collection keeps its recorded BM25 average length, so new
    documents are weighted like the old ones).
    """
    if not backend.exists():
        backend.create(spec.layout(), spec.record())
        return spec
    recorded = CollectionSpec.from_record(backend.metadata(), backend.location)
    differences = spec.differences(recorded)
    if differences:
        raise ValueError(
            f"{backend.location} holds another model's or configuration's vectors "
            f"({'; '.join(differences)}); "
            "index into another collection, or rerun with the options it was made with"
        )
    return recorded


def recorded_spec(backend: Backend) -> CollectionSpec:
    """The spec an existing collection recorded."""
    if not backend.exists():
        raise FileNotFoundError(f"no collection at {backend.location}; create it with lens-embed index")
    return CollectionSpec.from_record(backend.metadata(), backend.location)


def text_hash(text: str) -> str:
    return fingerprint(text)


def missing_documents(backend: Backend, ids: Sequence[str], texts: Sequence[str] | None = None) -> list[int]:
    """Rows of ``ids`` the collection lacks (or holds with another text); refuses documents not in the
    corpus."""
    stored = {payload[DOC_ID]: payload.get(TEXT_HASH) for payload in backend.payloads([DOC_ID, TEXT_HASH])}
    foreign = sorted(stored.keys() - set(ids))
    if foreign:
        raise ValueError(
            f"{backend.location} holds {len(foreign)} document(s) that are not in this corpus "
            f"(e.g. {', '.join(map(repr, foreign[:3]))}); "
            "nothing is deleted: index this corpus into another collection"
        )
    if texts is None:
        return [row for row, doc_id in enumerate(ids) if doc_id not in stored]
    return [
        row
        for row, (doc_id, text) in enumerate(zip(ids, texts, strict=True))
        if doc_id not in stored or stored[doc_id] != text_hash(text)
    ]


def _bm25(avg_len: float) -> Any:
    return qdrant_edge.Bm25(qdrant_edge.Bm25Config(avg_len=avg_len))


def _sparse(vector: Any) -> tuple[list[int], list[float]]:
    return list(vector.indices), list(vector.values)


def _batches(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def upload_vectors(
    backend: Backend,
    spec: CollectionSpec,
    ids: Sequence[str],
    embeddings: np.ndarray,
    rows: Sequence[int] | None = None,
    *,
    texts: Sequence[str] | None = None,
    batch_size: int = 128,
    show_progress: bool = True,
) -> int:
    """Upsert the given rows (default: all) of ``embeddings`` as documents ``ids[row]``, then optimise.

    Vectors are L2-normalised (inner product = cosine); sparse vectors are their active dimensions,
    pruned to ``spec.max_active_dims``. ``texts`` (aligned with ``ids``) give the BM25 vectors and the
    text hashes a later rerun compares. Returns the number of documents sent.
    """
    rows = list(range(len(ids))) if rows is None else list(rows)
    if embeddings.ndim != 2 or embeddings.shape[1] != spec.dim:
        got = f"dimension {embeddings.shape[1]}" if embeddings.ndim == 2 else f"shape {embeddings.shape}"
        raise ValueError(f"vectors of {got} do not match {backend.location} (dimension {spec.dim})")
    if spec.bm25_avg_len is not None and texts is None:
        raise ValueError(f"{backend.location} stores BM25 vectors: the document texts are needed")
    bm25 = _bm25(spec.bm25_avg_len) if spec.bm25_avg_len is not None else None
    with tqdm(
        total=len(rows), unit="doc", desc=f"Uploading to {backend.collection}", disable=not show_progress
    ) as bar:
        for batch in _batches(rows, batch_size):
            vectors = normalized(np.asarray(embeddings[list(batch)]))
            sparse = (
                sparse_rows(vectors, spec.max_active_dims, spec.clusters)
                if spec.sparse
                else [None] * len(batch)
            )
            backend.upsert(
                [
                    EnginePoint(
                        doc_id=ids[row],
                        dense=vectors[i] if spec.dense else None,
                        sparse=sparse[i],
                        bm25=_sparse(bm25.embed_document(texts[row])) if bm25 is not None else None,
                        payload={TEXT_HASH: text_hash(texts[row])} if texts is not None else {},
                    )
                    for i, row in enumerate(batch)
                ]
            )
            bar.update(len(batch))
    backend.optimize()
    return len(rows)


def upload_bytes(
    spec: CollectionSpec, embeddings: np.ndarray, rows: Sequence[int], texts: Sequence[str] | None = None
) -> int:
    """About how much disk the in-process engine takes for these rows (:data:`UPLOAD_DISK_FACTOR` times
    their vectors; sparse and BM25 ones counted from a sample of up to 1000 rows, 8 bytes an entry)."""
    if not rows:
        return 0
    per_document = spec.dim * (2 if spec.dense_dtype == "float16" else 4) if spec.dense else 0
    per_document += quantized_bytes(spec.dim, spec.quantization)
    sample = list(rows[:: max(1, len(rows) // 1000)])
    if spec.sparse:
        pruned = sparse_rows(np.asarray(embeddings[sample]), spec.max_active_dims, spec.clusters)
        per_document += 8 * sum(len(indices) for indices, _ in pruned) / len(sample)
    if spec.bm25_avg_len is not None and texts is not None:
        per_document += 8 * sum(len(texts[row].split()) for row in sample) / len(sample)
    return int(UPLOAD_DISK_FACTOR * per_document * len(rows))


def check_free_space(backend: Backend, needed: int) -> None:
    """Refuse an upload the disk cannot hold (the engine would die of SIGBUS midway), saying what it needs."""
    free = backend.free_space()
    if free is not None and needed > free:
        raise OSError(
            f"{backend.location}: the upload needs about {needed / 1e6:,.0f} MB of disk and "
            f"{free / 1e6:,.0f} MB are free there; free some space or index into another --path "
            "(the embeddings are kept: a rerun uploads them)"
        )


def check_contents(backend: Backend, ids: Sequence[str], spec: CollectionSpec | None = None) -> None:
    """Raise unless the collection, read back from storage, holds exactly these documents, each once (ids
    and count), and every stored vector reads back (with ``spec``: each dense one of its dimension).

    The backend is reloaded first (:meth:`Backend.reload`), so what is checked is what a later process
    finds, not what this one holds in memory; every vector is read, so a damaged vector file fails here.
    """
    backend.reload()
    count = backend.count()
    stored = []
    for payload, vectors in backend.records([DOC_ID], batch_size=256, with_vectors=True):
        stored.append(payload[DOC_ID])
        dense = (vectors or {}).get(DENSE) if spec is not None and spec.dense else None
        if spec is not None and spec.dense and (dense is None or len(dense) != spec.dim):
            raise EngineError(
                f"{backend.location}: document {payload[DOC_ID]!r} has no {spec.dim}-dimension dense vector "
                "in storage; the collection is damaged: index the corpus into a new collection"
            )
    expected = set(ids)
    if count != len(expected) or len(stored) != count or set(stored) != expected:
        missing = sorted(expected - set(stored))
        raise EngineError(
            f"{backend.location} holds {count} point(s), {len(set(stored))} distinct document id(s); "
            "the corpus has "
            f"{len(expected)}" + (f" (missing e.g. {', '.join(map(repr, missing[:3]))})" if missing else "")
        )


@dataclass(frozen=True)
class IndexSummary:
    """What a run of :func:`index_corpus` did."""

    location: str
    documents: int
    uploaded: int


def index_corpus(
    model: SentenceTransformer,
    documents: Mapping[str, str],
    backend: Backend | None,
    *,
    model_name: str | None = None,
    vectors: Vectors = "dense",
    dense_dtype: DenseDtype = "float32",
    max_active_dims: int | None = None,
    bm25: bool = False,
    hnsw_m: int = DEFAULT_HNSW_M,
    hnsw_ef_construct: int = DEFAULT_HNSW_EF_CONSTRUCT,
    quantization: QuantizationSettings = NO_QUANTIZATION,
    on_disk: bool = False,
    shard_dir: str | Path | None = None,
    shard_size: int = 10_000,
    batch_size: int = 32,
    max_tokens: int | None = None,
    upload_batch_size: int = 128,
    show_progress: bool = True,
) -> IndexSummary | None:
    """Embed ``documents`` (``{id: text}``) and upload what the collection lacks; resumable at any point.

    Run it alone, or on every rank of a torchrun group (the same documents everywhere; ``backend`` on
    rank 0 only, None elsewhere): every rank embeds its shards, rank 0 uploads. The collection is
    created with this model and configuration recorded, or must already hold the same ones; documents
    already uploaded with the same text are not sent again, and the run ends by checking that the
    collection holds exactly the corpus. Returns the summary on rank 0, None on the others.

    Args:
        model: the model, on this rank's device.
        documents: ``{document id: text}``.
        backend: the collection (rank 0).
        model_name: how the collection names the model (default: the model card's name).
        vectors: ``dense``, ``sparse`` (the active dimensions) or ``both``.
        dense_dtype: ``float32`` or ``float16`` (half the memory) for the dense vectors.
        max_active_dims: keep only this many dimensions per sparse vector (largest magnitude).
        bm25: also store BM25 vectors of the texts (for ``search(using="bm25" | "hybrid")``).
        hnsw_m, hnsw_ef_construct: the dense vectors' HNSW graph (``hnsw_m=0``: none, exact search only).
        quantization: a quantised copy of the dense vectors in RAM (``QuantizationSettings("int8")``,
            ``QuantizationSettings("binary", binary_bits="2")``...).
        on_disk: keep the full vectors on disk instead of in RAM.
        shard_dir: the embedding shards (default: a folder per model and corpus in the lens-embed cache).
        shard_size, batch_size, max_tokens: as :func:`lens_embed.serving.corpus.encode_corpus`.
        upload_batch_size: documents per upsert request.
        show_progress: progress bars.
    """
    ids = list(documents)
    texts = [documents[doc_id] for doc_id in ids]
    if not ids:
        raise ValueError("no documents to index")
    avg_len = float(np.mean([len(text.split()) for text in texts])) if bm25 else None

    def plan() -> tuple[CollectionSpec, list[int], Path]:
        spec = model_spec(
            model,
            model_name,
            vectors=vectors,
            dense_dtype=dense_dtype,
            max_active_dims=max_active_dims,
            bm25_avg_len=avg_len,
            hnsw_m=hnsw_m,
            hnsw_ef_construct=hnsw_ef_construct,
            quantization=quantization,
            on_disk=on_disk,
        )
        spec = open_collection(backend, spec)
        folder = (
            Path(shard_dir)
            if shard_dir is not None
            else cache_dir() / "corpus-shards" / corpus_key(model, texts)
        )
        return spec, missing_documents(backend, ids, texts), folder

    planned = rank_zero(plan)
    todo, folder = broadcast(planned[1:] if planned else None)
    if todo:
        logger.info("%d of %d documents to upload", len(todo), len(ids))
        merged = encode_corpus(
            model,
            texts,
            folder,
            shard_size=shard_size,
            batch_size=batch_size,
            max_tokens=max_tokens,
            show_progress=show_progress,
        )
    if planned is None:
        return None
    spec, todo, _ = planned
    if todo:
        embeddings = np.load(merged, mmap_mode="r")
        check_free_space(backend, upload_bytes(spec, embeddings, todo, texts))
        upload_vectors(
            backend,
            spec,
            ids,
            embeddings,
            todo,
            texts=texts,
            batch_size=upload_batch_size,
            show_progress=show_progress,
        )
    else:
        backend.optimize()  # a run killed after its upload left the optimisation undone (a no-op otherwise)
    check_contents(backend, ids, spec)
    return IndexSummary(location=backend.location, documents=len(ids), uploaded=len(todo))


def lens_vectors(spec: CollectionSpec, using: Using) -> str | None:
    """Which LENS vectors a search ``using`` this reads: ``dense``, ``sparse``, or None (BM25 alone)."""
    if using not in USING_CHOICES:
        raise ValueError(f"using must be one of {', '.join(USING_CHOICES)}, got {using!r}")
    if using == "bm25":
        return None
    if using in ("dense", "sparse"):
        return using
    return "dense" if spec.dense else "sparse"


def query_pruning(spec: CollectionSpec, using: Using, max_active_dims: int | None) -> int | None:
    """The pruning of a search's sparse query vectors: ``max_active_dims`` as asked, 0 for whole queries,
    and by default the collection's own (queries pruned as its documents were) when the search reads
    sparse vectors."""
    if max_active_dims is None:
        return spec.max_active_dims if lens_vectors(spec, using) == "sparse" else None
    return max_active_dims or None


def engine_queries(
    spec: CollectionSpec,
    vectors: np.ndarray,
    texts: Sequence[str] | None = None,
    *,
    using: Using = "auto",
    max_active_dims: int | None = None,
    only: Sequence[Sequence[str] | None] | None = None,
) -> list[EngineQuery]:
    """The engine queries for query embeddings: the vectors ``using`` asks for, checked against the
    collection.

    ``auto`` is the dense vector when the collection stores it, else the sparse one; ``hybrid`` is that
    and BM25, fused by the engine. Query vectors are L2-normalised; sparse ones are pruned to
    ``max_active_dims`` (default: all active dimensions). ``only`` restricts each query to candidates.
    """
    lens = lens_vectors(spec, using)
    stored = {"dense": spec.dense, "sparse": spec.sparse}
    if lens is not None and not stored[lens]:
        raise ValueError(
            f"the collection stores no {lens} vectors (it holds {spec.vectors}); choose another --using"
        )
    if using in ("bm25", "hybrid") and spec.bm25_avg_len is None:
        raise ValueError(
            "the collection stores no BM25 vectors: index it with --bm25 for --using bm25 or hybrid"
        )
    if vectors.ndim != 2 or vectors.shape[1] != spec.dim:
        raise ValueError(f"query vectors have dimension {vectors.shape[-1]}, the collection {spec.dim}")
    if using in ("bm25", "hybrid") and texts is None:
        raise ValueError("BM25 queries need the query texts")
    if max_active_dims is not None and lens != "sparse":
        raise ValueError(
            f"max_active_dims prunes sparse query vectors, and this search uses {lens or 'no LENS'} "
            "vectors: search the sparse vectors (--using sparse), or leave the queries unpruned"
        )
    vectors = normalized(vectors)
    sparse = sparse_rows(vectors, max_active_dims, spec.clusters) if lens == "sparse" else None
    bm25 = _bm25(spec.bm25_avg_len) if using in ("bm25", "hybrid") else None
    return [
        EngineQuery(
            dense=vectors[i] if lens == "dense" else None,
            sparse=sparse[i] if sparse is not None else None,
            bm25=_sparse(bm25.embed_query(texts[i])) if bm25 is not None else None,
            only=only[i] if only is not None else None,
        )
        for i in range(len(vectors))
    ]


def check_model(
    model: SentenceTransformer, spec: CollectionSpec, where: str, *, allow_other_model: bool = False
) -> None:
    """Refuse a model whose dimension differs from the collection's; and, unless allowed, another model."""
    dim = model.get_embedding_dimension()
    if dim != spec.dim:
        raise ValueError(
            f"the model embeds in {dim} dimensions, {where} holds {spec.dim}-dimension vectors "
            f"of {spec.model_name!r}"
        )
    key = model_key(model)
    if key != spec.model_key and not allow_other_model:
        raise ValueError(
            f"{where} holds vectors of {spec.model_name!r} (probe hash {spec.model_key}), "
            f"this model's probe hash is {key}; search with that model "
            "(the same model on another device or dtype may differ slightly: "
            "--allow-other-model searches anyway)"
        )
    differences = setting_differences(spec.settings, embedding_settings(model))
    if differences and not allow_other_model:
        raise ValueError(
            f"{where} was indexed with other model settings ({'; '.join(differences)}); search with the "
            "model as it was indexed (--allow-other-model searches anyway)"
        )


def check_quantized_search(
    spec: CollectionSpec,
    using: Using = "auto",
    *,
    exact: bool = False,
    rescore: bool | None = None,
    oversampling: float | None = None,
) -> None:
    """Refuse ``rescore`` / ``oversampling`` where no quantised vectors are searched: a collection indexed
    without quantisation, a search of no dense vectors, or an exact search (which reads the full vectors)."""
    if rescore is None and oversampling is None:
        return
    given = "--rescore/--no-rescore" if oversampling is None else "--oversampling"
    if spec.quantization.kind == "none":
        raise ValueError(
            f"{given} applies to a quantised collection, and this one was indexed with --quantization none"
        )
    if lens_vectors(spec, using) != "dense":
        raise ValueError(
            f"{given} applies to the dense vectors, and this search (--using {using}) reads none"
        )
    if exact:
        raise ValueError(f"{given} applies to the quantised search; --exact reads the full vectors")
    if oversampling is not None and not oversampling >= 1:
        raise ValueError(f"oversampling must be >= 1 (candidates = limit x oversampling), got {oversampling}")


def search_collection(
    model: SentenceTransformer,
    queries: Mapping[str, str],
    backend: Backend,
    *,
    top_k: int = 100,
    instruction: str | None = None,
    using: Using = "auto",
    exact: bool = False,
    hnsw_ef: int | None = None,
    rescore: bool | None = None,
    oversampling: float | None = None,
    max_active_dims: int | None = None,
    allow_other_model: bool = False,
    batch_size: int = 32,
    query_batch_size: int = 64,
    show_progress: bool = True,
) -> dict[str, dict[str, float]]:
    """``{query id: {document id: score}}`` (best first) for instructed queries against a collection.

    Args:
        model: the model the collection was indexed with.
        queries: ``{query id: text}``.
        backend: the collection.
        top_k: documents per query.
        instruction: the query instruction (default: the model's ``query`` prompt).
        using: ``auto`` (the LENS vectors the collection holds), ``dense``, ``sparse``, ``bm25`` or
            ``hybrid``.
        exact: exact dense search instead of the HNSW graph (sparse search is always exact).
        hnsw_ef: breadth of the graph search (default: the engine's, the graph's ef_construct).
        rescore: a quantised collection's candidates rescored with the full vectors (None: the engine's
            default, which rescores binary quantisation and turbo at 1 to 2 bits, and not int8, product or
            turbo at 4 bits, in qdrant-edge 0.9).
        oversampling: a quantised search fetches ``top_k x oversampling`` candidates to rescore (None:
            the engine's default, 1).
        max_active_dims: prune the sparse query vectors to this many dimensions; 0 keeps them whole;
            default: as the collection's documents were pruned (whole if they were not).
        allow_other_model: search even if the model's probe hash differs from the recorded one.
        batch_size: queries per forward pass; ``query_batch_size``: queries per engine request.
        show_progress: a progress bar.
    """
    spec = recorded_spec(backend)
    check_quantized_search(spec, using, exact=exact, rescore=rescore, oversampling=oversampling)
    check_model(model, spec, backend.location, allow_other_model=allow_other_model)
    query_ids = list(queries)
    texts = [queries[qid] for qid in query_ids]
    vectors = encode(
        model, texts, query=True, instruction=instruction, batch_size=batch_size, show_progress_bar=False
    )
    pruning = query_pruning(spec, using, max_active_dims)
    requests = engine_queries(spec, vectors, texts, using=using, max_active_dims=pruning)
    hits = []
    for batch in tqdm(
        list(_batches(range(len(requests)), query_batch_size)),
        desc="Searching",
        unit="batch",
        disable=not show_progress,
    ):
        hits += backend.query(
            [requests[i] for i in batch],
            top_k,
            exact=exact,
            hnsw_ef=hnsw_ef,
            rescore=rescore,
            oversampling=oversampling,
        )
    return {qid: dict(found) for qid, found in zip(query_ids, hits, strict=True)}


def check_trec_ids(ids: Iterable[str]) -> None:
    """Refuse an id a TREC run cannot hold: empty, or holding whitespace (it would shift the columns)."""
    spaced = next((i for i in ids if not i or len(i.split()) != 1), None)
    if spaced is not None:
        raise ValueError(
            f"id {spaced!r} is empty or holds whitespace, which a TREC run cannot hold; write a .json run"
        )


def write_run(
    results: Mapping[str, Mapping[str, float]], path: str | os.PathLike, run_name: str = "lens-embed"
) -> Path:
    """Write results as a TREC run (``qid Q0 docid rank score run``), or ``{qid: {docid: score}}`` for
    ``.json``.

    Written atomically; an id with whitespace (which would shift a TREC run's columns) is refused.
    """
    target = Path(path)
    if target.suffix == ".json":
        content = json.dumps(results, indent=1)
    else:
        check_trec_ids(i for qid, ranked in results.items() for i in (qid, *ranked))
        content = "".join(
            f"{qid} Q0 {doc_id} {rank} {score:.8g} {run_name}\n"
            for qid, ranked in results.items()
            for rank, (doc_id, score) in enumerate(ranked.items(), start=1)
        )
    return atomic_write(target, lambda handle: handle.write(content.encode("utf-8")))
