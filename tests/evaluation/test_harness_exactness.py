"""Harness exactness on a CI-sized subset: dense MiniLM offline reproduces its published MTEB scores.
The full check over every local task is ``make check-harness``."""

from __future__ import annotations

from pathlib import Path

import pytest

from lens_embed.evaluation.encoders import PlainModelEncoder, minilm_meta
from lens_embed.evaluation.leaderboard.harness import (
    TOLERANCE,
    anchors_path,
    compare,
    data_differences,
    harness_markdown,
    table_scores,
)
from lens_embed.evaluation.offline import offline_tasks
from lens_embed.evaluation.runner import ModelRun, evaluate_runs

CI_TASKS = ["STSBenchmark", "STS16"]


def test_published_anchor_table_is_parsed(data_dir: Path) -> None:
    published = table_scores(anchors_path(data_dir))
    assert published["STSBenchmark"] == pytest.approx(82.03247)
    assert published["SciFact"] == pytest.approx(64.508)
    assert len(published) == 9
    assert table_scores(anchors_path(data_dir), column="BM25 (bm25s)") == {"SciFact": 68.74}


@pytest.mark.parametrize("task", CI_TASKS)
def test_dense_minilm_matches_published_score(task: str, data_dir: Path, minilm, tmp_path: Path) -> None:
    run = ModelRun("minilm", lambda: PlainModelEncoder(minilm, minilm_meta()))
    measured = {
        s.task: s.value for s in evaluate_runs([run], offline_tasks(data_dir, names=[task]), tmp_path)
    }
    [row] = compare(table_scores(anchors_path(data_dir)), measured)
    assert row.passes(TOLERANCE), harness_markdown([row])


def test_harness_table_flags_a_gap() -> None:
    rows = compare({"A": 80.0, "B": 70.0}, {"A": 80.2, "B": 70.5, "C": 1.0})
    assert [r.task for r in rows] == ["A", "B"]
    assert [r.passes() for r in rows] == [True, False]
    assert "| B | 70.000 | 70.500 | +0.500 | NO | same statistics |" in harness_markdown(rows)
    explained = compare({"B": 70.0}, {"B": 70.5}, {"B": ("label_statistics.avg_score 2.198 (MTEB: 2.196)",)})
    assert explained[0].explained and "NO (local data differs" in harness_markdown(explained)
    formatting_only = compare({"B": 70.0}, {"B": 70.5}, {"B": ("number_of_characters 10 (MTEB: 9)",)})
    assert not formatting_only[0].explained
    assert "| NO | 1 character/unique-count statistic(s) differ |" in harness_markdown(formatting_only)


def test_data_check_against_mtebs_own_statistics(data_dir: Path) -> None:
    """STSBenchmark is the same copy as MTEB's; BIOSSES has a different gold-score mean."""
    sts_b, biosses = offline_tasks(data_dir, names=["STSBenchmark", "BIOSSES"])
    assert not any("score" in d or "num_samples" in d for d in data_differences(sts_b))
    assert any(d.startswith("label_statistics.avg_score 2.198") for d in data_differences(biosses))
