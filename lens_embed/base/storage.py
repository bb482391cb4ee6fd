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
New folders get the usual mode (0777 minus the umask), like the files. :func:`check_writable` is the
one check every verb makes of its outputs before any work, and a cache entry may carry a manifest
of its files (:func:`write_manifest`, :func:`manifest_problem`) that is checked whenever it is used.
This module imports nothing heavy, so the command line and the package face can use it freely.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

from lens_embed.base.defaults import EXPORT_FILES

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


def check_writable(path: str | os.PathLike, what: str, *, folder: bool | None) -> None:
    """Refuse, before any work, an output that cannot be written: a folder where a file is wanted (or
    the reverse), a path under a regular file, or a place this process may not write in (read-only file
    system, no permission).

    Nothing is created: the nearest existing folder is probed with an anonymous temporary file.

    Args:
        path: the output (it need not exist yet; missing folders above it are created later).
        what: how the message names it (``--out``, ``the cache entry``).
        folder: whether the output is a folder (else a file, written beside itself and renamed); None
            for either (the verb's inputs decide), which skips the check of what is already there.

    Raises:
        NotADirectoryError, IsADirectoryError, PermissionError: one line naming ``what`` and ``path``.
    """
    target = Path(path)
    if folder is True and target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{what} {target} is a file, not a folder")
    if folder is False and target.is_dir():
        raise IsADirectoryError(f"{what} {target} is a folder; name a file")
    place = target.absolute() if folder is not False and target.is_dir() else target.absolute().parent
    while not place.exists() and place != place.parent:
        place = place.parent
    if not place.is_dir():
        raise NotADirectoryError(f"{what} {target} lies under {place}, which is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=place):
            pass
    except OSError as error:
        raise PermissionError(f"{what} {target}: cannot write in {place} ({error.strerror})") from None


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


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``), so neither is ever absent.

    Returns False, having changed nothing, where the C library, the kernel or the file system cannot.
    """
    function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if function is None:
        return False
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if function(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOENT):
        return False
    raise OSError(code, os.strerror(code), str(second))


def recover_replaced(target: str | os.PathLike) -> None:
    """Put back ``target`` if a killed replacement had moved it aside and never put its new content in
    place (only where the file system cannot swap two folders in one step), so a reader finds it."""
    destination = Path(target)
    if not os.path.lexists(destination):
        _remove_stale(
            destination.parent, rf"\.{re.escape(destination.name)}\.old-{_RANDOM}", restore=destination
        )


@contextmanager
def staged_directory(target: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; on success it becomes ``target`` by one rename.

    With ``replace=True`` an existing ``target`` is swapped with the staging folder in one step (and
    then deleted), so ``target`` is never absent; where the file system cannot swap, it is moved aside
    first and deleted only after the new folder is in place. Without it, a ``target`` that exists by
    then raises ``FileExistsError`` (the caller decides whether a concurrent writer's result is
    reusable). On error nothing is left behind; what a killed writer left (its staging folder, or a
    target it had moved aside, which is put back if nothing replaced it) is cleaned up by the next
    write to ``target`` (:func:`recover_replaced` puts it back for a reader). A ``target`` that is
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
            if replace and destination.exists() and _exchange(staging, destination):
                return  # staging now holds the previous target, removed below (or as stale, if killed)
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
                    shutil.rmtree(leftover, ignore_errors=leftover is staging)


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


MANIFEST_FILE = "lens-embed-cache.json"
"""A cache entry's record of its own files (sizes and SHA-256), written last into the entry."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


EXPORT_FOLDERS = frozenset(Path(name).parts[0] for name in EXPORT_FILES.values())
"""The folders of a model's exports (``onnx``, ``openvino``)."""


def _entry_files(folder: Path) -> dict[str, Path]:
    """The regular files under ``folder`` by relative POSIX path, the manifest left out, and the exports
    for the CPU backends too (``onnx/``, ``openvino/``): they are added to an entry later, each folder with
    its own record of hashes that loading checks (``lens_embed.models.exported``)."""
    return {
        path.relative_to(folder).as_posix(): path
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and path.name != MANIFEST_FILE
        and path.relative_to(folder).parts[0] not in EXPORT_FOLDERS
    }


def write_manifest(folder: str | os.PathLike, checked_on_use: Sequence[str]) -> None:
    """Record every file of ``folder`` (size and SHA-256) in its :data:`MANIFEST_FILE`, written last.

    Args:
        folder: the entry (complete).
        checked_on_use: relative paths (a path ending in ``/``: every file under it) whose hash
            :func:`manifest_problem` checks on every use; every size is checked always.
    """
    root = Path(folder)
    files = {
        name: {"size": path.stat().st_size, "sha256": _sha256(path)}
        for name, path in _entry_files(root).items()
    }
    on_use = sorted(
        name
        for name in files
        if any(name == p or (p.endswith("/") and name.startswith(p)) for p in checked_on_use)
    )
    record = {"files": files, "checked_on_use": on_use}
    atomic_write(
        root / MANIFEST_FILE, lambda stream: stream.write(json.dumps(record, indent=1).encode("utf-8"))
    )


def manifest_problem(folder: str | os.PathLike, *, full: bool = False) -> str | None:
    """What is wrong with an entry by its manifest, or None if it is whole.

    Every use checks the files present and their sizes, and hashes the files recorded as
    ``checked_on_use`` (small ones: a model's head); ``full=True`` hashes every file.
    """
    root = Path(folder)
    try:
        record = json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
        files = {name: (int(entry["size"]), str(entry["sha256"])) for name, entry in record["files"].items()}
        on_use = set(record["checked_on_use"])
    except FileNotFoundError:
        return f"it has no {MANIFEST_FILE} (made by an older lens-embed, or damaged)"
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        return f"its {MANIFEST_FILE} is unreadable ({type(error).__name__}: {error})"
    found = _entry_files(root)
    if found.keys() != files.keys():
        missing, extra = sorted(files.keys() - found.keys()), sorted(found.keys() - files.keys())
        return f"files missing {missing}, unexpected {extra}"
    for name, (size, sha256) in files.items():
        actual = found[name].stat().st_size
        if actual != size:
            return f"{name} has {actual} bytes, {size} were written"
        if (full or name in on_use) and _sha256(found[name]) != sha256:
            return f"{name} changed since it was written (SHA-256)"
    return None


def cached_directory(
    target: str | os.PathLike,
    produce: Callable[[Path], object],
    problem: Callable[[Path], str | None] | None = None,
) -> Path:
    """``target``, produced once by ``produce(staging_folder)`` if it does not exist yet.

    Safe for concurrent callers: one produces while the others wait on ``target``'s lock file and
    then reuse its result; an interrupted producer leaves no ``target`` behind (only the rename
    creates it), so the next caller starts over, removing the killed producer's staging folder.
    ``produce`` may itself stage its output (``build``, ``convert``): the staging folder it is
    given is then written in place (see :func:`staged_directory`). A regular file at ``target`` is
    refused before anything is produced. With ``problem``, an existing entry for which
    ``problem(target)`` names a problem is produced again and replaced, with one warning saying why.
    """
    destination = Path(target)
    if destination.is_dir() and (problem is None or problem(destination) is None):
        return destination  # a read-only cache serves its entries
    check_writable(destination, "the cache entry", folder=True)
    with _locked(destination.with_name(f".{destination.name}.lock")):
        found = problem(destination) if problem is not None and destination.is_dir() else None
        if destination.is_dir() and found is None:
            return destination
        if found is not None:
            logger.warning("rebuilding %s: %s", destination, found)
        with staged_directory(destination, replace=found is not None) as staging:
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
