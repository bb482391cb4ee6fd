"""Task lists for eval-mteb, and the summary (Markdown + PNG)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lens_embed.evaluation.cli import _split_names
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
    assert _split_names(["SciFact NFCorpus", "MTEB(eng, v1)"]) == ["SciFact", "NFCorpus", "MTEB(eng, v1)"]


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
    assert category_averages(SCORES) == {"STS": {"lens": 85.0, "minilm": 73.0}, "Retrieval": {"lens": 60.0, "minilm": 64.0, "bm25": 68.0}}
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
