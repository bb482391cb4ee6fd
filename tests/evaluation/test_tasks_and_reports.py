"""Task lists for eval-mteb, and the summary (Markdown + PNG)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lens_embed.commands.evaluation_options import split_names
from lens_embed.evaluation.reports import category_averages, overall_averages, summary_markdown, write_report
from lens_embed.evaluation.runner import Score
from lens_embed.evaluation.tasks import resolve_tasks


def test_default_is_the_papers_56_english_tasks() -> None:
    tasks = resolve_tasks()
    assert len(tasks) == 56
    subsets = {t.metadata.name: t.hf_subsets for t in tasks}
    assert subsets["STS17"] == ["en-en"] and subsets["AmazonReviewsClassification"] == ["en"]
    assert {"SciFact", "NFCorpus", "MSMARCO", "SummEval", "TwitterURLCorpus"} <= set(subsets)


def test_names_and_benchmarks_are_accepted() -> None:
    assert [t.metadata.name for t in resolve_tasks(["SciFact", "NFCorpus"])] == ["SciFact", "NFCorpus"]
    assert len(resolve_tasks(["MTEB(eng, v1)", "SciFact"])) == 56
    assert resolve_tasks(["STS22"])[0].hf_subsets == ["en"]
    assert split_names(["SciFact NFCorpus", "MTEB(eng, v1)"]) == ["SciFact", "NFCorpus", "MTEB(eng, v1)"]


SCORES = [
    Score("lens", "STS12", "STS", "cosine_spearman", 80.0),
    Score("minilm", "STS12", "STS", "cosine_spearman", 70.0),
    Score("lens", "STS13", "STS", "cosine_spearman", 90.0),
    Score("minilm", "STS13", "STS", "cosine_spearman", 76.0),
    Score("lens", "SciFact", "Retrieval", "ndcg_at_10", 60.0),
    Score("minilm", "SciFact", "Retrieval", "ndcg_at_10", 64.0),
    Score("bm25", "SciFact", "Retrieval", "ndcg_at_10", 68.0),
]


def test_averages_per_category_and_overall() -> None:
    assert category_averages(SCORES) == {
        "STS": {"lens": 85.0, "minilm": 73.0},
        "Retrieval": {"lens": 60.0, "minilm": 64.0, "bm25": 68.0},
    }
    assert overall_averages(SCORES)["lens"] == pytest.approx((230 / 3, 3))
    assert overall_averages(SCORES)["bm25"] == (68.0, 1)


def test_summary_markdown_and_chart(tmp_path: Path) -> None:
    text = summary_markdown(SCORES)
    assert "| STS12 | STS | cosine_spearman | 80.00 | 70.00 | – |" in text
    assert "| **average** | 76.67 (3 tasks) | 70.00 (3 tasks) | 68.00 (1 tasks) |" in text
    md, png = write_report(SCORES, tmp_path)
    assert md.read_text() == text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="No scores"):
        write_report([], tmp_path)


def test_named_tasks_use_the_leaderboard_splits_and_subsets() -> None:
    tasks = {
        t.metadata.name: t
        for t in resolve_tasks(["AmazonCounterfactualClassification", "STS17", "STS22", "MSMARCO"])
    }
    assert (
        tasks["AmazonCounterfactualClassification"].eval_splits,
        tasks["AmazonCounterfactualClassification"].hf_subsets,
    ) == (["test"], ["en"])
    assert tasks["STS17"].hf_subsets == ["en-en"] and tasks["STS22"].hf_subsets == ["en"]
    assert tasks["MSMARCO"].eval_splits == ["dev"]


def test_cqadupstack_subtasks_count_once_in_the_averages() -> None:
    from lens_embed.evaluation.reports import aggregate_subtasks
    from lens_embed.evaluation.tasks import aggregate_parts

    _, _, parts = aggregate_parts()["CQADupstackRetrieval"]
    scores = [Score("m", name, "Retrieval", "ndcg_at_10", 40.0 + i) for i, name in enumerate(sorted(parts))]
    scores.append(Score("m", "SciFact", "Retrieval", "ndcg_at_10", 70.0))
    combined = aggregate_subtasks(scores)
    assert [(s.task, s.value) for s in combined] == [("CQADupstackRetrieval", 45.5), ("SciFact", 70.0)]
    assert overall_averages(scores)["m"] == (pytest.approx(616 / 13), 13)  # the raw list: 13 rows
    assert "| **average** | 57.75 (2 tasks) |" in summary_markdown(scores)  # the leaderboard's: 2 tasks
    assert aggregate_subtasks(scores[:5]) == scores[:5]  # an incomplete set stays as it is
