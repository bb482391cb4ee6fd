"""The options of ``lens-embed evaluate {mteb,offline,check-harness,airbench,compare,submit-kit}``: declared
once, read by the parser and by the runners (:mod:`lens_embed.commands.evaluation_verbs`).

Every verb that evaluates a model shares :class:`RunOptions` (the model, where the results go, how it is
loaded); the verbs that run mteb tasks add :class:`MtebRunOptions` (instructions, pruning, shards, the
search engine). Imports nothing heavy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lens_embed.base.cli_args import (
    ClusterOptions,
    LoadOptions,
    bounded_float,
    non_negative_float,
    positive_int,
)
from lens_embed.base.defaults import (
    AIRBENCH_VERSION,
    BASELINE_CHOICES,
    COMPARE_REFERENCE,
    COMPARE_TOLERANCE,
    DTYPES,
)
from lens_embed.base.options import check_values, option
from lens_embed.base.vocabulary import (
    BINARY_BITS,
    BINARY_QUERIES,
    DEFAULT_TURBO_BITS,
    INDEX_KINDS,
    QUANTIZATIONS,
    TURBO_BITS,
)
from lens_embed.commands.verb import Verb

DEFAULT_OUTPUT = "results"
ENGINES = ("mteb", "qdrant")
MODEL_HELP = "model folder (lens-embed or sentence-transformers) or a released name (yibinlei/LENS-d8000)"
_NAME_PATTERN = re.compile(r"[^\s,()]+(?:\([^)]*\))?")


def split_names(values: Sequence[str] | None) -> list[str] | None:
    """Accept ``--tasks A B`` and ``--tasks "A B"`` (make passes TASKS as one string); a benchmark
    name such as ``MTEB(eng, v1)`` stays whole despite its comma and space."""
    if not values:
        return None
    names = [name for value in values for name in _NAME_PATTERN.findall(value)]
    return names or None


@dataclass(kw_only=True)
class RunOptions(LoadOptions):
    """What every verb that evaluates a model takes: the model, the results folder, how the model runs."""

    model: str | None = option(None, MODEL_HELP, default_text="the embedded default LENS model")
    output: str = option(
        DEFAULT_OUTPUT, "results folder (mteb layout under OUTPUT/results/)", output="folder"
    )
    batch_size: int = option(32, "texts per encoding batch", check=positive_int)
    device: str | None = option(None, "torch device", default_text="sentence-transformers' choice")
    overwrite: bool = option(False, "recompute tasks already in OUTPUT")
    dtype: str | None = option(
        None,
        "backbone precision",
        choices=DTYPES,
        default_text="float16 on CUDA, as the authors evaluated; else float32",
    )

    def __post_init__(self) -> None:
        """The command line's bounds and choices, for the Python API too."""
        check_values(self)


@dataclass(kw_only=True)
class MtebRunOptions(ClusterOptions, RunOptions):
    """The verbs that run mteb tasks: instructions, pruning, resumable shards and the search engine."""

    instructions: str = option(
        "authors",
        "LENS task instructions: 'authors' (their map and rule, the published protocol), 'mteb' "
        "(mteb's task prompts) or FILE.json; recorded with the results",
    )
    max_active_dims: int | None = option(
        None,
        "keep each LENS vector's N largest lexicon weights, queries and documents alike (the engine's "
        "pruning); results are an mteb experiment of their own",
        check=positive_int,
        default_text="all",
    )
    shard_corpus: bool = option(
        False, "embed retrieval corpora in resumable shards under OUTPUT/embeddings (large corpora)"
    )
    shard_size: int = option(10_000, "documents per shard", check=positive_int)
    engine: str = option(
        "mteb",
        "search retrieval corpora with mteb's exact search in this process (faiss with --shard-corpus), or "
        "in Qdrant, searched exactly: the in-process engine in a temporary folder, or the cluster at --url",
        choices=ENGINES,
    )
    quantization: str = option(
        "none",
        "--engine qdrant: search a quantised copy of the dense vectors (every one, rescored as asked) "
        "instead of the exact vectors; recorded with the results",
        choices=QUANTIZATIONS,
    )
    binary_bits: str = option(
        "1", "--quantization binary: bits a dimension (as index --binary-bits)", choices=BINARY_BITS
    )
    binary_query: str = option(
        "binary",
        "--quantization binary: how a query is encoded (as index --binary-query)",
        choices=BINARY_QUERIES,
    )
    turbo_bits: str = option(
        DEFAULT_TURBO_BITS,
        "--quantization turbo: bits a dimension (as index --turbo-bits)",
        choices=TURBO_BITS,
    )
    rescore: bool | None = option(
        None, "--quantization: rescore the candidates with the full vectors", default_text="the engine's"
    )
    oversampling: float | None = option(
        None,
        "--quantization: fetch top-k x F candidates to rescore",
        check=bounded_float(1.0),
        default_text="the engine's, 1",
    )

    def __post_init__(self) -> None:
        """Refuse engine options that do not go together, before any model is loaded."""
        super().__post_init__()
        quantized = (self.rescore, self.oversampling) != (None, None)
        if self.engine != "qdrant":
            if self.url or self.api_key:
                raise ValueError("--url and --api-key apply to --engine qdrant")
            if self.quantization != "none" or quantized:
                raise ValueError("--quantization, --rescore and --oversampling apply to --engine qdrant")
        elif self.quantization == "none" and quantized:
            raise ValueError("--rescore and --oversampling apply to a quantised search (--quantization)")
        elif self.api_key and not self.url:
            raise ValueError("--api-key applies to a cluster (--url)")


