"""Lazy package faces (PEP 562): a package lists its public names and the modules defining them.

Importing the package then costs nothing; torch, sentence-transformers or mteb load only when a
name that needs them is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, modules: dict[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """A module ``__getattr__`` resolving the public names of ``modules`` (defining module -> its public
    names; a module relative to ``package`` if it starts with "."), its ``__dir__`` and ``__all__``.

    Args:
        package: The package's ``__name__``.
        modules: Defining module (``".data"`` relative, or absolute) -> the public names it defines.

    Returns:
        The package's ``__getattr__``, ``__dir__`` and ``__all__``.
    """
    namespace = importlib.import_module(package).__dict__
    exports = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__, sorted(exports)
