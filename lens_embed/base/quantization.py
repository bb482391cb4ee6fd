"""How a collection's dense vectors are quantised, as one value: the quantisation and the settings of its
kinds, checked together once. The collection's layout, its record, the evaluation's search index and the
verbs pass it whole; the command line builds it from its options before anything heavy loads (this module
imports the vocabulary only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lens_embed.base.vocabulary import (
    BINARY_BITS,
    BINARY_QUERIES,
    DEFAULT_TURBO_BITS,
    QUANTIZATIONS,
    TURBO_BITS,
    BinaryBits,
    BinaryQuery,
    Quantization,
    TurboBits,
)


@dataclass(frozen=True)
class QuantizationSettings:
    """A quantised copy of the dense vectors, held in RAM for the search (``kind`` ``none``: no copy).

    Attributes:
        kind: the quantisation (``index --quantization``: ``none``, ``int8``, ``binary``, ``product``,
            ``turbo``).
        binary_bits: bits a dimension of ``binary`` quantisation (``1``, ``1.5``, ``2``).
        binary_query: how ``binary`` quantisation encodes a query (``binary``, ``scalar8bits``,
            ``scalar4bits``).
        turbo_bits: bits a dimension of ``turbo`` quantisation (``1``, ``1.5``, ``2``, ``4``).

    A binary encoding or TurboQuant width other than the default is refused with another quantisation.
    """

    kind: Quantization = "none"
    binary_bits: BinaryBits = "1"
    binary_query: BinaryQuery = "binary"
    turbo_bits: TurboBits = DEFAULT_TURBO_BITS

    def __post_init__(self) -> None:
        if self.kind not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {self.kind!r}")
        if self.binary_bits not in BINARY_BITS:
            raise ValueError(f"binary bits must be one of {', '.join(BINARY_BITS)}, got {self.binary_bits!r}")
        if self.binary_query not in BINARY_QUERIES:
            raise ValueError(
                f"binary query encoding must be one of {', '.join(BINARY_QUERIES)}, got {self.binary_query!r}"
            )
        if self.kind != "binary" and (self.binary_bits, self.binary_query) != ("1", "binary"):
            given = (
                f"--binary-bits {self.binary_bits}"
                if self.binary_bits != "1"
                else f"--binary-query {self.binary_query}"
            )
            raise ValueError(f"{given} applies to --quantization binary, not {self.kind}")
        if self.turbo_bits not in TURBO_BITS:
            raise ValueError(f"turbo bits must be one of {', '.join(TURBO_BITS)}, got {self.turbo_bits!r}")
        if self.kind != "turbo" and self.turbo_bits != DEFAULT_TURBO_BITS:
            raise ValueError(
                f"--turbo-bits {self.turbo_bits} applies to --quantization turbo, not {self.kind}"
            )

    @classmethod
    def read(cls, values: Mapping[str, Any]) -> QuantizationSettings:
        """The settings under their flat names (:meth:`record`'s: a collection's record, a verb's options);
        a name missing reads as its default, as in a collection of an older version."""
        return cls(*(values.get(name, default) for name, default in cls().record().items()))

    def record(self) -> dict[str, str]:
        """The settings under their flat names, the options' and the collection record's: ``quantization``,
        ``binary_bits``, ``binary_query``, ``turbo_bits``."""
        return {
            "quantization": self.kind,
            "binary_bits": self.binary_bits,
            "binary_query": self.binary_query,
            "turbo_bits": self.turbo_bits,
        }

    def check_dense(self, dense: bool) -> None:
        """Refuse a quantisation of a collection without dense vectors (Qdrant quantises dense vectors
        only)."""
        if self.kind != "none" and not dense:
            raise ValueError(
                f"quantization {self.kind!r} applies to dense vectors, and this collection stores "
                "sparse ones only: index with --vectors dense or both, or --quantization none"
            )


NO_QUANTIZATION = QuantizationSettings()
"""The full vectors alone (the default: every collection of a version before quantisation holds it)."""
