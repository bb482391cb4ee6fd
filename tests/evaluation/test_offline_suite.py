"""The offline suite on small slices of the real data: discovery, mteb's classes, results layout."""

from __future__ import annotations

from pathlib import Path

import mteb
import pytest
from mteb.abstasks.classification import AbsTaskClassification
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.sts import AbsTaskSTS
from mteb.cache import ResultCache

from lens_embed.evaluation.encoders import PlainModelEncoder, minilm_meta
from lens_embed.evaluation.offline import discover_task_folders, offline_tasks
from lens_embed.evaluation.runner import ModelRun, evaluate_runs


def test_real_data_tasks_reuse_mtebs_registered_classes(data_dir: Path) -> None:
    tasks = {task.metadata.name: task for task in offline_tasks(data_dir)}
    assert set(discover_task_folders(data_dir)) == set(tasks)
    for name, task in tasks.items():
        registered = mteb.get_task(name)
        assert isinstance(task, type(registered)), name
        assert task.metadata == registered.metadata, name  # same splits, main score, revision, prompt


def test_new_folders_run_through_mtebs_base_classes(small_data_dir: Path) -> None:
    tasks = {task.metadata.name: task for task in offline_tasks(small_data_dir)}
    assert isinstance(tasks["SliceSTS16"], AbsTaskSTS)
    assert isinstance(tasks["SliceBanking8"], AbsTaskClassification)
    assert isinstance(tasks["SliceSciFact"], AbsTaskRetrieval)
    assert {t.metadata.main_score for t in tasks.values()} == {"cosine_spearman", "accuracy", "ndcg_at_10"}


def test_offline_slice_scores_and_mteb_results_layout(small_data_dir: Path, minilm, tmp_path: Path) -> None:
    meta = minilm_meta()
    run = ModelRun("minilm", lambda: PlainModelEncoder(minilm, meta))
    scores = {s.task: s.value for s in evaluate_runs([run], offline_tasks(small_data_dir), tmp_path)}
    # real text, a real model: well above chance on every task type
    assert scores["SliceSTS16"] > 60
    assert scores["SliceBanking8"] > 50
    assert scores["SliceSciFact"] > 50
    revision_dir = tmp_path / "results" / meta.model_name_as_path() / str(meta.revision)
    assert (revision_dir / "model_meta.json").is_file()
    assert {p.stem for p in revision_dir.glob("Slice*.json")} == set(scores)
    # mteb's own loader reads the folder back, scores intact
    loaded = ResultCache(tmp_path).load_results(
        models=[meta.name], tasks=list(scores), validate_and_filter=False
    )
    task_results = {r.task_name: r for model in loaded.model_results for r in model.task_results}
    assert set(task_results) == set(scores)
    for name, value in scores.items():
        assert 100 * task_results[name].get_score() == pytest.approx(value)
