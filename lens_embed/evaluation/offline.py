"""mteb tasks that read the real local data in ``<data>/{sts,classification,retrieval}/<Task>/``.

Only data loading differs from mteb: each task is a subclass of the installed mteb's own task
class (``AbsTaskSTS``, ``AbsTaskClassification``, ``AbsTaskRetrieval`` or, when mteb knows the task
by name, that task's registered class and metadata), so splits, metrics, undersampling seeds and
evaluators are mteb's, and a score means what it means on the leaderboard. Tasks are discovered
from the folders: a new folder in the same layout runs with no code change.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import mteb
from datasets import Dataset, DatasetDict
from mteb.abstasks import AbsTask
from mteb.abstasks.classification import AbsTaskClassification
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata

from lens_embed.base.inputs import json_lines
from lens_embed.evaluation.data import CATEGORIES, resolve_data_dir

# category folder -> (mteb base class, mteb task type, task category, main score, files per split)
_CATEGORY_SPECS: dict[str, tuple[type[AbsTask], str, str, str]] = {
    "sts": (AbsTaskSTS, "STS", "t2t", "cosine_spearman"),
    "classification": (AbsTaskClassification, "Classification", "t2c", "accuracy"),
    "retrieval": (AbsTaskRetrieval, "Retrieval", "t2t", "ndcg_at_10"),
}


class UnknownTaskError(ValueError):
    """A requested task name is neither a local data folder nor an mteb task."""


class EmptyTaskError(ValueError):
    """A task has nothing to evaluate (an empty file, no relevance judgement, no judged query): named
    here, where mteb would fail later on a missing column, naming neither file nor task."""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All rows of a JSON-lines file, in file order (order matters: mteb's undersampling is seeded).

    Raises:
        ValueError: bad UTF-8 or JSON (file and line named), or a file with no rows.
    """
    rows = [row for _, row in json_lines(path)]
    if not rows:
        raise EmptyTaskError(
            f"{path}: no rows (an empty file leaves task {path.parent.name} nothing to evaluate)"
        )
    return rows


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """BEIR qrels TSV (header ``query-id corpus-id score``) as mteb's ``relevant_docs`` mapping."""
    relevant: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise ValueError(f"{path}: expected a header line 'query-id<TAB>corpus-id<TAB>score'")
        for row in reader:
            if not row:
                continue
            try:
                relevant.setdefault(str(row[0]), {})[str(row[1])] = int(row[2])
            except (IndexError, ValueError):
                raise ValueError(
                    f"{path}:{reader.line_num}: expected query-id<TAB>corpus-id<TAB>integer score"
                ) from None
    if not relevant:
        raise EmptyTaskError(
            f"{path}: no relevance judgements (task {path.parent.parent.name} has nothing to evaluate)"
        )
    return relevant


def _required_files(category: str, splits: Sequence[str]) -> list[str]:
    """The files a task folder of this category must hold (relative paths)."""
    if category == "sts":
        return [f"{split}.jsonl" for split in splits]
    if category == "classification":
        return ["train.jsonl", *[f"{split}.jsonl" for split in splits]]
    return ["corpus.jsonl", "queries.jsonl", *[f"qrels/{split}.tsv" for split in splits]]


def _registered_task(name: str, task_type: str) -> AbsTask | None:
    """mteb's own task of that name when it exists with the same type (reused for exactness)."""
    try:
        task = mteb.get_task(name)
    except (KeyError, ValueError):
        return None
    return task if task.metadata.type == task_type else None


def _local_metadata(name: str, category: str, folder: Path) -> TaskMetadata:
    """Metadata for a folder mteb does not know: mteb's defaults for that task type."""
    _, task_type, task_category, main_score = _CATEGORY_SPECS[category]
    return TaskMetadata(
        name=name,
        description=f"Local {task_type} task read from {folder}.",
        reference=None,
        dataset={"path": str(folder), "revision": "local"},
        type=task_type,
        category=task_category,
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score=main_score,
        date=None,
        domains=None,
        task_subtypes=None,
        license=None,
        annotations_creators=None,
        dialect=None,
        sample_creation=None,
        bibtex_citation=None,
    )


def _load_sts(self: AbsTaskSTS) -> DatasetDict:
    return DatasetDict(
        {
            split: Dataset.from_list(read_jsonl(self.data_folder / f"{split}.jsonl"))
            for split in self.eval_splits
        }
    )


