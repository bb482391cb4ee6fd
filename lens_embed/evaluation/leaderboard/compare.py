"""``lens-embed evaluate compare``: our MTEB results beside the published LENS scores, task by task.

The published scores (``reference/lens_published_mteb.json``, provenance in ``reference/PROVENANCE.md``)
are the leaderboard's: split ``test`` (MSMARCO ``dev``), English subsets, main score, CQADupstack as
the mean of its 12 subtasks. Ours are read from an mteb results folder and selected the same way
(:func:`lens_embed.evaluation.tasks.leaderboard_score`); averages are taken over the tasks both have.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from statistics import mean

from mteb.results import TaskResult

from lens_embed.base.defaults import COMPARE_REFERENCE, COMPARE_TOLERANCE
from lens_embed.evaluation.instructions import REFERENCE_DIR
from lens_embed.evaluation.reports import aggregate_subtasks
from lens_embed.evaluation.results import is_task_result
from lens_embed.evaluation.runner import Score
from lens_embed.evaluation.tasks import leaderboard_score, paper_tasks

PUBLISHED = REFERENCE_DIR / "lens_published_mteb.json"


@dataclass(frozen=True)
class Row:
    """One task: our score and the published one (x100)."""

    task: str
    task_type: str
    ours: float | None
    published: float | None

    @property
    def diff(self) -> float | None:
        return None if self.ours is None or self.published is None else self.ours - self.published

    def flagged(self, tolerance: float) -> bool:
        return self.diff is not None and abs(self.diff) > tolerance


@cache
def published_models() -> dict[str, dict]:
    return json.loads(PUBLISHED.read_text(encoding="utf-8"))["models"]


def published_scores(reference: str = COMPARE_REFERENCE) -> dict[str, tuple[str, float]]:
    """``{task: (type, score x100)}`` of a released LENS model, as published."""
    models = published_models()
    if reference not in models:
        raise ValueError(f"no published scores for {reference!r}; known: {', '.join(sorted(models))}")
    return {
        task: (entry["type"], 100 * entry["main_score"]) for task, entry in models[reference]["tasks"].items()
    }


def result_files(folder: str | Path) -> list[Path]:
    """The task result files of ONE model revision under ``folder`` (an mteb output folder or a revision
    folder)."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder not found: {root}")
    files = [
        p
        for p in sorted(root.rglob("*.json"))
        if is_task_result(p) and "experiments" not in p.relative_to(root).parts
    ]
    parents = sorted({p.parent for p in files})
    if not files:
        raise ValueError(f"no mteb result files (<Task>.json) under {root}")
    if len(parents) > 1:
        listed = "\n  ".join(str(p) for p in parents)
        raise ValueError(f"{root} holds results of several models or revisions; pass one of:\n  {listed}")
    return files


def our_scores(folder: str | Path) -> list[Score]:
    """Leaderboard-selected main scores (x100) of the paper's tasks found in a results folder."""
    tasks = paper_tasks()
    scores = []
    for path in result_files(folder):
        if path.stem not in tasks:
            continue
        try:
            result = TaskResult.from_disk(path)
        except Exception as error:  # pydantic / json raise several types for a damaged file
            raise ValueError(f"{path}: not an mteb task result ({error})") from error
        task = tasks[path.stem]
        value = 100 * leaderboard_score(task, result)
        scores.append(Score("ours", task.metadata.name, task.metadata.type, task.metadata.main_score, value))
    return scores


def compare_rows(ours: list[Score], reference: str = COMPARE_REFERENCE) -> list[Row]:
    """One row per published task (in the reference's order), then any task of ours it lacks."""
    mine = {s.task: s for s in aggregate_subtasks(ours)}
    published = published_scores(reference)
    rows = [
        Row(task, kind, mine[task].value if task in mine else None, value)
        for task, (kind, value) in published.items()
    ]
    rows += [Row(s.task, s.task_type, s.value, None) for task, s in mine.items() if task not in published]
    return rows


def _cell(value: float | None, signed: bool = False) -> str:
    return "–" if value is None else (f"{value:+.2f}" if signed else f"{value:.2f}")


def _averages(rows: list[Row]) -> tuple[float, float, int] | None:
    both = [r for r in rows if r.diff is not None]
    if not both:
        return None
    return mean(r.ours for r in both), mean(r.published for r in both), len(both)


def compare_markdown(rows: list[Row], reference: str, tolerance: float = COMPARE_TOLERANCE) -> str:
    """Per-task table, per-type and overall averages over the tasks both sides have, flagged tasks."""
    lines = [
        f"## Ours vs published {reference} (MTEB, main score x100)",
        "",
        "| task | type | ours | published | diff | |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        flag = f"**> {tolerance}**" if r.flagged(tolerance) else ""
        lines.append(
            f"| {r.task} | {r.task_type} | {_cell(r.ours)} | {_cell(r.published)} "
            f"| {_cell(r.diff, True)} | {flag} |"
        )
    lines += ["", "| task type | tasks | ours | published | diff |", "| --- | ---: | ---: | ---: | ---: |"]
    for kind in dict.fromkeys(r.task_type for r in rows):
        averages = _averages([r for r in rows if r.task_type == kind])
        if averages:
            ours, theirs, n = averages
            lines.append(f"| {kind} | {n} | {ours:.2f} | {theirs:.2f} | {ours - theirs:+.2f} |")
    overall = _averages(rows)
    if overall:
        ours, theirs, n = overall
        lines.append(f"| **average** | {n} | {ours:.2f} | {theirs:.2f} | {ours - theirs:+.2f} |")
    published = [r.published for r in rows if r.published is not None]
    lines += ["", f"Published average over all {len(published)} tasks: {mean(published):.2f}."]
    missing = [r.task for r in rows if r.ours is None]
    if missing:
        lines.append(f"Not in the results ({len(missing)}): {', '.join(missing)}.")
    flagged = [r.task for r in rows if r.flagged(tolerance)]
    lines.append(
        f"Beyond ±{tolerance}: {', '.join(flagged)}."
        if flagged
        else f"Every compared task is within ±{tolerance}."
    )
    return "\n".join(lines) + "\n"


def write_comparison(
    results: str | Path,
    reference: str = COMPARE_REFERENCE,
    tolerance: float = COMPARE_TOLERANCE,
    output: str | Path | None = None,
) -> tuple[str, Path]:
    """Compare a results folder with the published scores; print nothing, return (Markdown, saved path).

    Args:
        results: an mteb output folder holding one model revision, or that revision folder.
        reference: the released model whose published scores to compare with.
        tolerance: |ours - published| (x100) beyond which a task is flagged.
        output: where to save the Markdown (default: ``<results>/compare_<reference>.md``).
    """
    rows = compare_rows(our_scores(results), reference)
    if all(r.ours is None for r in rows):
        raise ValueError(f"{results} holds no result of the paper's MTEB(eng, v1) tasks")
    markdown = compare_markdown(rows, reference, tolerance)
    path = Path(output) if output else Path(results) / f"compare_{reference.replace('/', '__')}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown, encoding="utf-8")
    return markdown, path
