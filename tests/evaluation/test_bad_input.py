"""Bad input gets a clear error naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from lens_embed.commands import main
from lens_embed.evaluation.data import DATA_ENV_VAR, DataDirError, resolve_data_dir
from lens_embed.evaluation.model_runs import ModelArgumentError, model_run
from lens_embed.evaluation.offline import UnknownTaskError, offline_tasks
from lens_embed.evaluation.tasks import resolve_tasks


def test_missing_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataDirError, match="Offline data folder not found: .*nowhere"):
        resolve_data_dir(tmp_path / "nowhere")
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "from-env"))
    with pytest.raises(DataDirError, match=rf"from-env \(from \${DATA_ENV_VAR}\)"):
        resolve_data_dir()
    with pytest.raises(DataDirError, match="none of the task folders"):
        resolve_data_dir(tmp_path)


def test_env_var_selects_the_data(small_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV_VAR, str(small_data_dir))
    assert resolve_data_dir() == small_data_dir.resolve()


def test_unknown_tasks(small_data_dir: Path) -> None:
    with pytest.raises(UnknownTaskError, match="NoSuchTask.*Available: .*SliceSTS16"):
        offline_tasks(small_data_dir, names=["NoSuchTask"])
    with pytest.raises(UnknownTaskError, match="SciFactt.*Did you mean.*SciFact"):
        resolve_tasks(["SciFactt"])


def test_task_folder_missing_a_file(small_data_dir: Path, copy_of) -> None:
    broken = copy_of(small_data_dir)
    (broken / "retrieval" / "SliceSciFact" / "qrels" / "test.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"SliceSciFact lacks qrels/test.tsv"):
        offline_tasks(broken)


def test_model_path_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match="not a sentence-transformers or lens-embed model"):
        model_run(str(tmp_path))
    with pytest.raises(ModelArgumentError, match="no such folder"):
        model_run(str(tmp_path / "missing"))


def test_cli_reports_bad_input_and_exits_2(
    tmp_path: Path, small_data_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(
        [
            "evaluate",
            "offline",
            "--model",
            str(tmp_path),
            "--data",
            str(small_data_dir),
            "--output",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    assert "not a sentence-transformers or lens-embed model" in capsys.readouterr().err
    assert main(["evaluate", "offline", "--data", str(tmp_path / "none")]) == 2
    assert "Offline data folder not found" in capsys.readouterr().err