def _load_classification(self: AbsTaskClassification) -> DatasetDict:
    splits = dict.fromkeys([self.train_split, *self.eval_splits])
    return DatasetDict(
        {split: Dataset.from_list(read_jsonl(self.data_folder / f"{split}.jsonl")) for split in splits}
    )


def _load_retrieval(self: AbsTaskRetrieval) -> dict[str, dict[str, Any]]:
    corpus = Dataset.from_list(
        [
            {"id": str(row["_id"]), "title": row.get("title") or "", "text": row["text"]}
            for row in read_jsonl(self.data_folder / "corpus.jsonl")
        ]
    )
    queries = [
        {"id": str(row["_id"]), "text": row["text"]} for row in read_jsonl(self.data_folder / "queries.jsonl")
    ]
    return {
        "default": {
            split: _retrieval_split(corpus, queries, self.data_folder, split) for split in self.eval_splits
        }
    }


def _retrieval_split(
    corpus: Dataset, queries: list[dict[str, str]], folder: Path, split: str
) -> dict[str, Any]:
    """One split as mteb holds it; a BEIR queries file spans all splits, mteb's copy only the split's own."""
    qrels = folder / "qrels" / f"{split}.tsv"
    relevant = read_qrels(qrels)
    judged = [q for q in queries if q["id"] in relevant]
    if not judged:
        raise EmptyTaskError(f"{folder}: no query of queries.jsonl is judged in {qrels.relative_to(folder)}")
    return {
        "corpus": corpus,
        "queries": Dataset.from_list(judged),
        "relevant_docs": relevant,
        "top_ranked": None,
    }


_LOADERS = {"sts": _load_sts, "classification": _load_classification, "retrieval": _load_retrieval}


def _offline_load_data(self: AbsTask, num_proc: int | None = None, **kwargs: Any) -> None:
    """Replaces the hub download; the task's own ``dataset_transform`` still runs, as in mteb."""
    if self.data_loaded:
        return
    self.dataset = _LOADERS[self.data_category](self)
    self.dataset_transform(num_proc=num_proc)
    self.data_loaded = True


def make_offline_task(category: str, folder: Path) -> AbsTask:
    """One mteb task instance reading ``folder``; mteb's registered class when it knows the name."""
    if category not in _CATEGORY_SPECS:
        raise ValueError(f"Unknown task category {category!r}; expected one of {', '.join(CATEGORIES)}")
    base, task_type, _, _ = _CATEGORY_SPECS[category]
    registered = _registered_task(folder.name, task_type)
    task_class = type(registered) if registered is not None else base
    metadata = (
        registered.metadata if registered is not None else _local_metadata(folder.name, category, folder)
    )
    missing = [f for f in _required_files(category, metadata.eval_splits) if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Task folder {folder} lacks {', '.join(missing)} (layout: shared/data/README.md)"
        )
    offline_class = type(
        f"Offline{task_class.__name__}",
        (task_class,),
        {
            "metadata": metadata,
            "data_folder": folder,
            "data_category": category,
            "load_data": _offline_load_data,
            "__doc__": f"{metadata.name} read from {folder} (mteb class {task_class.__name__}).",
        },
    )
    return offline_class()


def discover_task_folders(data_dir: Path) -> dict[str, tuple[str, Path]]:
    """``{task name: (category, folder)}`` for every task folder under the data folder."""
    found: dict[str, tuple[str, Path]] = {}
    for category in CATEGORIES:
        root = data_dir / category
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            found[folder.name] = (category, folder)
    return found


def offline_tasks(
    data_dir: str | Path | None = None,
    names: Iterable[str] | None = None,
    categories: Iterable[str] | None = None,
) -> list[AbsTask]:
    """The offline suite (or the named part of it), as mteb task objects ready for ``mteb.evaluate``."""
    root = resolve_data_dir(data_dir)
    folders = discover_task_folders(root)
    wanted_categories = set(categories) if categories is not None else set(CATEGORIES)
    unknown_categories = wanted_categories - set(CATEGORIES)
    if unknown_categories:
        raise ValueError(
            f"Unknown categories {sorted(unknown_categories)}; expected some of {list(CATEGORIES)}"
        )
    if names is None:
        selected = [name for name, (category, _) in folders.items() if category in wanted_categories]
    else:
        selected = list(names)
        unknown = [name for name in selected if name not in folders]
        if unknown:
            raise UnknownTaskError(
                f"Unknown offline task(s) {unknown}: not found under {root}. Available: {sorted(folders)}"
            )
    return [make_offline_task(*folders[name]) for name in selected]
