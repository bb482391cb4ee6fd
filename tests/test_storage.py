"""The cache and atomic writes: readers never see half a file or folder, concurrent first loads both succeed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lens_embed.convert import convert_checkpoint
from lens_embed.safety import code_references
from lens_embed.storage import atomic_write, cached_directory, is_released_name, staged_directory

REPO = Path(__file__).resolve().parents[1]


def test_atomic_write_gives_the_usual_mode_and_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "out.bin"
    umask = os.umask(0o022)
    try:
        atomic_write(target, lambda stream: stream.write(b"first"))
    finally:
        os.umask(umask)
    assert target.read_bytes() == b"first" and (target.stat().st_mode & 0o777) == 0o644

    def fail(stream):
        stream.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"first" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_a_staged_directory_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError), staged_directory(target) as staging:
        (staging / "part").write_text("x")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with staged_directory(target) as staging:
        (staging / "new").write_text("new")
    with pytest.raises(FileExistsError), staged_directory(target) as staging:
        (staging / "newer").write_text("newer")
    with staged_directory(target, replace=True) as staging:
        (staging / "newest").write_text("newest")
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and [p.name for p in target.iterdir()] == ["newest"]


def test_a_cached_directory_is_produced_once_and_reused(tmp_path):
    calls = []
    produce = lambda staging: calls.append((staging / "done").write_text("1"))  # noqa: E731
    first = cached_directory(tmp_path / "entry", produce)
    assert cached_directory(tmp_path / "entry", produce) == first and len(calls) == 1
    assert (first / "done").is_file()


def test_released_names_are_recognised_in_one_place(tmp_path, monkeypatch):
    assert is_released_name("yibinlei/LENS-d8000") and is_released_name("yibinlei/LENS-d4000")
    assert not is_released_name("yibinlei/LENS-d16000") and not is_released_name("sentence-transformers/all-MiniLM-L6-v2")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "yibinlei" / "LENS-d8000").mkdir(parents=True)
    assert not is_released_name("yibinlei/LENS-d8000")  # a local folder of that name wins


def test_convert_carries_no_code_reference_from_the_source(released, tmp_path):
    source = Path(shutil.copytree(released, tmp_path / "source"))
    for name in ("config.json", "tokenizer_config.json"):
        data = json.loads((source / name).read_text())
        data["auto_map"] = {"AutoModel": "modeling_lens.MistralBiModel", "AutoTokenizer": ["x.Tok", None]}
        (source / name).write_text(json.dumps(data))
    convert_checkpoint(source, tmp_path / "out")
    assert code_references(tmp_path / "out") == []
    assert "auto_map" not in (tmp_path / "out" / "config.json").read_text()
    assert "auto_map" not in (tmp_path / "out" / "tokenizer_config.json").read_text()


LOAD_RELEASED = """
from lens_embed import load_lens_model
print(load_lens_model("yibinlei/LENS-d8000").get_embedding_dimension())
"""


def test_two_processes_loading_one_released_name_into_an_empty_cache_both_succeed(released, tmp_path):
    sha = "0" * 40
    repo = tmp_path / "hub" / "models--yibinlei--LENS-d8000"
    shutil.copytree(released, repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    env = dict(
        os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1", LENS_EMBED_CACHE=str(tmp_path / "cache")
    )
    runs = [
        subprocess.Popen([sys.executable, "-c", LOAD_RELEASED], cwd=REPO, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr[-2000:]
        assert stdout.split()[-1] == "24"
    converted = tmp_path / "cache" / "converted"
    assert [p.name for p in converted.iterdir() if not p.name.startswith(".")] == ["yibinlei__LENS-d8000"]
    assert not [p for p in converted.iterdir() if ".staging-" in p.name]
