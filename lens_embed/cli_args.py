"""argparse ``type=`` validators shared by every ``lens-embed`` verb, so a bad number fails at parse time.

Each returns the converted value or raises ``argparse.ArgumentTypeError``, which argparse reports
as ``lens-embed VERB: error: argument --NAME: ...`` with exit code 2. Importing this is instant.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def bounded_int(minimum: int) -> Callable[[str], int]:
    """An argparse type accepting integers ``>= minimum``.

    Args:
        minimum: the smallest accepted value.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def bounded_float(minimum: float, *, inclusive: bool = True) -> Callable[[str], float]:
    """An argparse type accepting finite floats ``>= minimum`` (``> minimum`` unless ``inclusive``).

    Args:
        minimum: the bound.
        inclusive: whether ``minimum`` itself is accepted.
    """

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>=' if inclusive else '>'} {minimum}, got {text}")
        return value

    parse.__name__ = f"number {'>=' if inclusive else '>'} {minimum}"
    return parse


positive_int = bounded_int(1)
"""Batch sizes, iteration counts, lengths, ``--top``."""
non_negative_int = bounded_int(0)
"""Seeds, warm-up steps."""
cluster_count = bounded_int(2)
"""K: at least two clusters."""
non_negative_float = bounded_float(0.0)
"""Weights."""
positive_float = bounded_float(0.0, inclusive=False)
"""Temperatures, learning rates, epochs."""