@dataclass(kw_only=True)
class MtebOptions(MtebRunOptions):
    """``lens-embed evaluate mteb``."""

    model: str = option(help=MODEL_HELP)
    tasks: list[str] | None = option(
        None, "task and/or benchmark names", nargs="*", default_text="MTEB(eng, v1)"
    )
    baselines: str = option("none", "also run dense MiniLM and/or BM25", choices=BASELINE_CHOICES)


@dataclass(kw_only=True)
class OfflineOptions(MtebRunOptions):
    """``lens-embed evaluate offline``."""

    data: str | None = option(None, "data folder", default_text="$LENS_EMBED_DATA or ../shared/data")
    tasks: list[str] | None = option(None, "only these local task folders", nargs="*", default_text="all")
    baselines: str = option("all", "baselines beside the model", choices=BASELINE_CHOICES)


@dataclass(kw_only=True)
class CheckHarnessOptions(MtebRunOptions):
    """``lens-embed evaluate check-harness`` (the model is dense MiniLM; ``--model`` is not read)."""

    data: str | None = option(None, "data folder", default_text="$LENS_EMBED_DATA or ../shared/data")
    tasks: list[str] | None = option(None, "only these local task folders", nargs="*", default_text="all")
    anchors: str | None = option(None, "published scores file", default_text="<data>/../anchors/...")
    tolerance: float = option(0.3, "largest |difference| (x100) that passes", check=non_negative_float)
    strict: bool = option(False, "also fail where the local data differs from MTEB's copy")


@dataclass(kw_only=True)
class AirbenchOptions(RunOptions):
    """``lens-embed evaluate airbench``."""

    model: str = option(help=MODEL_HELP)
    name: str | None = option(None, "retriever name in the result files", default_text="model folder name")
    airbench_data: str | None = option(
        None, "local AIR-Bench-layout folder (offline path)", default_text="the hub"
    )
    splits: list[str] = option(help="splits to run", factory=lambda: ["dev", "test"])
    benchmark_version: str = option(AIRBENCH_VERSION, "AIR-Bench release")
    task_types: list[str] | None = option(None, "only these task types", nargs="*", default_text="all")
    domains: list[str] | None = option(None, "only these domains", nargs="*", default_text="all")
    languages: list[str] | None = option(help="only these languages", nargs="*", factory=lambda: ["en"])
    index: str = option("flat", "faiss index kind", choices=INDEX_KINDS)
    shard_size: int = option(10_000, "documents per shard", check=positive_int)
    top_k: int = option(1000, "documents retrieved per query", check=positive_int)


@dataclass(kw_only=True)
class CompareOptions:
    """``lens-embed evaluate compare RESULTS``."""

    results: str = option(
        help="mteb results folder of one model (OUTPUT, or OUTPUT/results/<model>/<revision>)",
        positional=True,
    )
    reference: str = option(COMPARE_REFERENCE, "released model whose published scores to use")
    tolerance: float = option(
        COMPARE_TOLERANCE, "flag tasks whose |difference| (x100) exceeds this", check=non_negative_float
    )
    out: str | None = option(
        None, "Markdown file", output="file", default_text="RESULTS/compare_<reference>.md"
    )

    def __post_init__(self) -> None:
        """The command line's bounds, for the Python API too."""
        check_values(self)


@dataclass(kw_only=True)
class SubmitKitOptions:
    """``lens-embed evaluate submit-kit RESULTS``: the arguments of
    :func:`lens_embed.evaluation.leaderboard.submit.build_kit`, by the same names."""

    results: str = option(help="mteb results folder the model was evaluated into", positional=True)
    model: str = option(help="the model folder")
    output: str = option(help="kit folder to write", output="folder")
    name: str | None = option(None, "hub name org/model", default_text="from the results")
    revision: str | None = option(None, "hub revision of the results", default_text="from the results")
    release_date: str | None = option(None, "YYYY-MM-DD", default_text="today")
    license: str | None = option(None, "licence id", default_text="the model card's")
    training_datasets: list[str] | None = option(
        None, "mteb names of the training datasets", nargs="*", default_text="from the results or model"
    )
    public_training_code: str | None = option(None, "URL of the training code", default_text="none")
    public_training_data: str | None = option(None, "URL of the training data", default_text="none")
    reference: str | None = option(None, "model URL", default_text="its hub page")
    airbench: str | None = option(
        None, "evaluation output folder of `evaluate airbench` to zip and check", default_text="none"
    )
    airbench_version: str = option(AIRBENCH_VERSION, "AIR-Bench release of the search results")
    overwrite: bool = option(False, "replace an existing kit folder")


VERBS = (
    Verb(
        "evaluate",
        "evaluate a model on MTEB, the offline suite or AIR-Bench",
        verbs=(
            Verb(
                "mteb",
                "mteb tasks from the hub (default: the paper's 56 English tasks)",
                MtebOptions,
                "run_mteb",
            ),
            Verb(
                "offline",
                "the offline suite on local data, beside the baselines",
                OfflineOptions,
                "run_offline",
            ),
            Verb(
                "check-harness",
                "dense MiniLM offline vs its published MTEB scores",
                CheckHarnessOptions,
                "run_check_harness",
            ),
            Verb(
                "airbench",
                "AIR-Bench dev scores and test files for submission",
                AirbenchOptions,
                "run_airbench",
            ),
            Verb(
                "compare",
                "our MTEB results vs the published scores of a released LENS model",
                CompareOptions,
                "run_compare",
            ),
            Verb(
                "submit-kit",
                "write and check an MTEB / AIR-Bench leaderboard submission",
                SubmitKitOptions,
                "run_submit_kit",
            ),
        ),
    ),
)
