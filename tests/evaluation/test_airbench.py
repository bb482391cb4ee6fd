"""AIR-Bench's own Evaluator scoring a local dev set searched by lens-embed + faiss."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from lens_embed.evaluation.leaderboard.airbench import (
    LensAirRetriever,
    LocalDataLoader,
    dev_rows,
    run_local,
    submission_zip,
)
from lens_embed.serving.retrieval import DenseRetriever


def test_offline_airbench_dev_scores_and_test_files(minilm, airbench_data_dir: Path, tmp_path: Path) -> None:
    dense = DenseRetriever(minilm, tmp_path / "emb", show_progress=False)
    retriever = LensAirRetriever(dense, name="minilm-test", search_top_k=100)
    scores = run_local(retriever, airbench_data_dir, tmp_path)
    [(task, ndcg)] = dev_rows(scores)
    assert task == "qa/science/en/scifact_slice"
    assert 40 < ndcg <= 100
    assert json.loads((tmp_path / "airbench" / "dev_scores.json").read_text()) == scores
    test_file = (
        tmp_path
        / "airbench"
        / "search_results"
        / "minilm-test"
        / "NoReranker"
        / "qa"
        / "science"
        / "en_scifact_slice_test.json"
    )
    saved = json.loads(test_file.read_text())
    assert saved["split"] == "test" and len(saved["search_results"]) == 12
    archive = submission_zip(retriever, tmp_path)
    assert (
        "qa/science/en_scifact_slice_test.json" in zipfile.ZipFile(archive).namelist()
    )  # AIR-Bench's zip layout


def test_local_loader_discovers_datasets_and_qrels(airbench_data_dir: Path) -> None:
    loader = LocalDataLoader(airbench_data_dir)
    [task] = loader.tasks()
    assert task.splits == ("dev", "test")
    qrels = loader.load_qrels("qa", "science", "en", "scifact_slice", "dev")
    assert len(qrels) == 12 and all(v >= 0 for docs in qrels.values() for v in docs.values())
