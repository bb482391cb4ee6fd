"""The options of the corpus, index and search verbs (``encode-corpus``, ``index``, ``search``): declared
once, read by the parser and the runner (:mod:`lens_embed.commands.serving_verbs`). Imports nothing
heavy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lens_embed.base.cli_args import (
    ClusterOptions,
    InstructionOptions,
    LoadOptions,
    QueryOptions,
    bounded_float,
    bounded_int,
    non_negative_int,
    positive_int,
)
from lens_embed.base.defaults import DEFAULT_HNSW_EF_CONSTRUCT, DEFAULT_HNSW_M, MAX_TOP_K
from lens_embed.base.options import option
from lens_embed.base.vocabulary import (
    BINARY_BITS,
    BINARY_QUERIES,
    DEFAULT_TURBO_BITS,
    DENSE_DTYPES,
    QUANTIZATIONS,
    TURBO_BITS,
    USING_CHOICES,
    VECTOR_CHOICES,
)
from lens_embed.commands.verb import Verb


@dataclass(kw_only=True)
class EncodingOptions(LoadOptions):
    """How a corpus is embedded into resumable shards (``encode-corpus``, ``index``)."""

    DEFAULT_TEXTS: ClassVar[dict[str, str]] = {"dtype": "the saved one; bfloat16 for a 7B backbone on GPUs"}

    shard_size: int = option(10_000, "texts per shard file (the unit of resumption)", check=positive_int)
    batch_size: int = option(32, "texts per batch", check=positive_int)
    max_tokens: int | None = option(
        None, "token-budget batches instead of --batch-size", check=positive_int, default_text="none"
    )


@dataclass(kw_only=True)
class EncodeCorpusOptions(QueryOptions, EncodingOptions):
    """``lens-embed encode-corpus MODEL TEXTS --out FOLDER``."""

    model: str = option(help="model folder, hub id or released LENS name", positional=True)
    texts: str = option(
        help="text file, one text per line, or .jsonl (a string or {'text': ...} per line)", positional=True
    )
    out: str = option(help="shard folder (rerun with the same folder to resume)", output="folder")


@dataclass(kw_only=True)
class CollectionOptions(ClusterOptions):
    """Which collection: its name, and where it lives (``--path`` for the in-process engine, or ``--url``
    for a cluster: one or the other)."""

    collection: str = option(help="collection name (letters, digits, '.', '_', '-')")
    path: str | None = option(
        None,
        "folder of the in-process engine's collections",
        exclusive="place",
        default_text="the lens-embed cache's collections/",
    )


@dataclass(kw_only=True)
class IndexOptions(CollectionOptions, EncodingOptions):
    """``lens-embed index MODEL CORPUS --collection NAME``."""

    model: str = option(help="model folder, hub id or released LENS name", positional=True)
    corpus: str = option(
        help='.jsonl, one {"_id": ..., "text": ..., "title": ...} per line (BEIR corpus layout)',
        positional=True,
    )
    vectors: str = option(
        "dense", "dense vectors, sparse ones (the active dimensions), or both", choices=VECTOR_CHOICES
    )
    dense_dtype: str = option(
        "float32", "storage of the dense vectors (float16: half the memory)", choices=DENSE_DTYPES
    )
    max_active_dims: int | None = option(
        None,
        "keep only the N largest lexicon dimensions of each sparse vector (a hybrid's dense part whole; "
        "not re-normalised, as encode --max-active-dims)",
        check=positive_int,
        default_text="all",
    )
    bm25: bool = option(False, "also store BM25 vectors (for search --using bm25/hybrid)", negatable=False)
    hnsw_m: int = option(
        DEFAULT_HNSW_M,
        "links per node of the dense vectors' HNSW graph; 0: no graph, exact search only",
        check=non_negative_int,
    )
    hnsw_ef_construct: int = option(
        DEFAULT_HNSW_EF_CONSTRUCT, "candidates considered while building the graph", check=positive_int
    )
    quantization: str = option(
        "none",
        "a quantised copy of the dense vectors held in RAM for the search, the full vectors kept for "
        "rescoring: int8 (a byte a dimension), binary (1 to 2 bits: --binary-bits), product (16x smaller "
        "than float32), turbo (Qdrant's TurboQuant, 1 to 4 bits: --turbo-bits)",
        choices=QUANTIZATIONS,
    )
    binary_bits: str = option(
        "1",
        "--quantization binary: bits a dimension. 1: whether the weight is positive; 2: three levels of the "
        "weight against its dimension's mean and spread over the collection; 1.5: the 2-bit code with "
        "the upper bit shared by neighbouring dimensions",
        choices=BINARY_BITS,
    )
    binary_query: str = option(
        "binary",
        "--quantization binary: how a query is encoded. binary: as the documents; scalar8bits, "
        "scalar4bits: the query keeps 8 or 4 bits a dimension (asymmetric: more exact, slower)",
        choices=BINARY_QUERIES,
    )
    turbo_bits: str = option(
        DEFAULT_TURBO_BITS,
        "--quantization turbo: bits a dimension of the rotated vector (4: 1/8 of float32, and 8 bytes a "
        "vector more)",
        choices=TURBO_BITS,
    )
    on_disk: bool = option(
        False,
        "keep the full vectors (dense storage, sparse index) on disk instead of in RAM; with "
        "--quantization, RAM holds the quantised copy and the graph",
        negatable=False,
    )
    shard_number: int | None = option(
        None, "shards of a new cluster collection", check=positive_int, default_text="the cluster's"
    )
    replication_factor: int | None = option(
        None, "copies of each shard (cluster)", check=positive_int, default_text="the cluster's"
    )
    shards: str | None = option(None, "embedding shard folder", default_text="in the lens-embed cache")
    upload_batch_size: int = option(128, "documents per upsert request", check=positive_int)


@dataclass(kw_only=True)
class SearchOptions(CollectionOptions, InstructionOptions, LoadOptions):
    """``lens-embed search MODEL QUERIES --collection NAME --out RUN``."""

    DEFAULT_TEXTS: ClassVar[dict[str, str]] = {
        "dtype": "the saved one; as at index time: the probe hash depends on it"
    }

    model: str = option(help="model folder, hub id or released LENS name", positional=True)
    queries: str = option(
        help='.jsonl, one {"_id": ..., "text": ...} per line (BEIR queries layout)', positional=True
    )
    # Not an option(output=...): the runner checks it with the overwrite rule of a run file.
    out: str = option(help="run file: TREC format, or {qid: {docid: score}} for .json")
    top_k: int = option(100, "documents per query", check=bounded_int(1, MAX_TOP_K))
    using: str = option(
        "auto",
        "auto: the LENS vectors stored (dense first); hybrid: those and BM25, fused by the engine",
        choices=USING_CHOICES,
    )
    exact: bool = option(False, "exact dense search instead of the HNSW graph", negatable=False)
    hnsw_ef: int | None = option(
        None,
        "breadth of the HNSW search",
        check=positive_int,
        default_text="the engine's, the graph's ef_construct",
    )
    rescore: bool | None = option(
        None,
        "rescore a quantised collection's candidates with the full vectors",
        default_text="the engine's: on for binary and 1 to 2-bit turbo quantisation, off for int8, product "
        "and 4-bit turbo",
    )
    oversampling: float | None = option(
        None,
        "a quantised search fetches top-k x F candidates to rescore",
        check=bounded_float(1.0),
        default_text="the engine's, 1",
    )
    max_active_dims: int | None = option(
        None,
        "prune the sparse query vectors to their N largest lexicon dimensions (sparse search only); "
        "0: keep them whole",
        check=non_negative_int,
        default_text="as the collection's documents were pruned by index --max-active-dims",
    )
    batch_size: int = option(32, "queries per forward pass", check=positive_int)
    allow_other_model: bool = option(
        False, "search even if the model's probe hash differs from the collection's", negatable=False
    )
    overwrite: bool = option(False, "replace an existing --out file", negatable=False)


VERBS = (
    Verb(
        "encode-corpus",
        "embed a large corpus into resumable shards, data-parallel under torchrun",
        EncodeCorpusOptions,
        "run_encode_corpus",
        description="Run alone, or as `torchrun --nproc-per-node N [--nnodes M ...] -m lens_embed.commands "
        "encode-corpus ...` to use every GPU of every node. Writes OUT/shard_*.npy and OUT/embeddings.npy.",
    ),
    Verb(
        "index",
        "embed a corpus and upload it to a Qdrant collection (in-process, or a cluster); resumable",
        IndexOptions,
        "run_index",
        description="Run alone, or as `torchrun --nproc-per-node N -m lens_embed.commands index ...` "
        "to embed on every GPU. A rerun uploads only what the collection lacks.",
    ),
    Verb(
        "search",
        "search a collection with instructed queries; writes a TREC run",
        SearchOptions,
        "run_search",
    ),
)
