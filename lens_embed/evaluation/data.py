"""Where the offline evaluation data lives.

The data is read in place (never copied into the project), so every entry point resolves the
folder the same way: an explicit path, else ``$LENS_EMBED_DATA``, else ``<repo>/../shared/data``.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV_VAR = "LENS_EMBED_DATA"
REPO_ROOT = Path(__file__).resolve().parents[2]
CATEGORIES = ("sts", "classification", "retrieval")


class DataDirError(FileNotFoundError):
    """The offline data folder is missing or does not have the expected layout."""


def default_data_dir() -> Path:
    """``<repo>/../shared/data``: where the shared checkout keeps the offline MTEB data."""
    return REPO_ROOT.parent / "shared" / "data"


def resolve_data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The data folder to use, checked to exist and to hold at least one task category.

    Order: ``path`` (a flag), then ``$LENS_EMBED_DATA``, then :func:`default_data_dir`.
    """
    if path is not None and str(path) != "":
        source, chosen = "the given path", Path(path)
    elif os.environ.get(DATA_ENV_VAR):
        source, chosen = f"${DATA_ENV_VAR}", Path(os.environ[DATA_ENV_VAR])
    else:
        source, chosen = "the default", default_data_dir()
    chosen = chosen.expanduser().resolve()
    if not chosen.is_dir():
        raise DataDirError(
            f"Offline data folder not found: {chosen} (from {source}). Pass DATA=/path/to/data "
            f"(make) or --data (CLI), or set {DATA_ENV_VAR}; the folder must hold "
            f"{', '.join(c + '/' for c in CATEGORIES)} subfolders as described in shared/data/README.md."
        )
    if not any((chosen / category).is_dir() for category in CATEGORIES):
        raise DataDirError(
            f"{chosen} (from {source}) has none of the task folders {', '.join(CATEGORIES)}; "
            "it is not an offline evaluation data folder."
        )
    return chosen
