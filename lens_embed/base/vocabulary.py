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
Quantization = Literal["none", "int8", "binary", "product", "turbo"]
"""The quantisations of dense vectors in a collection (``index --quantization``): the quantised copy is held
in RAM for the search, the full vectors stay beside it (on disk with ``--on-disk``) for rescoring the best
candidates. ``int8``: Qdrant's scalar quantisation (a byte a dimension); ``binary``: one bit a dimension;
``product``: product quantisation (``lens_embed.serving.engine.PRODUCT_COMPRESSION`` times less than
float32); ``turbo``: Qdrant's TurboQuant (a few bits a dimension after a random rotation)."""
QUANTIZATIONS: tuple[Quantization, ...] = get_args(Quantization)
BinaryBits = Literal["1", "1.5", "2"]
"""Bits a dimension that ``binary`` quantisation stores (``index --binary-bits``; Qdrant's ``one_bit``,
``one_and_half_bits`` and ``two_bits`` encodings). ``1``: whether the weight is positive; ``2``: three levels
of the weight against its dimension's mean and standard deviation over the collection; ``1.5``: the two-bit
code with the upper bit shared by neighbouring dimensions."""
BINARY_BITS: tuple[BinaryBits, ...] = get_args(BinaryBits)
BinaryQuery = Literal["binary", "scalar8bits", "scalar4bits"]
"""How ``binary`` quantisation encodes a query (``index --binary-query``; Qdrant's query encodings):
``binary`` as the documents; ``scalar8bits`` / ``scalar4bits`` keep the query's weights at 8 or 4 bits a
dimension, compared with the documents' bits (asymmetric: more exact, more work per document)."""
BINARY_QUERIES: tuple[BinaryQuery, ...] = get_args(BinaryQuery)
TurboBits = Literal["1", "1.5", "2", "4"]
"""Bits a dimension that ``turbo`` quantisation (Qdrant's TurboQuant) stores (``index --turbo-bits``; Qdrant's
``bits1``, ``bits1_5``, ``bits2``, ``bits4``): each vector is rotated, which spreads its weight over the
dimensions, before its coordinates are quantised to this many bits. ``4``: 1/8 of float32."""
TURBO_BITS: tuple[TurboBits, ...] = get_args(TurboBits)
DEFAULT_TURBO_BITS: TurboBits = "4"
"""``turbo`` quantisation's bits a dimension unless told: about 1/8 of float32 (where Qdrant advises to
start)."""
