"""``lens-embed evaluate compare``: our results beside the published LENS scores, leaderboard-selected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lens_embed.commands import main
from lens_embed.evaluation.leaderboard.compare import (
    compare_markdown,
    compare_rows,
    our_scores,
    published_scores,
)
from lens_embed.evaluation.tasks import paper_tasks

PUBLISHED = published_scores("yibinlei/LENS-d8000")
CQA_PARTS = sorted(n for n in paper_tasks() if n.startswith("CQADupstack") and n != "CQADupstackRetrieval")


def write_result(folder: Path, task: str, scores: dict[str, list[tuple[str, float]]]) -> None:
    """An mteb task result file: ``{split: [(hf_subset, main_score 0-1), ...]}``."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "dataset_revision": "r",
        "task_name": task,
        "mteb_version": "2.26.24",
        "evaluation_time": 1.0,
        "kg_co2_emissions": None,
        "scores": {
            split: [
                {"hf_subset": subset, "languages": ["eng-Latn"], "main_score": value}
                for subset, value in entries
            ]
            for split, entries in scores.items()
        },
    }
    (folder / f"{task}.json").write_text(json.dumps(data))


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    """A small results folder: exact, shifted, extra-split, extra-subset tasks and CQADupstack's 12 parts."""
    folder = tmp_path / "out" / "results" / "yibinlei__LENS-d8000" / "a0b87bd9"
    sts17 = PUBLISHED["STS17"][1] / 100
    write_result(
        folder, "STS17", {"test": [("en-en", sts17), ("ko-ko", 0.0)], "validation": [("en-en", 0.0)]}
    )
    counterfactual = PUBLISHED["AmazonCounterfactualClassification"][1] / 100
    write_result(
        folder,
        "AmazonCounterfactualClassification",
        {"test": [("en", counterfactual), ("en-ext", 0.0)], "validation": [("en", 0.0), ("en-ext", 0.0)]},
    )
    write_result(folder, "SciFact", {"test": [("default", PUBLISHED["SciFact"][1] / 100 - 0.02)]})
    for index, part in enumerate(CQA_PARTS):
        write_result(folder, part, {"test": [("default", 0.40 + 0.01 * index)]})
    (folder / "model_meta.json").write_text("{}")
    return tmp_path / "out"


def test_scores_use_the_leaderboard_split_and_subset(results: Path) -> None:
    ours = {s.task: s.value for s in our_scores(results)}
    assert ours["STS17"] == pytest.approx(PUBLISHED["STS17"][1])  # en-en test only
    assert ours["AmazonCounterfactualClassification"] == pytest.approx(
        PUBLISHED["AmazonCounterfactualClassification"][1]
    )


def test_rows_differences_averages_and_flags(results: Path) -> None:
    rows = {r.task: r for r in compare_rows(our_scores(results))}
    assert len(rows) == 56 and rows["MSMARCO"].ours is None
    assert rows["SciFact"].diff == pytest.approx(-2.0)
    assert rows["CQADupstackRetrieval"].ours == pytest.approx(100 * (0.40 + 0.01 * 5.5))  # mean of the 12
    text = compare_markdown(list(rows.values()), "yibinlei/LENS-d8000", tolerance=0.5)
    assert "| SciFact | Retrieval |" in text and "**> 0.5**" in text
    assert "Beyond ±0.5: CQADupstackRetrieval, SciFact." in text
    assert "Published average over all 56 tasks: 71.63." in text
    retrieval = [r for r in rows.values() if r.task_type == "Retrieval" and r.ours is not None]
    ours = sum(r.ours for r in retrieval) / 2
    assert f"| Retrieval | 2 | {ours:.2f} |" in text


def test_cli_prints_and_saves_markdown(results: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "compare", str(results), "--tolerance", "3"]) == 0
    printed = capsys.readouterr().out
    saved = results / "compare_yibinlei__LENS-d8000.md"
    assert saved.read_text() in printed and "Beyond ±3.0: CQADupstackRetrieval." in printed


def test_bad_results_folders_are_named(tmp_path: Path, results: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "compare", str(tmp_path / "none")]) == 2
    assert "results folder not found" in capsys.readouterr().err
    write_result(results / "results" / "other__model" / "r", "SciFact", {"test": [("default", 0.5)]})
    assert main(["evaluate", "compare", str(results)]) == 2
    assert "several models or revisions" in capsys.readouterr().err
