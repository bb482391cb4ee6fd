"""The cache and atomic writes: readers never see half a file or folder, concurrent first loads both
succeed."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lens_embed.base.storage import (
    MANIFEST_FILE,
    atomic_write,
    cached_directory,
    check_writable,
    give_usual_modes,
    is_released_name,
    manifest_problem,
    overlaps,
    recover_replaced,
    refuse_overlap,
    staged_directory,
    write_manifest,
)
from lens_embed.models.convert import convert_checkpoint
from lens_embed.models.portable import own_code_types
from lens_embed.models.safety import code_references
from tiny_models import offline_hub_with_release

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
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and [p.name for p in target.iterdir()] == [
        "newest"
    ]


def test_a_cached_directory_is_produced_once_and_reused(tmp_path):
    calls = []
    produce = lambda staging: calls.append((staging / "done").write_text("1"))  # noqa: E731
    first = cached_directory(tmp_path / "entry", produce)
    assert cached_directory(tmp_path / "entry", produce) == first and len(calls) == 1
    assert (first / "done").is_file()


def test_released_names_are_recognised_in_one_place(tmp_path, monkeypatch):
    assert is_released_name("yibinlei/LENS-d8000") and is_released_name("yibinlei/LENS-d4000")
    assert not is_released_name("yibinlei/LENS-d16000") and not is_released_name(
        "sentence-transformers/all-MiniLM-L6-v2"
    )
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
    assert code_references(tmp_path / "out", own_code_types(tmp_path / "out")) == []
    assert "auto_map" not in (tmp_path / "out" / "config.json").read_text()
    assert "auto_map" not in (tmp_path / "out" / "tokenizer_config.json").read_text()


LOAD_RELEASED = """
from lens_embed import load_lens_model
print(load_lens_model("yibinlei/LENS-d8000").get_embedding_dimension())
"""


def test_two_processes_loading_one_released_name_into_an_empty_cache_both_succeed(released, tmp_path):
    hub = offline_hub_with_release(released, tmp_path / "hub")
    env = dict(
        os.environ, HF_HUB_CACHE=str(hub), HF_HUB_OFFLINE="1", LENS_EMBED_CACHE=str(tmp_path / "cache")
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", LOAD_RELEASED],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr[-2000:]
        assert stdout.split()[-1] == "24"
    converted = tmp_path / "cache" / "converted"
    assert [p.name for p in converted.iterdir() if not p.name.startswith(".")] == ["yibinlei__LENS-d8000"]
    assert not [p for p in converted.iterdir() if ".staging-" in p.name]


HOLD_STAGING = """
import sys
from lens_embed.base.storage import staged_directory
with staged_directory(sys.argv[1]) as staging:
    (staging / "part").write_text("half")
    print(staging, flush=True)
    sys.stdin.readline()
"""


def _holding_writer(target: Path) -> tuple[subprocess.Popen, Path]:
    """A live process in the middle of a staged write to ``target``; returns it and its staging folder."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_STAGING, str(target)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return process, Path(process.stdout.readline().strip())


def test_what_a_killed_writer_left_is_removed_by_the_next_write_and_a_live_writers_folder_is_kept(tmp_path):
    target = tmp_path / "model"
    live, held = _holding_writer(target)
    try:
        killed, stale = _holding_writer(target)
        killed.kill()
        killed.wait()
        legacy = tmp_path / ".model.staging-k2_x9abc"  # tempfile.mkdtemp's name, from a version without locks
        legacy.mkdir()
        assert stale.is_dir() and held.is_dir()
        with staged_directory(target) as staging:
            (staging / "done").write_text("whole")
        assert not stale.exists() and not legacy.exists()
        assert (held / "part").read_text() == "half"  # another process is still writing it
    finally:
        live.communicate("\n", timeout=60)
    assert live.returncode != 0  # its target appeared meanwhile: it refuses rather than mixing
    assert (
        sorted(p.name for p in tmp_path.iterdir()) == ["model"] and (target / "done").read_text() == "whole"
    )


def _replace_interrupted(target: Path) -> None:
    """Another replacement of ``target``, interrupted in turn."""
    with pytest.raises(RuntimeError), staged_directory(target, replace=True):
        raise RuntimeError("interrupted again")


