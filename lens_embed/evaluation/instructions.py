"""Which instruction each task side gets: the LENS authors' map (default), mteb's prompts, or a file.

A source is data in mteb's own format, the ``prompts_dict`` of mteb's ``InstructSentenceTransformerModel``
(task name or task type -> instruction), so mteb's own lookup applies it (``AbsEncoder.get_instruction``:
the task's entry, else its type's, else the task's own prompt), in evaluation
(:class:`lens_embed.evaluation.encoders.LoadedModelEncoder`) and in a submission kit's registry entry alike.

The authors' rule (their mteb evaluation, which produced the published scores): the query-side
instruction is the task's entry in their map (the first element of a ``[query, document]`` pair),
else the default of the task's type, with a final "." appended when missing; it is applied once,
when the map is read. Documents of retrieval and reranking tasks are embedded as plain text; every
other task type embeds both sides as instructed queries with that same instruction
(:func:`embeds_as_query`). The map ships as package data (``reference/authors_task_instructions.json``,
provenance in ``reference/PROVENANCE.md``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lens_embed.prompts import query_prompt

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
AUTHORS_MAP = REFERENCE_DIR / "authors_task_instructions.json"
CHOICES = ("authors", "mteb")
# Task types whose documents are plain text; every other type is instructed on both sides.
ASYMMETRIC_TASK_TYPES = frozenset({"Retrieval", "Reranking", "InstructionRetrieval", "InstructionReranking"})
# mteb's ``instruction_template``: an instruction becomes the LENS query prompt (a prompt ending in <query>).
LENS_INSTRUCTION_TEMPLATE = query_prompt("{instruction}")


class InstructionError(ValueError):
    """An instruction source that cannot be read, or a task it has no instruction for."""


@dataclass(frozen=True)
class TaskInstruction:
    """The instruction of each side of one task; ``document=None`` means plain documents."""

    query: str
    document: str | None


def embeds_as_query(task_type: str, document_side: bool) -> bool:
    """Whether a text of this task type and side is an instructed query (else a plain document)."""
    return not (document_side and task_type in ASYMMETRIC_TASK_TYPES)


@dataclass(frozen=True)
class Instructions:
    """An instruction source for LENS models in mteb; ``describe()`` is what gets recorded with the results.

    Attributes:
        source: ``authors``, ``mteb`` or the resolved path of a file.
        prompts: mteb's ``prompts_dict`` (task name or task type -> query-side instruction); None for
            mteb's own task prompts.
        documents: for a resolved file, each task's document-side instruction, verbatim (None: plain);
            None where the side rule (:func:`embeds_as_query`) decides.
        sha256: of the file read.
    """

    source: str
    prompts: dict[str, str] | None = None
    documents: dict[str, str | None] | None = None
    sha256: str | None = None

    def describe(self) -> dict[str, str | None]:
        return {"instructions": self.source, "instructions_sha256": self.sha256}

    def missing(self, metadata: TaskMetadata) -> str | None:
        """Why this source has no instruction for the task; None when it has one (mteb's prompts always
        do)."""
        if self.prompts is None or metadata.name in self.prompts:
            return None
        if self.documents is not None:
            return f"{self.source} has no instruction for task {metadata.name!r}"
        if metadata.type in self.prompts:
            return None
        return (
            f"{self.source}: no instruction for task {metadata.name!r} and no default for its type "
            f"{metadata.type!r}; use --instructions mteb or a file that covers it"
        )


def _with_period(text: str) -> str:
    return text if text.endswith(".") else text + "."


def _read_map(path: Path) -> tuple[dict[str, Any], str]:
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except FileNotFoundError:
        raise InstructionError(f"instruction file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise InstructionError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(data, dict):
        raise InstructionError(f"{path}: expected a JSON object")
    return data, hashlib.sha256(raw).hexdigest()


def _authors_prompts(path: Path, data: dict[str, Any]) -> dict[str, str]:
    """The authors' rule applied to a map in their format: mteb's prompts_dict of task and type entries.

    An empty task entry is left out, so mteb's lookup falls through to the task type's default."""
    tasks, defaults = data.get("tasks", {}), data.get("defaults_by_type", {})
    if not isinstance(tasks, dict) or not isinstance(defaults, dict):
        raise InstructionError(f"{path}: 'tasks' and 'defaults_by_type' must be JSON objects")
    prompts: dict[str, str] = {}
    for task_type, default in defaults.items():
        if not isinstance(default, str):
            raise InstructionError(f"{path}: the default of type {task_type!r} must be a string")
        prompts[task_type] = _with_period(default)
    for task, entry in tasks.items():
        text = entry[0] if isinstance(entry, list) and entry else entry
        if not isinstance(text, str):
            raise InstructionError(
                f"{path}: task {task!r} must map to a string or a [query, document] pair of strings"
            )
        if text:
            prompts[task] = _with_period(text)
    return prompts


@cache
def load_instructions(spec: str = "authors") -> Instructions:
    """``authors`` (the shipped map), ``mteb`` (mteb's task prompts) or a JSON file path.

    A file is either in the authors' format (``{"defaults_by_type": {...}, "tasks": {...}}``,
    resolved with their rule) or already resolved (``{task: {"query": str, "document": str | null}}``,
    used verbatim).

    Args:
        spec: ``"authors"``, ``"mteb"`` or the path of a JSON file.
    """
    if spec == "mteb":
        return Instructions(source="mteb")
    path = AUTHORS_MAP if spec == "authors" else Path(spec).expanduser()
    data, sha = _read_map(path)
    source = "authors" if spec == "authors" else str(path.resolve())
    if "tasks" in data or "defaults_by_type" in data:
        return Instructions(source, prompts=_authors_prompts(path, data), sha256=sha)
    for task, entry in data.items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("query"), str)
            and entry["query"]
            and isinstance(entry.get("document"), (str, type(None)))
        ):
            raise InstructionError(
                f'{path}: task {task!r} must map to {{"query": non-empty str, "document": str or null}} '
                "(or use the authors' format with 'tasks' and 'defaults_by_type')"
            )
    prompts = {task: entry["query"] for task, entry in data.items()}
    documents = {task: entry.get("document") for task, entry in data.items()}
    return Instructions(source, prompts=prompts, documents=documents, sha256=sha)
