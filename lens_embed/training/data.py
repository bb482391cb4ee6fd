"""Training data: reading, validating and grouping contrastive examples.

The input shape is the authors' (and bge-full-data's): one JSON object per line with ``query``,
``pos`` (list), ``neg`` (list, may be empty), ``type`` and ``prompt`` (the instruction), plus the
optional teacher scores ``pos_scores`` / ``neg_scores``. Every file (or Hugging Face dataset) is one
*task*: batches never mix tasks, because the task decides how the loss treats the batch (whether
other queries' documents are negatives) and how texts are instructed.

A row becomes one training *group*: the instructed query, one positive and ``group_size - 1``
negatives, stored as the sentence-transformers columns ``query, positive, negative_1, ...`` so that
the stock trainer, collator and samplers handle it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from lens_embed.base.inputs import json_lines
from lens_embed.base.prompts import query_prompt
from lens_embed.base.storage import atomic_write

REQUIRED_FIELDS = ("query", "pos", "neg", "type", "prompt")
SCORE_COLUMN = "scores"


class TrainingDataError(ValueError):
    """A training row (or file) is unusable; the message names the file and line."""


@dataclass(frozen=True)
class TaskSpec:
    """How one task type is trained, read off its type string as the authors' code does.

    ``symmetric``: the type contains ``symmetric``; such tasks use the symmetric batch size.
    ``in_batch_negatives``: other queries' documents count as negatives; off for symmetric
    classification and clustering, where another query's positive is often the same label.
    ``instructed_documents``: documents carry the instruction too (``sts`` or ``clustering`` in the
    type); classification and retrieval documents stay plain.
    ``max_group_size``: a cap on 1 + negatives (``only_1neg`` data has exactly one negative).
    """

    symmetric: bool
    in_batch_negatives: bool
    instructed_documents: bool
    max_group_size: int | None = None


# Substrings a type string is matched by (bge-full-data writes e.g. ``normal``, ``only_1neg``,
# ``symmetric_sts``, ``symmetric_class``, ``symmetric_clustering``); ``retrieval`` is this project's.
TYPE_KEYWORDS = ("normal", "retrieval", "only_1neg", "symmetric", "sts", "clustering", "class", "paraphrase")


@dataclass
class TaskData:
    """The validated rows of one task (one file or dataset) and how it is trained."""

    name: str
    rows: list[dict[str, Any]]
    spec: TaskSpec
    task_type: str
    path: Path | None = None
    """The jsonl file the rows were read from (None for a dataset), so no writer replaces its own input."""


def task_spec(task_type: str, document_instructions: str = "sts-clustering") -> TaskSpec:
    """The :class:`TaskSpec` of a type string, by substring as in the authors' data loader.

    Args:
        task_type: the ``type`` field of a row (e.g. ``symmetric_sts``).
        document_instructions: ``sts-clustering`` (the authors': only STS and clustering documents
            are instructed) or ``symmetric`` (every symmetric type's documents are).
    """
    if not any(keyword in task_type for keyword in TYPE_KEYWORDS):
        raise TrainingDataError(
            f"unknown type {task_type!r}; a type must contain one of {', '.join(TYPE_KEYWORDS)}"
        )
    symmetric = "symmetric" in task_type
    grouped_labels = "class" in task_type or "clustering" in task_type
    if document_instructions == "symmetric":
        instructed = symmetric
    else:
        instructed = "sts" in task_type or "clustering" in task_type
    return TaskSpec(
        symmetric=symmetric,
        in_batch_negatives=not (symmetric and grouped_labels),
        instructed_documents=instructed,
        max_group_size=2 if "only_1neg" in task_type else None,
    )


def _check_text_list(row: dict[str, Any], field: str, allow_empty: bool) -> None:
    """``pos``/``neg`` must be lists of non-empty strings (``pos`` also non-empty itself)."""
    value = row[field]
    if not isinstance(value, list):
        raise TrainingDataError(f"field {field!r} must be a list of strings, got {type(value).__name__}")
    if not value and not allow_empty:
        raise TrainingDataError(f"field {field!r} is empty: every query needs at least one positive")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise TrainingDataError(f"field {field!r} holds {item!r}; every entry must be a non-empty string")


def _check_scores(row: dict[str, Any], scores_field: str, texts_field: str) -> None:
    """Teacher scores, when present, must be one number per text."""
    scores = row.get(scores_field)
    if scores is None:
        return
    if not isinstance(scores, list) or len(scores) != len(row[texts_field]):
        raise TrainingDataError(
            f"field {scores_field!r} must be a list with one score per entry of {texts_field!r}"
        )
    if not all(isinstance(score, (int, float)) and not isinstance(score, bool) for score in scores):
        raise TrainingDataError(f"field {scores_field!r} must hold numbers only")
    if not all(math.isfinite(score) for score in scores):
        raise TrainingDataError(
            f"field {scores_field!r} holds a non-finite score (NaN or infinity): {scores}"
        )


def validate_row(row: Any) -> dict[str, Any]:
    """Check one row's fields and types; return it with ``type`` resolved. Raises TrainingDataError."""
    if not isinstance(row, dict):
        raise TrainingDataError(f"expected a JSON object, got {type(row).__name__}")
    missing = [field for field in REQUIRED_FIELDS if field not in row]
    if missing:
        raise TrainingDataError(f"missing field(s) {', '.join(missing)}")
    for field in ("query", "prompt", "type"):
        if not isinstance(row[field], str):
            raise TrainingDataError(f"field {field!r} must be a string, got {type(row[field]).__name__}")
    if not row["query"].strip():
        raise TrainingDataError("field 'query' is empty")
    task_spec(row["type"])
    _check_text_list(row, "pos", allow_empty=False)
    _check_text_list(row, "neg", allow_empty=True)
    _check_scores(row, "pos_scores", "pos")
    _check_scores(row, "neg_scores", "neg")
    return row


def validate_rows(rows: Iterable[Any], source: str) -> list[dict[str, Any]]:
    """Validate in-memory rows (e.g. a ``datasets.Dataset``); errors name the 0-based row index."""
    return _validate_labelled(((f"{source}: row {index}", row) for index, row in enumerate(rows)), source)


def _validate_labelled(labelled: Iterable[tuple[str, Any]], source: str) -> list[dict[str, Any]]:
    """Validate ``(where, row)`` pairs; the first bad row raises with its ``where`` label."""
    checked = []
    for where, row in labelled:
        try:
            checked.append(validate_row(row))
        except TrainingDataError as error:
            raise TrainingDataError(f"{where}: {error}") from None
    if not checked:
        raise TrainingDataError(f"{source}: no training rows")
    return checked


def read_training_rows(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a jsonl file; blank lines are skipped, bad UTF-8 or JSON names its line."""
    path = Path(path)
    if not path.is_file():
        raise TrainingDataError(f"{path}: no such file")
    try:
        numbered = list(json_lines(path))
    except ValueError as error:  # not UTF-8 or not JSON: the message names the file and line
        raise TrainingDataError(str(error)) from None
    return _validate_labelled(((f"{path}:{number}", row) for number, row in numbered), str(path))


def _single_type(rows: list[dict[str, Any]], source: str) -> str:
    """A task is one file; its rows must be trained alike (one :class:`TaskSpec`), because the
    batch's first type decides the loss, as in the authors' code. Returns the first row's type."""
    types = sorted({row["type"] for row in rows})
    if len({task_spec(task_type) for task_type in types}) != 1:
        raise TrainingDataError(
            f"{source}: rows mix types {types} that train differently; split them into one file per type"
        )
    return rows[0]["type"]


def task_from_rows(name: str, rows: list[dict[str, Any]], source: str | None = None) -> TaskData:
    """Wrap validated rows as one task."""
    task_type = _single_type(rows, source or name)
    return TaskData(name=name, rows=rows, spec=task_spec(task_type), task_type=task_type)


def _hf_rows(dataset: Any, source: str) -> list[dict[str, Any]]:
    """Rows of a Hugging Face ``datasets.Dataset``, validated with their row index as 'line'."""
    return validate_rows((dict(row) for row in dataset), source=source)


def load_task(source: str | Path | Any, name: str | None = None) -> list[TaskData]:
    """Load a source: a jsonl file, a folder of jsonl files, a ``datasets`` folder saved with
    ``save_to_disk``, ``hf:NAME[:SPLIT]`` (``datasets.load_dataset``), or a ``datasets.Dataset``."""
    import datasets

    if isinstance(source, datasets.Dataset):
        label = name or "dataset"
        return [task_from_rows(label, _hf_rows(source, label))]
    if isinstance(source, datasets.DatasetDict):
        return [task_from_rows(split, _hf_rows(part, split)) for split, part in source.items()]
    text = str(source)
    if text.startswith("hf:"):
        dataset_name, _, split = text[3:].partition(":")
        try:
            loaded = datasets.load_dataset(dataset_name, split=split or None)
        except RuntimeError as error:  # datasets' refusal of a loading script (never run), among others
            raise TrainingDataError(f"{text}: datasets cannot load it ({error})") from None
        return load_task(loaded, name=name or dataset_name.replace("/", "_"))
    path = Path(text)
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        return load_task(datasets.load_from_disk(str(path)), name=name or path.name)
    if path.is_dir():
        files = sorted(path.rglob("*.jsonl"))
        if not files:
            raise TrainingDataError(f"{path}: folder holds no *.jsonl files")
        return [
            task
            for file in files
            for task in load_task(file, name=file.relative_to(path).with_suffix("").as_posix())
        ]
    task = task_from_rows(name or path.stem, read_training_rows(path), source=str(path))
    return [dataclasses.replace(task, path=path)]


def load_tasks(sources: Sequence[str | Path | Any]) -> list[TaskData]:
    """Load every source; task names must be unique because batches and losses are keyed by them."""
    tasks = [task for source in sources for task in load_task(source)]
    names = [task.name for task in tasks]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TrainingDataError(
            f"two training sources share the name(s) {duplicates}; rename one of the files"
        )
    return tasks


def negative_columns(group_size: int) -> list[str]:
    """Column names of the hard negatives: ``negative_1 .. negative_{group_size-1}``."""
    return [f"negative_{index}" for index in range(1, group_size)]


def effective_group_size(spec: TaskSpec, group_size: int) -> int:
    """The group size of a task: the requested one, capped by the type (``only_1neg`` -> 2)."""
    if group_size < 2:
        raise ValueError(f"group_size must be at least 2 (one positive and one negative), got {group_size}")
    return min(group_size, spec.max_group_size or group_size)


def sample_negatives(negatives: list[str], count: int, rng: random.Random) -> list[int]:
    """Indices of ``count`` negatives: without replacement when enough exist, else cycling with
    replacement (the authors' rule), so every group has the same number of columns."""
    if not negatives:
        raise TrainingDataError("a row has no negatives; mine them first (lens-embed mine-negatives)")
    if len(negatives) >= count:
        return rng.sample(range(len(negatives)), count)
    repeats = -(-count // len(negatives))
    return rng.sample(list(range(len(negatives))) * repeats, count)


def instruct(text: str, instruction: str) -> str:
    """A text in the LENS query format: ``<instruct>{instruction}\\n<query>{text}``."""
    return query_prompt(instruction) + text


def build_group(
    row: dict[str, Any], spec: TaskSpec, group_size: int, rng: random.Random, with_scores: bool
) -> dict[str, Any]:
    """One training group: instructed query, one sampled positive, ``group_size - 1`` negatives
    (instructed too where ``spec.instructed_documents``) and, when asked, the teacher scores in
    the same order."""
    pos_index = rng.randrange(len(row["pos"]))
    neg_indices = sample_negatives(row["neg"], group_size - 1, rng)
    documents = [row["pos"][pos_index]] + [row["neg"][index] for index in neg_indices]
    if spec.instructed_documents:
        documents = [instruct(document, row["prompt"]) for document in documents]
    group = {"query": instruct(row["query"], row["prompt"]), "positive": documents[0]}
    group.update(dict(zip(negative_columns(group_size), documents[1:], strict=True)))
    if with_scores:
        group[SCORE_COLUMN] = [float(row["pos_scores"][pos_index])] + [
            float(row["neg_scores"][index]) for index in neg_indices
        ]
    return group


def has_teacher_scores(rows: list[dict[str, Any]]) -> bool:
    """Distillation needs scores on every row; a task with only some scored rows trains without."""
    return all(row.get("pos_scores") is not None and row.get("neg_scores") is not None for row in rows)


def build_task_dataset(
    task: TaskData, group_size: int, seed: int, spec: TaskSpec | None = None, with_scores: bool | None = None
) -> Any:
    """The ``datasets.Dataset`` of one task's groups. Sampling is seeded per task so that every
    process of a distributed run (and a resumed run) builds the identical dataset.

    Args:
        task: the task's rows.
        group_size: requested group size (capped by the type, see :func:`effective_group_size`).
        seed: the run's seed.
        spec: how to train it (default: ``task.spec``, the authors' reading of its type).
        with_scores: add the teacher ``scores`` column (default: when every row has scores).
    """
    import datasets

    spec = spec or task.spec
    size = effective_group_size(spec, group_size)
    rng = random.Random(f"{seed}:{task.name}")
    if with_scores is None:
        with_scores = has_teacher_scores(task.rows)
    groups = [build_group(row, spec, size, rng, with_scores) for row in task.rows]
    columns = ["query", "positive", *negative_columns(size)] + ([SCORE_COLUMN] if with_scores else [])
    return datasets.Dataset.from_dict({column: [group[column] for group in groups] for column in columns})


def rows_without_negatives(tasks: Sequence[TaskData]) -> int:
    """How many rows still need mined negatives."""
    return sum(1 for task in tasks for row in task.rows if not row["neg"])


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as jsonl (UTF-8, one object a line) atomically: the file is whole or not there (an
    existing one is kept) even when the disk fills or the process dies mid-write."""

    def write(stream: BinaryIO) -> None:
        for row in rows:
            stream.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))

    return atomic_write(path, write)