@pytest.mark.parametrize(
    "comes_next", [_replace_interrupted, recover_replaced], ids=["another replacement", "a reader"]
)
def test_a_target_moved_aside_by_a_killed_replacement_is_put_back(tmp_path, comes_next):
    target = tmp_path / "model"
    aside = tmp_path / ".model.old-0123abcd" / "old"
    aside.mkdir(parents=True)
    (aside / "weights").write_text("previous")
    comes_next(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (target / "weights").read_text() == "previous"


def test_atomic_write_removes_the_temporaries_of_killed_writers_only(tmp_path):
    target = tmp_path / "emb.npy"
    stale = tmp_path / ".emb.npy.4242-0123abcd.tmp"
    stale.write_bytes(b"half")
    live = tmp_path / ".emb.npy.4243-4567cdef.tmp"
    with live.open("wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # as a live writer holds its temporary
        atomic_write(target, lambda stream: stream.write(b"whole"))
        assert live.exists()
    assert not stale.exists() and target.read_bytes() == b"whole"


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask-022", "umask-027"])
def test_staged_and_cached_folders_get_the_usual_mode(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with staged_directory(tmp_path / "model") as staging:
            (staging / "file").write_text("x")
        entry = cached_directory(tmp_path / "cache" / "entry", lambda staging: None)
    finally:
        os.umask(previous)
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o777 & ~umask
    assert entry.stat().st_mode & 0o777 == 0o777 & ~umask


def test_usual_modes_widen_files_written_private(tmp_path):
    (tmp_path / "sub").mkdir()
    for path in (tmp_path / "weights.safetensors", tmp_path / "sub" / "head.safetensors"):
        path.write_bytes(b"x")
        path.chmod(0o600)  # as safetensors writes them
    previous = os.umask(0o022)
    try:
        give_usual_modes(tmp_path)
    finally:
        os.umask(previous)
    assert {p.stat().st_mode & 0o777 for p in tmp_path.rglob("*") if p.is_file()} == {0o644}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub", "weights.safetensors"]


def test_overlapping_paths_are_recognised_through_links(tmp_path):
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(model)
    for path in (model, model / "sub", model / "new" / "x.npy", tmp_path, tmp_path / "link" / "out"):
        assert overlaps(path, model), path
    assert not overlaps(tmp_path / "model2", model) and not overlaps(tmp_path / "other" / "model", model)
    assert overlaps("org/name", "org/name") and not overlaps("org", "org/name")  # a hub name: only itself
    with pytest.raises(ValueError, match=r"--out .* is \(or overlaps\) the model"):
        refuse_overlap(model / "x.npy", "--out", model, "the model")


def produce_entry(staging: Path) -> None:
    """A cache entry of two files, one of them hashed on every use, recorded in its manifest."""
    (staging / "head").mkdir()
    (staging / "head" / "weights.bin").write_bytes(b"head weights")
    (staging / "backbone.bin").write_bytes(b"backbone weights")
    write_manifest(staging, checked_on_use=["head/"])


@pytest.mark.parametrize(
    "damage, reason",
    [
        (
            lambda e: (e / "backbone.bin").write_bytes(b"backbone"),
            "backbone.bin has 8 bytes, 16 were written",
        ),
        (lambda e: (e / "head" / "weights.bin").write_bytes(b"HEAD weights"), "head/weights.bin changed"),
        (lambda e: (e / "backbone.bin").unlink(), r"files missing \['backbone.bin'\], unexpected \[\]"),
        (lambda e: (e / "extra.bin").write_bytes(b""), r"files missing \[\], unexpected \['extra.bin'\]"),
        (lambda e: shutil.rmtree(e / "head"), "files missing"),
        (lambda e: (e / MANIFEST_FILE).unlink(), f"it has no {MANIFEST_FILE}"),
        (lambda e: (e / MANIFEST_FILE).write_text("{"), f"its {MANIFEST_FILE} is unreadable"),
    ],
    ids=[
        "truncated",
        "head-changed",
        "file-deleted",
        "file-added",
        "folder-emptied",
        "no-manifest",
        "bad-manifest",
    ],
)
def test_a_damaged_cache_entry_is_produced_again_saying_why(tmp_path, caplog, damage, reason):
    target = tmp_path / "entry"
    entry = cached_directory(target, produce_entry, problem=manifest_problem)
    assert manifest_problem(entry) is None and manifest_problem(entry, full=True) is None
    damage(entry)
    with caplog.at_level(logging.WARNING, logger="lens_embed.base.storage"):
        assert cached_directory(target, produce_entry, problem=manifest_problem) == entry
    assert len(caplog.records) == 1 and re.match(
        rf"rebuilding {entry}: {reason}", caplog.records[0].getMessage()
    )
    assert manifest_problem(entry, full=True) is None
    assert (entry / "backbone.bin").read_bytes() == b"backbone weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".entry.lock", "entry"]


def test_only_a_full_check_hashes_the_files_not_checked_on_use(tmp_path):
    entry = cached_directory(tmp_path / "entry", produce_entry, problem=manifest_problem)
    (entry / "backbone.bin").write_bytes(b"BACKBONE weights")  # same size, other bytes
    assert manifest_problem(entry) is None
    assert manifest_problem(entry, full=True) == "backbone.bin changed since it was written (SHA-256)"


def test_exports_added_to_an_entry_later_keep_it_whole(tmp_path):
    """``default --backend onnx`` exports into the cached entry: the export folders carry their own record
    (checked when they are loaded), so the entry is not rebuilt for them, nor are they lost."""
    entry = cached_directory(tmp_path / "entry", produce_entry, problem=manifest_problem)
    for name in ("onnx/model.onnx", "openvino/openvino_model.xml"):
        (entry / name).parent.mkdir(exist_ok=True)
        (entry / name).write_bytes(b"exported")
    assert manifest_problem(entry) is None and manifest_problem(entry, full=True) is None
    assert cached_directory(tmp_path / "entry", produce_entry, problem=manifest_problem) == entry
    assert (entry / "onnx" / "model.onnx").read_bytes() == b"exported"
    (entry / "onnxx").mkdir()
    (entry / "onnxx" / "model.onnx").write_bytes(b"")  # any other addition still counts
    assert manifest_problem(entry) == r"files missing [], unexpected ['onnxx/model.onnx']"


def test_a_file_at_a_cache_entry_is_refused_before_anything_is_produced(tmp_path):
    (tmp_path / "entry").write_text("x")
    produce = lambda staging: pytest.fail("produced")  # noqa: E731
    with pytest.raises(
        NotADirectoryError, match=f"^the cache entry {tmp_path / 'entry'} is a file, not a folder$"
    ):
        cached_directory(tmp_path / "entry", produce)


def test_outputs_are_checked_before_the_work(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    check_writable(tmp_path / "new" / "deeper" / "out.npy", "--out", folder=False)  # folders made later
    check_writable(tmp_path / "folder", "--out", folder=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]  # the check creates nothing
    with pytest.raises(IsADirectoryError, match=f"^--out {tmp_path / 'folder'} is a folder; name a file$"):
        check_writable(tmp_path / "folder", "--out", folder=False)
    with pytest.raises(NotADirectoryError, match=f"^--out {tmp_path / 'file'} is a file, not a folder$"):
        check_writable(tmp_path / "file", "--out", folder=True)
    under = tmp_path / "file" / "sub" / "out.npy"
    with pytest.raises(
        NotADirectoryError, match=f"^--out {under} lies under {tmp_path / 'file'}, which is a file"
    ):
        check_writable(under, "--out", folder=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="permission bits do not bind root")
def test_an_unwritable_output_folder_is_named(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(PermissionError, match=f"^--out {locked / 'out.npy'}: cannot write in {locked} "):
        check_writable(locked / "out.npy", "--out", folder=False)


def test_a_replaced_folder_is_never_absent(tmp_path, monkeypatch):
    target = tmp_path / "model"
    with staged_directory(target) as staging:
        (staging / "weights").write_text("old")
    seen = []
    real_rename, real_rmtree = Path.rename, shutil.rmtree

    def rename(self, destination):  # every rename of the replacement, and what a reader finds after it
        moved = real_rename(self, destination)
        seen.append(("rename", target.is_dir() and (target / "weights").read_text()))
        return moved

    def rmtree(path, *args, **kwargs):  # the moment the previous folder is removed
        seen.append(("remove", (target / "weights").read_text()))
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(Path, "rename", rename)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    with staged_directory(target, replace=True) as staging:
        (staging / "weights").write_text("new")
    assert seen == [("remove", "new")]  # one swap, no window; the old folder went after the new was in
    assert (
        sorted(p.name for p in tmp_path.iterdir()) == ["model"] and (target / "weights").read_text() == "new"
    )
