"""Which mteb (hub) tasks to run: the paper's English MTEB set by default, names or benchmarks on request."""

from __future__ import annotations

from collections.abc import Sequence

import mteb
from mteb.abstasks import AbsTask

from lens_embed.evaluation.offline import UnknownTaskError

# The 56 English tasks the LENS paper reports: the classic MTEB(eng, v1) benchmark, English subsets.
PAPER_BENCHMARK = "MTEB(eng, v1)"
ENGLISH = ("eng",)


def _benchmark_tasks(name: str) -> list[AbsTask] | None:
    try:
        return list(mteb.get_benchmark(name).tasks)
    except (KeyError, ValueError):
        return None


def _english_task(name: str) -> AbsTask:
    try:
        return mteb.get_task(name, languages=list(ENGLISH), exclusive_language_filter=True)
    except KeyError as error:
        raise UnknownTaskError(f"Unknown task or benchmark {name!r}: {error.args[0] if error.args else error}") from None


def resolve_tasks(names: Sequence[str] | None = None) -> list[AbsTask]:
    """Task objects for names (task or benchmark names, mixed); the paper's 56 tasks when none given."""
    if not names:
        return list(mteb.get_benchmark(PAPER_BENCHMARK).tasks)
    tasks: dict[str, AbsTask] = {}
    for name in names:
        for task in _benchmark_tasks(name) or [_english_task(name)]:
            tasks.setdefault(task.metadata.name, task)
    return list(tasks.values())
