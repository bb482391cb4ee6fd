"""Killed for real (SIGKILL) mid-write, every verb leaves its target whole or absent, and the rerun
cleans up what the killed run left and gives byte for byte what an uninterrupted run gives."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from interrupted import cli_env, contents, has_file, kill_when, leftovers, log_contains, run_cli

from tiny_models import offline_hub_with_release

pytestmark = pytest.mark.slow  # each test runs the command-line tool three or four times


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


@pytest.fixture(scope="module")
def built(tiny_mistral: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The files of an uninterrupted ``build --clusters 16`` of the tiny Mistral."""
    folder = tmp_path_factory.mktemp("whole-build")
    run_cli(["build", tiny_mistral, "model", "--clusters", "16"], cwd=folder)
    return contents(folder / "model")


def test_build_killed_at_its_first_file_leaves_no_output_and_the_rerun_needs_no_overwrite(
    tiny_mistral, built, tmp_path
):
    build = ["build", tiny_mistral, "model", "--clusters", "16"]
    kill_when(build, lambda: has_file(tmp_path / ".model.staging-*"), cwd=tmp_path)
    assert not (tmp_path / "model").exists()
    run_cli(build, cwd=tmp_path)
    assert contents(tmp_path / "model") == built
    assert leftovers(tmp_path) == []


def test_build_overwrite_killed_keeps_the_older_model_whole(tiny_mistral, built, tmp_path):
    run_cli(["build", tiny_mistral, "model", "--clusters", "8"], cwd=tmp_path)
    older = contents(tmp_path / "model")
    rebuild = ["build", tiny_mistral, "model", "--clusters", "16", "--overwrite"]
    kill_when(rebuild, lambda: has_file(tmp_path / ".model.staging-*", "model.safetensors"), cwd=tmp_path)
    assert contents(tmp_path / "model") == older  # not the new weights beside the old head
    run_cli(rebuild, cwd=tmp_path)
    assert contents(tmp_path / "model") == built
    assert leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def converted(released: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The files of an uninterrupted ``convert`` of the tiny released checkpoint."""
    folder = tmp_path_factory.mktemp("whole-convert")
    run_cli(["convert", released, "model"], cwd=folder)
    return contents(folder / "model")


@pytest.mark.parametrize("stage", [".lens-convert-*", ".model.staging-*"])
def test_convert_killed_leaves_no_output_and_the_rerun_removes_its_copies(
    released, converted, tmp_path, stage
):
    convert = ["convert", released, "model"]
    kill_when(convert, lambda: has_file(tmp_path / stage), cwd=tmp_path)
    assert not (tmp_path / "model").exists()
    run_cli(convert, cwd=tmp_path)
    assert contents(tmp_path / "model") == converted
    assert leftovers(tmp_path) == []
    usual = 0o777 & ~_umask()
    assert {path.stat().st_mode & 0o777 for path in (tmp_path / "model").rglob("*") if path.is_dir()} | {
        (tmp_path / "model").stat().st_mode & 0o777
    } == {usual}
    assert {path.stat().st_mode & 0o777 for path in (tmp_path / "model").rglob("*") if path.is_file()} == {
        usual & 0o666
    }


def test_a_killed_cache_conversion_is_cleaned_up_by_the_next_load(released, tmp_path):
    hub = offline_hub_with_release(released, tmp_path / "hub")
    env = cli_env(HF_HUB_CACHE=str(hub), LENS_EMBED_CACHE=str(tmp_path / "cache"))
    converted = tmp_path / "cache" / "converted"
    info = ["info", "yibinlei/LENS-d8000"]
    kill_when(
        info,
        lambda: has_file(converted / ".yibinlei__LENS-d8000.staging-*", "model.safetensors"),
        cwd=tmp_path,
        env=env,
    )
    assert not (converted / "yibinlei__LENS-d8000").exists()
    assert json.loads(run_cli(info, cwd=tmp_path, env=env))["clusters"] == 24
    assert leftovers(converted) == []
    assert sorted(path.name for path in converted.iterdir()) == [
        ".yibinlei__LENS-d8000.lock",
        "yibinlei__LENS-d8000",
    ]
    assert (converted / "yibinlei__LENS-d8000").stat().st_mode & 0o777 == 0o777 & ~_umask()


def test_encode_killed_while_encoding_leaves_no_output_and_the_rerun_is_identical(tiny_lens, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"text {i}: the quick brown fox jumps over the lazy dog\n" for i in range(300)))
    encode = ["encode", tiny_lens, texts, "--batch-size", "1", "--out"]
    run_cli([*encode, "whole.npy"], cwd=tmp_path)
    kill_when([*encode, "emb.npy"], log_contains(tmp_path, "Batches"), cwd=tmp_path)
    assert not (tmp_path / "emb.npy").exists() and leftovers(tmp_path) == []
    run_cli([*encode, "emb.npy"], cwd=tmp_path)
    assert (tmp_path / "emb.npy").read_bytes() == (tmp_path / "whole.npy").read_bytes()


def test_encode_corpus_killed_after_its_first_shard_resumes_to_identical_files(tiny_lens, tmp_path):
    texts = tmp_path / "corpus.txt"
    texts.write_text(
        "".join(f"document {i} about {i % 7} foxes" + " and dogs" * (i % 5) + "\n" for i in range(300))
    )
    run_cli(["encode-corpus", tiny_lens, texts, "--out", "whole", "--shard-size", "2"], cwd=tmp_path)
    corpus = ["encode-corpus", tiny_lens, texts, "--out", "shards", "--shard-size", "2"]
    kill_when(corpus, lambda: (tmp_path / "shards" / "shard_00000.npy").is_file(), cwd=tmp_path)
    done = sorted(path.name for path in (tmp_path / "shards").glob("shard_*.npy"))
    assert 0 < len(done) < 150 and not (tmp_path / "shards" / "embeddings.npy").exists()
    run_cli(corpus, cwd=tmp_path)
    assert contents(tmp_path / "shards") == contents(tmp_path / "whole")
    assert leftovers(tmp_path / "shards") == []
