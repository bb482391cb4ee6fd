"""Fixtures of the evaluation tests: the real local data, small slices of it, the dense MiniLM."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lens_embed.evaluation.data import DataDirError, resolve_data_dir
from lens_embed.evaluation.offline import read_jsonl
from tiny_models import write_released_checkpoint


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real offline data (LENS_EMBED_DATA or ../shared/data); the tests need it."""
    try:
        return resolve_data_dir()
    except DataDirError as error:
        pytest.skip(f"offline data not available: {error}")


@pytest.fixture(scope="session")
def minilm():
    """The offline dense all-MiniLM-L6-v2 (loaded once per session)."""
    from sentence_transformers import SentenceTransformer

    from lens_embed.base.defaults import minilm_path

    return SentenceTransformer(str(minilm_path()), device="cpu")


@pytest.fixture(scope="session")
def scifact_slice(data_dir: Path) -> dict:
    """24 SciFact test queries, their relevant documents and 100 other documents (real text)."""
    from lens_embed.evaluation.offline import read_qrels

    folder = data_dir / "retrieval" / "SciFact"
    qrels = read_qrels(folder / "qrels" / "test.tsv")
    query_ids = sorted(qrels)[:24]
    relevant = {doc for qid in query_ids for doc in qrels[qid]}
    corpus = read_jsonl(folder / "corpus.jsonl")
    kept = [d for d in corpus if str(d["_id"]) in relevant] + [
        d for d in corpus if str(d["_id"]) not in relevant
    ][:100]
    queries = {str(q["_id"]): q for q in read_jsonl(folder / "queries.jsonl")}
    return {
        "corpus": kept,
        "queries": [queries[qid] for qid in query_ids],
        "qrels": {qid: qrels[qid] for qid in query_ids},
    }


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, scifact_slice: dict) -> Path:
    """A data folder in the shared layout with small slices of real data, under names mteb does not know
    (so they also prove that a new folder runs with no code change)."""
    root = tmp_path_factory.mktemp("small_data")
    _write_jsonl(
        root / "sts" / "SliceSTS16" / "test.jsonl",
        read_jsonl(data_dir / "sts" / "STS16" / "test.jsonl")[:150],
    )
    banking = data_dir / "classification" / "Banking77Classification"
    labels = sorted({row["label"] for row in read_jsonl(banking / "test.jsonl")})[:8]
    _write_jsonl(
        root / "classification" / "SliceBanking8" / "train.jsonl",
        [row for row in read_jsonl(banking / "train.jsonl") if row["label"] in labels],
    )
    _write_jsonl(
        root / "classification" / "SliceBanking8" / "test.jsonl",
        [row for row in read_jsonl(banking / "test.jsonl") if row["label"] in labels],
    )
    retrieval = root / "retrieval" / "SliceSciFact"
    _write_jsonl(retrieval / "corpus.jsonl", scifact_slice["corpus"])
    _write_jsonl(retrieval / "queries.jsonl", scifact_slice["queries"])
    lines = ["query-id\tcorpus-id\tscore"] + [
        f"{qid}\t{doc}\t{score}"
        for qid, docs in scifact_slice["qrels"].items()
        for doc, score in docs.items()
    ]
    (retrieval / "qrels").mkdir(parents=True)
    (retrieval / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def airbench_data_dir(tmp_path_factory: pytest.TempPathFactory, scifact_slice: dict) -> Path:
    """The SciFact slice in the local AIR-Bench layout: half the queries dev (with qrels), half test."""
    root = tmp_path_factory.mktemp("airbench") / "qa" / "science" / "en" / "scifact_slice"
    _write_jsonl(
        root / "corpus.jsonl",
        [{"id": str(d["_id"]), "text": f"{d['title']} {d['text']}"} for d in scifact_slice["corpus"]],
    )
    queries = scifact_slice["queries"]
    for split, part in (("dev", queries[:12]), ("test", queries[12:])):
        _write_jsonl(
            root / f"queries_{split}.jsonl", [{"id": str(q["_id"]), "text": q["text"]} for q in part]
        )
    lines = ["qid\tdocid\trelevance"] + [
        f"{q['_id']}\t{doc}\t{score}"
        for q in queries[:12]
        for doc, score in scifact_slice["qrels"][str(q["_id"])].items()
    ]
    (root / "qrels_dev.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root.parents[3]


@pytest.fixture()
def copy_of(tmp_path: Path):
    """Copy a folder into tmp_path (to damage it without touching the original)."""

    def _copy(source: Path, name: str = "copy") -> Path:
        target = tmp_path / name
        shutil.copytree(source, target)
        return target

    return _copy


ANCHORS_DIR_ENV_VAR = "LENS_EMBED_ANCHORS_DIR"


@pytest.fixture(scope="session")
def anchors_dir() -> Path:
    """The shared reference anchors folder: $LENS_EMBED_ANCHORS_DIR, else <repo>/../shared/anchors (CI has
    it), else beside the offline data folder."""
    import os

    from lens_embed.evaluation.data import REPO_ROOT

    candidates = [os.environ.get(ANCHORS_DIR_ENV_VAR), REPO_ROOT.parent / "shared" / "anchors"]
    try:
        candidates.append(resolve_data_dir().parent / "anchors")
    except DataDirError:
        pass
    for candidate in filter(None, candidates):
        if Path(candidate).is_dir():
            return Path(candidate)
    pytest.skip(f"reference anchors not found (set {ANCHORS_DIR_ENV_VAR})")


@pytest.fixture(scope="session", params=["legacyTrue", "legacyFalse"])
def converted_mistral(
    request, anchors_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    """(variant, folder): a converted tiny checkpoint with the real Mistral tokenizer (both legacy
    variants)."""
    from lens_embed.models.convert import convert_checkpoint

    root = tmp_path_factory.mktemp(f"mistral-{request.param}")
    source = write_released_checkpoint(
        root / "released", anchors_dir / "mistral_tokenizer" / f"released_like_{request.param}"
    )
    convert_checkpoint(source, root / "converted")
    return request.param, root / "converted"


class BackboneRecorder:
    """Records the token ids of every row that reaches a model's backbone (padding removed)."""

    def __init__(self, model) -> None:
        self.rows: list[list[int]] = []
        backbone = model[0].auto_model
        forward = backbone.forward  # sentence-transformers calls the method itself (no module hooks run)

        def recording_forward(*args, **kwargs):
            ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
            self.rows += [row[keep.bool()].tolist() for row, keep in zip(ids, mask, strict=True)]
            return forward(*args, **kwargs)

        backbone.forward = recording_forward

    def take(self) -> list[list[int]]:
        rows, self.rows = self.rows, []
        return rows


@pytest.fixture()
def recorded():
    """Load a model folder with a backbone recorder attached: ``model, recorder = recorded(path)``."""

    def _load(path: Path, **kwargs):
        from lens_embed.models.loading import load_lens_model

        model = load_lens_model(path, device="cpu", **kwargs)
        return model, BackboneRecorder(model)

    return _load
