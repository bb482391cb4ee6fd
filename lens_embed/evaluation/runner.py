"""Run several models over a task list into one mteb results folder and one summary.

Results go through mteb's own ``ResultCache``: ``<output>/results/<org__model>/<revision>/<Task>.json``
plus ``model_meta.json`` -- the layout ``mteb run --output-folder`` writes and ``mteb submit`` /
the leaderboard's results repository take. Finished tasks are reused, so a rerun resumes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mteb
from mteb.abstasks import AbsTask
from mteb.cache import ResultCache

logger = logging.getLogger(__name__)


@dataclass
class ModelRun:
    """A model to evaluate: a display label, a lazy factory, and the task types it supports."""

    label: str
    factory: Callable[[], Any]
    task_types: frozenset[str] | None = None
    _model: Any = field(default=None, repr=False)

    def supports(self, task: AbsTask) -> bool:
        return self.task_types is None or task.metadata.type in self.task_types

    @property
    def model(self) -> Any:
        """Load on first use (and once), so a run that has no task to do never loads a model."""
        if self._model is None:
            self._model = self.factory()
        return self._model


@dataclass(frozen=True)
class Score:
    """One model's main score (x100) on one task."""

    model: str
    task: str
    task_type: str
    main_score: str
    value: float


def result_cache(output: str | Path) -> ResultCache:
    """mteb's result cache rooted at the OUTPUT folder (created if missing)."""
    root = Path(output).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return ResultCache(root)


def evaluate_runs(
    runs: Sequence[ModelRun],
    tasks: Iterable[AbsTask],
    output: str | Path,
    *,
    batch_size: int = 32,
    overwrite: bool = False,
) -> list[Score]:
    """Evaluate every run on the tasks it supports; return the main scores of all of them."""
    cache = result_cache(output)
    tasks = list(tasks)
    scores: list[Score] = []
    for run in runs:
        selected = [task for task in tasks if run.supports(task)]
        if not selected:
            continue
        logger.info("Evaluating %s on %d task(s)", run.label, len(selected))
        result = mteb.evaluate(
            run.model,
            selected,
            cache=cache,
            overwrite_strategy="always" if overwrite else "only-missing",
            encode_kwargs={"batch_size": batch_size},
        )
        by_name = {task.metadata.name: task for task in selected}
        for task_result in result.task_results:
            task = by_name[task_result.task_name]
            scores.append(
                Score(
                    model=run.label,
                    task=task.metadata.name,
                    task_type=task.metadata.type,
                    main_score=task.metadata.main_score,
                    value=100 * float(task_result.get_score()),
                )
            )
    return scores
