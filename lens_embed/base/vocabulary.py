"""Small vocabularies, each declared once: the type every module annotates with, and its values for
validation and argparse ``choices=`` (read off the type with ``get_args``).

Plain data with no imports of its own: the command line reads it without loading torch, and the
modules' portable copy (``modeling_lens.py``) carries it as it is.
"""

from __future__ import annotations

from typing import Literal, get_args

DensePooling = Literal["mean", "last"]
"""How a hybrid LENS model pools its dense part (``LexiconPooling(dense_pooling=...)``, ``build --dense``)."""
DENSE_POOLING_MODES: tuple[DensePooling, ...] = get_args(DensePooling)
Vectors = Literal["dense", "sparse", "both"]
"""What a collection stores of each document (``index --vectors``)."""
VECTOR_CHOICES: tuple[Vectors, ...] = get_args(Vectors)
Using = Literal["auto", "dense", "sparse", "bm25", "hybrid"]
"""Which vectors a search scores with (``search --using``)."""
USING_CHOICES: tuple[Using, ...] = get_args(Using)
DenseDtype = Literal["float32", "float16"]
"""How a collection stores dense vectors (``index --dense-dtype``: float16 halves their memory)."""
DENSE_DTYPES: tuple[DenseDtype, ...] = get_args(DenseDtype)
IndexKind = Literal["flat", "flat16", "hnsw", "ivf", "ivfpq", "opq"]
"""A faiss index kind (``lens_embed.serving.retrieval.index_factory_string``)."""
INDEX_KINDS: tuple[IndexKind, ...] = get_args(IndexKind)
Quantization = Literal["none", "int8", "binary", "product"]
"""The quantisations of dense vectors in a collection (``index --quantization``): the quantised copy is held
in RAM for the search, the full vectors stay beside it (on disk with ``--on-disk``) for rescoring the best
candidates. ``int8``: Qdrant's scalar quantisation (a byte a dimension); ``binary``: one bit a dimension;
``product``: product quantisation (``lens_embed.serving.engine.PRODUCT_COMPRESSION`` times less than
float32)."""
QUANTIZATIONS: tuple[Quantization, ...] = get_args(Quantization)
