"""The summary of a run: per task, per task type and average, as Markdown and as a bar chart.

Averages follow the leaderboard: an aggregate task counts once (CQADupstackRetrieval = the mean of its
12 subtasks, when they were run one by one), the overall average is the mean over tasks, and each task
type's average the mean over its tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from statistics import mean

from lens_embed.base.optional import require
from lens_embed.evaluation.runner import Score
from lens_embed.evaluation.tasks import aggregate_parts


def aggregate_subtasks(scores: Sequence[Score]) -> list[Score]:
    """Replace a model's complete set of subtasks of an aggregate task (CQADupstack's 12) by their mean."""
    result = list(scores)
    for model in _models(scores):
        for parent, (task_type, main_score, parts) in aggregate_parts().items():
            mine = {s.task: s for s in result if s.model == model and s.task in parts}
            if len(mine) == len(parts) and not any(s.model == model and s.task == parent for s in result):
                first = result.index(next(iter(mine.values())))
                merged = Score(model, parent, task_type, main_score, mean(s.value for s in mine.values()))
                result = [s for s in result if s not in mine.values()]
                result.insert(min(first, len(result)), merged)
    return result


def _models(scores: Sequence[Score]) -> list[str]:
    return list(dict.fromkeys(s.model for s in scores))


def _tasks(scores: Sequence[Score]) -> list[tuple[str, str, str]]:
    """(task, type, main score) in first-seen order."""
    return list(dict.fromkeys((s.task, s.task_type, s.main_score) for s in scores))


def score_table(scores: Sequence[Score]) -> dict[str, dict[str, float]]:
    """``{task: {model: score}}``."""
    table: dict[str, dict[str, float]] = {}
    for s in scores:
        table.setdefault(s.task, {})[s.model] = s.value
    return table


def category_averages(scores: Sequence[Score]) -> dict[str, dict[str, float]]:
    """``{task type: {model: mean}}`` over the tasks of that type each model ran."""
    grouped: dict[str, dict[str, list[float]]] = {}
    for s in scores:
        grouped.setdefault(s.task_type, {}).setdefault(s.model, []).append(s.value)
    return {kind: {m: mean(v) for m, v in per_model.items()} for kind, per_model in grouped.items()}


def overall_averages(scores: Sequence[Score]) -> dict[str, tuple[float, int]]:
    """``{model: (mean over all its tasks, number of tasks)}``: models that skip task types (BM25) say so."""
    values: dict[str, list[float]] = {}
    for s in scores:
        values.setdefault(s.model, []).append(s.value)
    return {m: (mean(v), len(v)) for m, v in values.items()}


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def summary_markdown(scores: Sequence[Score], title: str = "Evaluation summary") -> str:
    """Per task, per category and average tables (main score x100), one column per model."""
    scores = aggregate_subtasks(scores)
    models = _models(scores)
    table = score_table(scores)
    header = "| " + " | ".join(models) + " |"
    rule = " ---: |" * len(models)
    lines = [f"## {title}", "", "| task | type | main score " + header, "| --- | --- | --- |" + rule]
    for task, kind, metric in _tasks(scores):
        lines.append(
            f"| {task} | {kind} | {metric} | " + " | ".join(_cell(table[task].get(m)) for m in models) + " |"
        )
    lines += ["", "| task type " + header, "| --- |" + rule]
    for kind, per_model in category_averages(scores).items():
        lines.append(f"| {kind} | " + " | ".join(_cell(per_model.get(m)) for m in models) + " |")
    overall = overall_averages(scores)
    lines.append(
        "| **average** | " + " | ".join(f"{overall[m][0]:.2f} ({overall[m][1]} tasks)" for m in models) + " |"
    )
    return "\n".join(lines) + "\n"


def bar_chart(scores: Sequence[Score], path: str | Path, title: str = "Main score per task") -> Path:
    """Grouped bars, one group per task plus the average, one bar per model; saved as PNG."""
    scores = aggregate_subtasks(scores)
    require("matplotlib", "eval").use("Agg")
    plt = require("matplotlib.pyplot", "eval")

    models = _models(scores)
    table = score_table(scores)
    groups = [task for task, _, _ in _tasks(scores)] + ["average"]
    overall = overall_averages(scores)
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 2), 4.5))
    for i, model in enumerate(models):
        heights = [table[g].get(model, 0.0) if g != "average" else overall[model][0] for g in groups]
        xs = [g + (i - (len(models) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, heights, width=width, label=model)
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    ax.set_ylabel("main score x100")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(
    scores: Sequence[Score], output: str | Path, name: str = "summary", title: str = "Evaluation summary"
) -> tuple[Path, Path]:
    """Print the summary and save ``<output>/<name>.md`` and ``<output>/<name>.png``."""
    if not scores:
        raise ValueError("No scores to report: no task was evaluated")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    markdown = summary_markdown(scores, title=title)
    print(markdown)
    md_path = output / f"{name}.md"
    md_path.write_text(markdown, encoding="utf-8")
    return md_path, bar_chart(scores, output / f"{name}.png", title=title)
