"""Putting a trained model in place: its folder appears whole, in one rename, keeping the run's entries.

A training run's folder is also its model's folder (``TRAINED`` holds the merged model beside
``checkpoints/``, ``mined/`` and ``training_config.json``), so the model cannot be staged beside an
empty target as ``build`` stages its output. Instead the new folder is built beside the run folder
(:func:`lens_embed.base.storage.staged_directory`): the model first, given the usual file mode, then the
run's other entries hard-linked into it (no data is copied, and until the rename the run folder is
untouched), and it replaces the run folder in one rename. A reader sees the run without the model,
or the run with the whole model; a killed publication leaves the run folder as it was (the next one
removes its staging folder). Imports nothing heavy.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Collection
from pathlib import Path

from lens_embed.base.storage import give_usual_modes, staged_directory


def _link_or_copy(source: str, destination: str) -> None:
    """Hard-link a file (no data is copied); copy it where the file system has no hard links."""
    try:
        os.link(source, destination, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, destination, follow_symlinks=False)


def link_tree(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """``destination`` holding what ``source`` (a file, a link or a folder) holds, its files hard-linked."""
    source, destination = Path(source), Path(destination)
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, destination, symlinks=True, copy_function=_link_or_copy, dirs_exist_ok=True)
    else:
        _link_or_copy(str(source), str(destination))


def publish_folder(
    folder: str | os.PathLike, write: Callable[[Path], object], consumed: Collection[str] = ()
) -> Path:
    """Make ``folder`` hold what ``write(staging)`` writes, plus its own other entries, in one rename.

    ``write`` fills an empty staging folder beside ``folder`` (a model: every file then gets the usual
    mode, 0666 minus the umask, where safetensors writes 0600); each entry of an existing ``folder``
    that ``write`` did not write, other than those named in ``consumed`` (the trainer's final save,
    now in the model), is hard-linked into it; the staging folder then replaces ``folder``. A symbolic
    link ``folder`` keeps pointing at the result. On error, or if killed, ``folder`` is as it was.

    Returns:
        The folder's resolved path.
    """
    target = Path(folder).resolve()
    with staged_directory(target, replace=True) as staging:
        write(staging)
        give_usual_modes(staging)
        if target.is_dir():
            for entry in sorted(target.iterdir()):
                if entry.name not in consumed and not os.path.lexists(staging / entry.name):
                    link_tree(entry, staging / entry.name)
    return target
