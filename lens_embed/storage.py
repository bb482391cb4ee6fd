"""Where lens-embed keeps things and how it writes them: the cache, atomic writes, released names,
and the overlap check that keeps an output from damaging an input.

Everything that replaces a file or a folder goes through :func:`atomic_write` or
:func:`staged_directory`: the content is written next to its target and renamed into place, so a
reader (or a crash) never sees half of it. :func:`cached_directory` adds what a shared cache needs:
concurrent producers of one entry wait for each other (a lock file), and a finished entry is reused.

A temporary file or folder is locked (``flock``) by the process writing it, and the kernel drops
that lock when the process dies, however it dies. So the next write to the same target can tell a
live writer's temporaries from the remains of a killed one, and removes only the latter
(:func:`scratch_directory` does the same for a work folder that is never renamed into place).
New folders get the usual mode (0777 minus the umask), like the files. This module imports
nothing heavy, so the command line and the package face can use it freely.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)
CACHE_ENV = "LENS_EMBED_CACHE"
RELEASED_CHECKPOINTS = ("yibinlei/LENS-d4000", "yibinlei/LENS-d8000")


def cache_dir() -> Path:
    """``$LENS_EMBED_CACHE``, else ``~/.cache/lens-embed``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lens-embed")


def is_released_name(name: str | os.PathLike) -> bool:
    """Whether ``name`` is one of the authors' released checkpoints (and not a local folder of that name)."""
    return str(name) in RELEASED_CHECKPOINTS and not Path(name).exists()


def overlaps(path: str | os.PathLike, other: str | os.PathLike) -> bool:
    """Whether ``path`` is ``other`` (symbolic and hard links resolved), lies inside it or holds it.

    An ``other`` that is not on disk (a hub name) overlaps only a path spelled the same way.
    """
    first, second = Path(path).resolve(), Path(other).resolve()
    if first == second or (first.exists() and second.exists() and first.samefile(second)):
        return True
    return Path(other).exists() and (first.is_relative_to(second) or second.is_relative_to(first))


def refuse_overlap(path: str | os.PathLike, name: str, other: str | os.PathLike, other_name: str) -> None:
    """Raise ``ValueError`` if the output ``path`` overlaps ``other``: writing or replacing it would
    damage ``other``.

    ``name`` and ``other_name`` say what they are in the message (``--out``, ``the model``).
    """
    if overlaps(path, other):
        raise ValueError(f"{name} {path} is (or overlaps) {other_name} {other}; choose another path")


# A temporary's random part: uuid hex here, tempfile.mkdtemp's alphabet in folders of older versions.
_RANDOM = r"[A-Za-z0-9_]{8}"
_HELD: set[str] = set()  # staging folders this process holds (absolute paths)


def _is_same(path: Path, descriptor: int) -> bool:
    """Whether ``path`` still names the file open as ``descriptor`` (and was not removed or replaced)."""
    try:
        return os.path.samestat(os.stat(path, follow_symlinks=False), os.fstat(descriptor))
    except FileNotFoundError:
        return False


def _remove_stale(parent: Path, pattern: str, restore: Path | None = None) -> None:
    """Remove the entries of ``parent`` named ``pattern`` (a regular expression) that no live process holds.

    A writer locks its temporary for as long as it writes, so an entry whose lock can be taken was
    left by a process that died. With ``restore``, an entry holding ``old`` (a target moved aside by
    a replacement that never got its new content in place) is first put back at ``restore`` if
    nothing is there. A failure to remove is logged, never raised: it must not stop the new write.
    """
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return
    for name in names:
        if re.fullmatch(pattern, name) is None:
            continue
        path = parent / name
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # gone meanwhile, a link, or not readable by us: not ours to remove
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live process holds it
            os.close(descriptor)
            continue
        try:
            if not _is_same(path, descriptor):
                continue
            if restore is not None and (path / "old").is_dir() and not os.path.lexists(restore):
                (path / "old").rename(restore)
                logger.warning("put %s back: an interrupted replacement had moved it aside", restore)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            logger.info("removed %s, left by an interrupted write", path)
        except OSError as error:
            logger.warning("could not remove %s, left by an interrupted write: %s", path, error)
        finally:
            os.close(descriptor)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Write a file through ``write(stream)`` into a sibling temporary file, fsync, then rename it into place.

    The temporary file is created like any other (mode 0666 minus the umask), so the result has the
    usual permissions; on any error it is removed and an existing target is left untouched. It is
    locked while written, and the temporaries of this target left by killed processes are removed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target.parent, rf"\.{re.escape(target.name)}\.\d+-{_RANDOM}\.tmp")
    while True:
        temporary = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        stream = temporary.open("xb")
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX)
        if _is_same(temporary, stream.fileno()):
            break
        stream.close()  # taken for stale by another process before it was locked: make another
    try:
        with stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
            os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def give_usual_modes(folder: str | os.PathLike) -> None:
    """Give every file under ``folder`` the usual mode (0666 minus the umask).

    safetensors writes its files 0600, which would keep a model's weights (in a shared cache too)
    from every other user. The umask is read from a probe file, never set, so threads are unaffected.
    """
    root = Path(folder)
    probe = root / f".mode-probe-{uuid.uuid4().hex[:8]}"
    descriptor = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        usual = os.fstat(descriptor).st_mode & 0o777
    finally:
        os.close(descriptor)
        probe.unlink()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_mode & 0o777 != usual:
            path.chmod(usual)


