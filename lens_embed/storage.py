"""Where lens-embed keeps things and how it writes them: the cache, atomic writes, released names.

Everything that replaces a file or a folder goes through :func:`atomic_write` or
:func:`staged_directory`: the content is written next to its target and renamed into place, so a
reader (or a crash) never sees half of it. :func:`cached_directory` adds what a shared cache needs:
concurrent producers of one entry wait for each other (a lock file), and a finished entry is reused.
This module imports nothing heavy, so the command line and the package face can use it freely.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

CACHE_ENV = "LENS_EMBED_CACHE"
RELEASED_CHECKPOINTS = ("yibinlei/LENS-d4000", "yibinlei/LENS-d8000")


def cache_dir() -> Path:
    """``$LENS_EMBED_CACHE``, else ``~/.cache/lens-embed``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lens-embed")


def is_released_name(name: str | os.PathLike) -> bool:
    """Whether ``name`` is one of the authors' released checkpoints (and not a local folder of that name)."""
    return str(name) in RELEASED_CHECKPOINTS and not Path(name).exists()


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Write a file through ``write(stream)`` into a sibling temporary file, fsync, then rename it into place.

    The temporary file is created like any other (mode 0666 minus the umask), so the result has the
    usual permissions; on any error it is removed and an existing target is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with temporary.open("xb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


@contextmanager
def staged_directory(target: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; on success it becomes ``target`` by one rename.

    With ``replace=True`` an existing ``target`` is moved aside first and deleted only after the new
    folder is in place. Without it, a ``target`` that exists by then raises ``FileExistsError`` (the
    caller decides whether a concurrent writer's result is reusable). On error nothing is left behind.
    """
    destination = Path(target)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.staging-"))
    try:
        yield staging
        old = None
        if replace and destination.exists():
            old = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.old-")) / "old"
            destination.rename(old)
        try:
            staging.rename(destination)
        except OSError as error:  # a non-empty directory (or a file) already sits at the target
            if old is not None:
                old.rename(destination)
            raise FileExistsError(f"{destination} appeared while it was being written") from error
        if old is not None:
            shutil.rmtree(old.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock held for the block (released by the kernel if the process dies)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_directory(target: str | os.PathLike, produce: Callable[[Path], object]) -> Path:
    """``target``, produced once by ``produce(staging_folder)`` if it does not exist yet.

    Safe for concurrent callers: one produces while the others wait on ``target``'s lock file and
    then reuse its result; an interrupted producer leaves no ``target`` behind (only the rename
    creates it), so the next caller starts over.
    """
    destination = Path(target)
    if destination.is_dir():
        return destination
    with _locked(destination.with_name(f".{destination.name}.lock")):
        if destination.is_dir():
            return destination
        with staged_directory(destination) as staging:
            produce(staging)
    return destination
