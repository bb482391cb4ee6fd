"""Harness exactness: the dense all-MiniLM-L6-v2 through the offline suite must reproduce its
published MTEB scores (``shared/anchors/mteb_published_scores.md``) within a tolerance on every task.
A larger gap means the harness differs from mteb's, not that the model does.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

ANCHORS_ENV_VAR = "LENS_EMBED_ANCHORS"
TOLERANCE = 0.3
_MINILM_COLUMN = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class HarnessRow:
    """One task of the exactness check, scores x100."""

    task: str
    published: float
    ours: float

    @property
    def diff(self) -> float:
        return self.ours - self.published

    def passes(self, tolerance: float = TOLERANCE) -> bool:
        return abs(self.diff) <= tolerance


def anchors_path(data_dir: Path, path: str | Path | None = None) -> Path:
    """The published-scores file: explicit, else ``$LENS_EMBED_ANCHORS``, else ``<data>/../anchors``."""
    chosen = Path(path or os.environ.get(ANCHORS_ENV_VAR) or data_dir.parent / "anchors" / "mteb_published_scores.md")
    if not chosen.is_file():
        raise FileNotFoundError(f"Published-scores file not found: {chosen} (set {ANCHORS_ENV_VAR} or --anchors)")
    return chosen


def published_scores(path: Path, column: str = _MINILM_COLUMN) -> dict[str, float]:
    """``{task: score x100}`` from the Markdown table's column of that name ("–" cells are skipped)."""
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


def compare(published: dict[str, float], measured: dict[str, float]) -> list[HarnessRow]:
    """Rows for every task measured that has a published score, in the published table's order."""
    return [HarnessRow(task, published[task], measured[task]) for task in published if task in measured]


def harness_markdown(rows: list[HarnessRow], tolerance: float = TOLERANCE) -> str:
    """The exactness table as Markdown."""
    lines = ["| task | published | ours | diff | within ±%.1f |" % tolerance, "| --- | ---: | ---: | ---: | :---: |"]
    lines += [
        f"| {r.task} | {r.published:.2f} | {r.ours:.2f} | {r.diff:+.2f} | {'yes' if r.passes(tolerance) else 'NO'} |"
        for r in rows
    ]
    return "\n".join(lines)
