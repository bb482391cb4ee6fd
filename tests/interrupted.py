"""Interrupting ``lens-embed`` for real: SIGKILL at a point the command shows on disk, then compare outputs.

A command runs as ``python -m lens_embed.commands`` in a subprocess (this checkout first on PYTHONPATH,
offline, CPU, one thread). The kill comes as soon as a file the command writes appears (a staging
folder's first file, the first shard, the progress bar in its log), never after a sleep, and the
run must really have been killed there (exit by SIGKILL), so each test interrupts what it names.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KILL_POLL_S = 0.002
KILL_DEADLINE_S = 600  # only a guard against a command that never reaches its kill point


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a ``lens-embed`` subprocess: this checkout, offline, CPU, one thread."""
    path = os.pathsep.join(part for part in (str(ROOT), os.environ.get("PYTHONPATH", "")) if part)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "HF_HUB_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
        **extra,
    }


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``lens-embed ARGS`` to the end; its output (it must succeed)."""
    result = subprocess.run(
        [sys.executable, "-m", "lens_embed.commands", *map(str, args)],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=KILL_DEADLINE_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def kill_when(
    args: list[str], ready: Callable[[], bool], cwd: Path, env: dict[str, str] | None = None
) -> None:
    """Start ``lens-embed ARGS`` and SIGKILL it as soon as ``ready()``; fail if it ends before that."""
    log = cwd / f"killed-{time.monotonic_ns()}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "lens_embed.commands", *map(str, args)],
            cwd=cwd,
            env=env or cli_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + KILL_DEADLINE_S
    try:
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"lens-embed {args[0]} did not reach its kill point (exit {process.poll()}):\n"
                    + log.read_text(errors="replace")[-3000:]
                )
            time.sleep(KILL_POLL_S)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
        log.unlink(missing_ok=True)  # keeps the working folder as the command left it
    assert process.returncode == -signal.SIGKILL, f"lens-embed {args[0]} ended by itself before the kill"


def has_file(folder: Path, pattern: str = "*") -> bool:
    """Whether a file named ``pattern`` exists anywhere under a folder whose name matches ``folder`` (a
    glob)."""
    return any(path.is_file() for match in folder.parent.glob(folder.name) for path in match.rglob(pattern))


def log_contains(folder: Path, text: str) -> Callable[[], bool]:
    """A readiness test: the killed command's log in ``folder`` shows ``text`` (e.g. its progress bar)."""
    return lambda: any(text in path.read_text(errors="replace") for path in folder.glob("killed-*.log"))


def contents(folder: Path, exclude: str | None = None) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), those whose path matches ``exclude`` left out."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not (exclude and re.search(exclude, path.relative_to(folder).as_posix()))
    }


def leftovers(folder: Path) -> list[str]:
    """Temporaries of interrupted writes in ``folder``: staging, moved-aside, scratch folders and ``.tmp``
    files."""
    return sorted(
        path.name
        for path in folder.iterdir()
        if re.search(r"\.(staging|old)-|^\.lens-convert-|\.tmp$", path.name)
    )
