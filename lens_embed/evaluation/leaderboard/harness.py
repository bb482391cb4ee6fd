"""Harness exactness: the dense all-MiniLM-L6-v2 through the offline suite must reproduce its
published MTEB scores (``shared/anchors/mteb_published_scores.md``) within a tolerance on every task.
A larger gap means the harness differs from mteb's, not that the model does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mteb.abstasks import AbsTask

ANCHORS_ENV_VAR = "LENS_EMBED_ANCHORS"
TOLERANCE = 0.3
_MINILM_COLUMN = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class HarnessRow:
    """One task of the exactness check, scores x100."""

    task: str
    published: float
    ours: float
    data_differences: tuple[str, ...] = field(default=())

    @property
    def diff(self) -> float:
        return self.ours - self.published

    def passes(self, tolerance: float = TOLERANCE) -> bool:
        return abs(self.diff) <= tolerance

    @property
    def explained(self) -> bool:
        """The local copy differs from MTEB's in something that changes the score (not just formatting)."""
        return any(_is_score_relevant(d.split(" ")[0]) for d in self.data_differences)

    def status(self, tolerance: float = TOLERANCE) -> str:
        if self.passes(tolerance):
            return "yes"
        return "NO (local data differs from MTEB's)" if self.explained else "NO"


def anchors_path(data_dir: Path, path: str | Path | None = None) -> Path:
    """The published-scores file: explicit, else ``$LENS_EMBED_ANCHORS``, else ``<data>/../anchors``."""
    chosen = Path(
        path or os.environ.get(ANCHORS_ENV_VAR) or data_dir.parent / "anchors" / "mteb_published_scores.md"
    )
    if not chosen.is_file():
        raise FileNotFoundError(
            f"Published-scores file not found: {chosen} (set {ANCHORS_ENV_VAR} or --anchors)"
        )
    return chosen


def table_scores(path: Path, column: str = _MINILM_COLUMN) -> dict[str, float]:
    """``{task: score x100}`` from a column of the published-scores Markdown table (``anchors_path``;
    "–" cells are skipped): the MiniLM baseline's by default. (The LENS scores of a released model are
    :func:`lens_embed.evaluation.leaderboard.compare.published_scores`.)"""
    header: list[str] | None = None
    scores: dict[str, float] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|") or all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        if header is None:
            header = cells
            if column not in header:
                raise ValueError(f"{path}: no column {column!r} in table header {header}")
            continue
        value = cells[header.index(column)]
        if re.fullmatch(r"-?\d+(\.\d+)?", value):
            scores[cells[0]] = float(value)
    if not scores:
        raise ValueError(f"{path}: no scores found in column {column!r}")
    return scores


_SCORE_RELEVANT = ("num_samples", "label", "score", "num_documents", "num_queries", "relevant_docs")


def _is_score_relevant(key: str) -> bool:
    """Gold scores, labels and counts change a score; character totals and unique-text counts can differ
    by whitespace alone (and mteb's stored unique-pair counts predate its current hashing)."""
    return any(part in key for part in _SCORE_RELEVANT)


def _numeric_leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    leaves: dict[str, float] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            leaves.update(_numeric_leaves(value, path + "."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            leaves[path] = float(value)
    return leaves


def data_differences(task: AbsTask, split: str = "test") -> tuple[str, ...]:
    """Where the local copy differs from the copy MTEB scored, by mteb's own descriptive statistics
    (sample and unique-text counts, gold-score and label statistics, character totals)."""
    reference = (task.metadata.descriptive_stats or {}).get(split)
    if not reference:
        return ()
    # Not ``calculate_descriptive_statistics``: that one also overwrites the stats file inside mteb.
    task.load_data()
    local = task._calculate_descriptive_statistics_from_split(split)
    task.unload_data()
    ours, theirs = _numeric_leaves(local), _numeric_leaves(reference)
    return tuple(
        f"{key} {ours[key]:g} (MTEB: {theirs[key]:g})"
        for key in sorted(set(ours) & set(theirs))
        if abs(ours[key] - theirs[key]) > 1e-9 * max(1.0, abs(theirs[key]))
    )


def compare(
    published: dict[str, float],
    measured: dict[str, float],
    differences: Mapping[str, tuple[str, ...]] | None = None,
) -> list[HarnessRow]:
    """Rows for every task measured that has a published score, in the published table's order."""
    differences = differences or {}
    return [
        HarnessRow(task, published[task], measured[task], differences.get(task, ()))
        for task in published
        if task in measured
    ]


def harness_markdown(rows: list[HarnessRow], tolerance: float = TOLERANCE) -> str:
    """The exactness table as Markdown."""
    lines = [
        f"| task | published | ours | diff | within ±{tolerance:.1f} | local data vs MTEB's copy |",
        "| --- | ---: | ---: | ---: | :---: | --- |",
    ]
    lines += [
        f"| {r.task} | {r.published:.3f} | {r.ours:.3f} | {r.diff:+.3f} "
        f"| {r.status(tolerance)} | {_data_note(r)} |"
        for r in rows
    ]
    return "\n".join(lines)


def _data_note(row: HarnessRow) -> str:
    """Score-relevant differences in full; formatting-only ones (characters, unique counts) counted."""
    relevant = [d for d in row.data_differences if _is_score_relevant(d.split(" ")[0])]
    formatting = len(row.data_differences) - len(relevant)
    notes = relevant + ([f"{formatting} character/unique-count statistic(s) differ"] if formatting else [])
    return "; ".join(notes) or "same statistics"
