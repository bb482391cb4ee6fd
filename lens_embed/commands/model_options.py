"""The options of the model verbs (``build``, ``encode``, ``info``, ...): declared once, read by the parser
and the runner (:mod:`lens_embed.commands.model_verbs`). Imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lens_embed.base.cli_args import (
    LoadOptions,
    PrecisionOptions,
    QueryOptions,
    cluster_count,
    non_negative_float,
    non_negative_int,
    positive_int,
    top_k_or_none,
)
from lens_embed.base.defaults import (
    BACKENDS,
    CLUSTER_NAME_TOKENS,
    DEFAULT_CLUSTERS,
    DEFAULT_MAX_SEQ_LENGTH,
    EXPORT_QUANTIZATIONS,
)
from lens_embed.base.options import option
from lens_embed.base.vocabulary import DENSE_POOLING_MODES
from lens_embed.commands.verb import Verb

EXPORT_BACKENDS = BACKENDS[1:]
"""The backends a model is exported for (torch runs the saved weights)."""
POSITION_TOP_K_HELP = (
    "sparse LENS: each pooled position keeps only its K largest cluster logits before the max over "
    "positions (queries and documents alike; saved in the model)"
)
OVERWRITE_FOLDER_HELP = "replace a non-empty output directory"


@dataclass(kw_only=True)
class InfoOptions(LoadOptions):
    """``lens-embed info MODEL``."""

    model: str = option(help="model folder, hub id or released LENS name", positional=True)


@dataclass(kw_only=True)
class SavedModelOptions:
    """What the verbs that write a model folder share: its sequence length, sparse LENS, ``--overwrite``."""

    max_seq_length: int = option(DEFAULT_MAX_SEQ_LENGTH, "longest input in tokens", check=positive_int)
    position_top_k: int | None = option(None, POSITION_TOP_K_HELP, check=positive_int, default_text="off")
    overwrite: bool = option(False, OVERWRITE_FOLDER_HELP, negatable=False)


@dataclass(kw_only=True)
class BuildOptions(SavedModelOptions, PrecisionOptions):
    """``lens-embed build BASE OUTPUT``."""

    DEFAULT_TEXTS: ClassVar[dict[str, str]] = {"dtype": "the checkpoint's; bfloat16 for a 7B backbone"}

    base: str = option(
        help="hub id or local directory of the base model ('minilm' = the offline MiniLM)", positional=True
    )
    output: str = option(help="directory to save the LENS model to", positional=True, output="folder")
    clusters: int = option(DEFAULT_CLUSTERS, "K, the number of clusters", check=cluster_count)
    dense: str | None = option(
        None, "add a dense vector (hybrid)", choices=DENSE_POOLING_MODES, default_text="none"
    )
    dense_weight: float = option(1.0, "weight of the dense vector", check=non_negative_float)
    seed: int = option(0, "seed of the KMeans clustering", check=non_negative_int)
    kmeans_iterations: int = option(20, "KMeans iterations", check=positive_int)


@dataclass(kw_only=True)
class ConvertOptions(SavedModelOptions):
    """``lens-embed convert SOURCE OUTPUT``."""

    source: str = option(help="hub id or local directory in the released layout", positional=True)
    output: str = option(help="directory to save the LENS model to", positional=True, output="folder")


@dataclass(kw_only=True)
class SetPoolingOptions:
    """``lens-embed set-pooling MODEL --position-top-k K|none``."""

    model: str = option(help="LENS model folder (or its SparseEncoder folder)", positional=True)
    position_top_k: int | None = option(help=POSITION_TOP_K_HELP + "; 'none': off", check=top_k_or_none)


@dataclass(kw_only=True)
class EncodeOptions(QueryOptions, LoadOptions):
    """``lens-embed encode MODEL TEXTS --out FILE``."""

    model: str = option(help="model folder, hub id or released LENS name", positional=True)
    texts: str = option(help="text file, one text per line, or .jsonl", positional=True)
    out: str = option(help="output .npy file", output="file")
    batch_size: int = option(32, "texts per batch", check=positive_int)
    max_active_dims: int | None = option(
        None,
        "keep only each vector's N largest lexicon weights (as index and search prune)",
        check=positive_int,
        default_text="all",
    )
    overwrite: bool = option(False, "replace an existing --out file", negatable=False)


@dataclass(kw_only=True)
class ExplainOptions(QueryOptions, LoadOptions):
    """``lens-embed explain MODEL TEXT [--document DOC]``."""

    model: str = option(help="model folder, hub id or released LENS name", positional=True)
    text: str = option(help="the text to explain", positional=True)
    document: str | None = option(None, "a document to explain the match with", default_text="none")
    top: int = option(10, "how many clusters to show (at most K)", check=positive_int)


@dataclass(kw_only=True)
class ExportTargetOptions:
    """``--backend``, ``--quantize`` and ``--calibration``: what to export a model for (``default`` exports
    into its cache entry when given ``--backend``; ``export`` always does)."""

    backend: str | None = option(
        None,
        "ONNX Runtime or OpenVINO: export the model for it",
        choices=EXPORT_BACKENDS,
        default_text="none",
    )
    quantize: str | None = option(None, "int8", choices=EXPORT_QUANTIZATIONS, default_text="float32")
    calibration: str | None = option(
        None,
        "texts (one per line, or .jsonl) that OpenVINO's static int8 calibrates on; "
        "--backend openvino --quantize int8 only",
        default_text="none",
    )


@dataclass(kw_only=True)
class DefaultOptions(ExportTargetOptions):
    """``lens-embed default``."""

    untrained: bool = option(
        False,
        "the untrained construction instead (KMeans head on MiniLM, no training), built once",
        negatable=False,
    )
    clusters: int | None = option(
        None, "K of --untrained", check=cluster_count, default_text=str(DEFAULT_CLUSTERS)
    )
    verify: bool = option(
        False,
        "hash every file of the cached trained default (every use checks sizes and the head); a damaged "
        "entry is assembled again",
        negatable=False,
    )


@dataclass(kw_only=True)
class ExportOptions(ExportTargetOptions):
    """``lens-embed export MODEL``: ``--backend`` defaults to onnx."""

    model: str = option(help="local model folder", positional=True)
    backend: str = option("onnx", "ONNX Runtime or OpenVINO", choices=EXPORT_BACKENDS)


@dataclass(kw_only=True)
class CardOptions(PrecisionOptions):
    """``lens-embed card MODEL``."""

    model: str = option(help="LENS model folder", positional=True)
    results: str | None = option(
        None, "mteb results folder for the evaluation table and model-index", default_text="none"
    )
    results_name: str | None = option(None, "the model's name in RESULTS", default_text="matched by revision")
    model_id: str | None = option(None, "hub id the card's usage examples load", default_text="none")
    base_model: str | None = option(
        None, "hub id of the base model (its licence is read from its card)", default_text="none"
    )
    license: str | None = option(None, "licence id", default_text="the base model's")


@dataclass(kw_only=True)
class SparseEncoderOptions(PrecisionOptions):
    """``lens-embed sparse-encoder MODEL OUTPUT``."""

    model: str = option(help="LENS model folder (or a released name)", positional=True)
    output: str = option(help="folder to write", positional=True, output="folder")
    max_active_dims: int | None = option(
        None,
        "the folder's default: each vector keeps its N largest weights",
        check=positive_int,
        default_text="all active ones",
    )
    cluster_tokens: int = option(
        CLUSTER_NAME_TOKENS, "member tokens in each cluster's name", check=positive_int
    )
    overwrite: bool = option(False, OVERWRITE_FOLDER_HELP, negatable=False)


VERBS = (
    Verb("build", "turn a decoder LLM (or encoder) into a LENS model", BuildOptions, "run_build"),
    Verb(
        "convert",
        "convert a released LENS checkpoint (yibinlei/LENS-d8000 layout)",
        ConvertOptions,
        "run_convert",
    ),
    Verb(
        "set-pooling",
        "change the pooling of a saved LENS model folder (sparse LENS: --position-top-k)",
        SetPoolingOptions,
        "run_set_pooling",
        description="Rewrites the folder's pooling config in place (atomically): its embeddings, content "
        "revision and cache keys change with it.",
    ),
    Verb("encode", "embed the texts of a file (one per line) into a .npy array", EncodeOptions, "run_encode"),
    Verb(
        "explain",
        "show the top clusters of a text (and why a document matches)",
        ExplainOptions,
        "run_explain",
    ),
    Verb("info", "describe a LENS model", InfoOptions, "run_info"),
    Verb(
        "default",
        "print the embedded default's path: the trained LENS-MiniLM, assembled once from the package's "
        "parameter file",
        DefaultOptions,
        "run_default",
    ),
    Verb(
        "export",
        "export a model's backbone for the CPU backends (ONNX Runtime, OpenVINO), float32 or int8",
        ExportOptions,
        "run_export",
        description="Writes onnx/model.onnx, onnx/model_qint8_avx512_vnni.onnx, openvino/openvino_model.xml "
        "or openvino/openvino_model_qint8_quantized.xml into the model folder (sentence-transformers' "
        "names), recorded with the hash of the weights it came from; every verb that loads a model then "
        "runs it with --backend (and --quantize). An export already there and current is kept.",
    ),
    Verb("card", "(re)write the model card (README.md) of a saved LENS model", CardOptions, "run_card"),
    Verb(
        "sparse-encoder",
        "write a LENS model's SparseEncoder folder (sentence-transformers' sparse stack)",
        SparseEncoderOptions,
        "run_sparse_encoder",
        description="SparseEncoder(OUT, trust_remote_code=True) then gives the model's embeddings as sparse "
        "tensors, decode() naming each dimension by its cluster's tokens. OUT shares MODEL's files "
        "(hard links); on the hub, push it to the 'sparse' branch of MODEL's repository.",
    ),
)
