"""Which mteb (hub) tasks to run, on the splits and subsets the leaderboard scores.

The paper's 56 English tasks are the classic ``MTEB(eng, v1)`` benchmark; its task objects carry the
leaderboard's selection (split ``test``, MSMARCO ``dev``; English subsets ``en``, STS17 ``en-en``,
STS22 ``en``), so a task named on its own is taken from the benchmark when the benchmark holds it.
Other names get mteb's task restricted to English, with mteb's own splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from statistics import mean
from typing import Any

import mteb
from mteb.abstasks import AbsTask

from lens_embed.evaluation.offline import UnknownTaskError

PAPER_BENCHMARK = "MTEB(eng, v1)"
ENGLISH = ("eng",)


def _benchmark_tasks(name: str) -> list[AbsTask] | None:
    try:
        return list(mteb.get_benchmark(name).tasks)
    except (KeyError, ValueError):
        return None


@cache
def paper_tasks() -> dict[str, AbsTask]:
    """The benchmark's tasks by name, plus CQADupstack's 12 subtasks as the benchmark runs them."""
    tasks: dict[str, AbsTask] = {}
    for task in mteb.get_benchmark(PAPER_BENCHMARK).tasks:
        tasks[task.metadata.name] = task
        for sub in getattr(task.metadata, "tasks", None) or []:
            tasks[sub.metadata.name] = sub
    return tasks


def _named_task(name: str) -> AbsTask:
    if name in paper_tasks():
        return paper_tasks()[name]
    try:
        return mteb.get_task(name, languages=list(ENGLISH), exclusive_language_filter=True)
    except KeyError as error:
        raise UnknownTaskError(
            f"Unknown task or benchmark {name!r}: {error.args[0] if error.args else error}"
        ) from None


def resolve_tasks(names: Sequence[str] | None = None) -> list[AbsTask]:
    """Task objects for names (task or benchmark names, mixed); the paper's 56 tasks when none given."""
    if not names:
        return list(mteb.get_benchmark(PAPER_BENCHMARK).tasks)
    tasks: dict[str, AbsTask] = {}
    for name in names:
        for task in _benchmark_tasks(name) or [_named_task(name)]:
            tasks.setdefault(task.metadata.name, task)
    return list(tasks.values())


def leaderboard_score(task: AbsTask, task_result: Any) -> float:
    """Main score (0-1) over the task's own splits and subsets only, averaged as the leaderboard does.

    A result file may hold more (an earlier run over every split and subset): those are ignored.
    """
    splits = set(task.eval_splits)
    subsets = set(task.hf_subsets)
    values = [
        float(entry["main_score"])
        for split, entries in task_result.scores.items()
        if split in splits
        for entry in entries
        if entry.get("hf_subset") in subsets
    ]
    if not values:
        raise ValueError(
            f"{task.metadata.name}: the result holds no score for split(s) {sorted(splits)} "
            f"and subset(s) {sorted(subsets)}"
        )
    return mean(values)


@cache
def aggregate_parts() -> dict[str, tuple[str, str, frozenset[str]]]:
    """``{aggregate task: (type, main score, subtask names)}`` for the paper's aggregate tasks
    (CQADupstack)."""
    return {
        name: (
            task.metadata.type,
            task.metadata.main_score,
            frozenset(t.metadata.name for t in task.metadata.tasks),
        )
        for name, task in paper_tasks().items()
        if getattr(task.metadata, "tasks", None)
    }
