"""Lazy package faces (PEP 562): a package lists its public names and the modules defining them.

Importing the package then costs nothing; torch, sentence-transformers or mteb load only when a
name that needs them is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` resolving ``exports`` (public name -> module, relative to ``package`` if
    dotted), and its ``__dir__``.

    Args:
        package: The package's ``__name__``.
        exports: Public name -> defining module (``".data"`` relative, or absolute).

    Returns:
        The functions to assign to the package's ``__getattr__`` and ``__dir__``.
    """
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