@contextmanager
def _held_directory(parent: Path, prefix: str) -> Iterator[Path]:
    """A new folder ``parent/prefixXXXXXXXX`` with the usual mode, locked by this process for the block.

    The lock is what tells :func:`_remove_stale` that the folder is live. ``tempfile.mkdtemp`` is not
    used: its folders get mode 0700, and a model or cache entry renamed from one would keep it.
    """
    while True:
        path = parent / f"{prefix}{uuid.uuid4().hex[:8]}"
        try:
            os.mkdir(path, 0o777)  # the umask applies
            descriptor = os.open(path, os.O_RDONLY)
        except FileExistsError:
            continue
        except FileNotFoundError:  # taken for stale by another process before it was locked
            continue
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        if _is_same(path, descriptor):
            break
        os.close(descriptor)
    _HELD.add(os.path.abspath(path))
    try:
        yield path
    finally:
        _HELD.discard(os.path.abspath(path))
        os.close(descriptor)


@contextmanager
def scratch_directory(parent: str | os.PathLike, prefix: str) -> Iterator[Path]:
    """A work folder ``parent/prefixXXXXXXXX``, removed at the end of the block.

    Folders with that prefix that killed processes left in ``parent`` are removed first; one that
    a live process is using is kept.
    """
    folder = Path(parent)
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder, re.escape(prefix) + _RANDOM)
    with _held_directory(folder, prefix) as path:
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def staged_directory(target: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; on success it becomes ``target`` by one rename.

    With ``replace=True`` an existing ``target`` is moved aside first and deleted only after the new
    folder is in place. Without it, a ``target`` that exists by then raises ``FileExistsError`` (the
    caller decides whether a concurrent writer's result is reusable). On error nothing is left behind;
    what a killed writer left (its staging folder, or a target it had moved aside, which is put back
    if nothing replaced it) is cleaned up by the next write to ``target``. A ``target`` that is
    already this process's staging folder (a cache entry being produced) is written in place.
    """
    destination = Path(target)
    if os.path.abspath(destination) in _HELD:
        yield destination
        return
    parent = destination.parent
    parent.mkdir(parents=True, exist_ok=True)
    name = re.escape(destination.name)
    _remove_stale(parent, rf"\.{name}\.old-{_RANDOM}", restore=destination)
    _remove_stale(parent, rf"\.{name}\.staging-{_RANDOM}")
    with ExitStack() as stack:
        staging = stack.enter_context(_held_directory(parent, f".{destination.name}.staging-"))
        holder = None
        try:
            yield staging
            if replace and destination.exists():
                holder = stack.enter_context(_held_directory(parent, f".{destination.name}.old-"))
                destination.rename(holder / "old")
            try:
                staging.rename(destination)
            except OSError as error:  # a non-empty directory (or a file) already sits at the target
                if holder is not None:
                    (holder / "old").rename(destination)
                raise FileExistsError(f"{destination} appeared while it was being written") from error
        finally:
            for leftover in (staging, holder):
                if leftover is not None and leftover.exists():
                    shutil.rmtree(leftover)


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
    creates it), so the next caller starts over, removing the killed producer's staging folder.
    ``produce`` may itself stage its output (``build``, ``convert``): the staging folder it is
    given is then written in place (see :func:`staged_directory`).
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


def check_writable_folder(folder: str | os.PathLike, name: str) -> None:
    """Refuse, before any work, a folder that could not be written: one under a regular file, or whose
    nearest existing folder this process cannot write in (``name`` says what it is: ``--out``, ...)."""
    wanted = Path(folder)
    existing = next(p for p in (wanted, *wanted.parents) if os.path.lexists(p) or p == Path(p.anchor))
    if not existing.is_dir():
        raise NotADirectoryError(f"{name} {wanted}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{name} {wanted}: cannot write in {existing}")


def check_output_file(path: str | os.PathLike, name: str, *, overwrite: bool) -> None:
    """Refuse, before any work, an output file that could not be written where it is asked: a folder, an
    existing file without ``overwrite``, a path under a regular file or in a folder this process cannot
    write in."""
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{name} {target} is a folder; give the path of a file")
    if os.path.lexists(target) and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    check_writable_folder(target.parent, name)
