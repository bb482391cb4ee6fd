"""Which instruction each task side gets: the LENS authors' map (default), mteb's prompts, or a file.

The authors' rule (their mteb evaluation, which produced the published scores): the query-side
instruction is the task's entry in their map (the first element of a ``[query, document]`` pair),
else the default of the task's type, with a final "." appended when missing. Documents of
retrieval and reranking tasks are embedded as plain text; every other task type embeds both sides
as instructed queries with that same instruction. The map ships as package data
(``reference/authors_task_instructions.json``, provenance in ``reference/PROVENANCE.md``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
AUTHORS_MAP = REFERENCE_DIR / "authors_task_instructions.json"
CHOICES = ("authors", "mteb")
# Task types whose documents are plain text; every other type is instructed on both sides.
ASYMMETRIC_TASK_TYPES = frozenset({"Retrieval", "Reranking", "InstructionRetrieval", "InstructionReranking"})


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


def sided(instruction: str, task_type: str) -> TaskInstruction:
    """One instruction applied by the protocol: documents plain for retrieval/reranking, else instructed."""
    return TaskInstruction(query=instruction, document=instruction if embeds_as_query(task_type, True) else None)


def authors_rule(entry: str | list[str] | None, default: str, task_type: str) -> TaskInstruction:
    """The authors' rule for one task: entry (first of a pair) or the type default, "." appended."""
    text = entry[0] if isinstance(entry, list) else entry
    text = text if text else default
    return sided(text if text.endswith(".") else text + ".", task_type)


@dataclass(frozen=True)
class Instructions:
    """An instruction source for LENS models in mteb: ``authors``, ``mteb`` or a JSON file.

    ``describe()`` is what gets recorded with the results.
    """

    source: str
    tasks: dict[str, Any] = field(default_factory=dict)
    defaults_by_type: dict[str, str] = field(default_factory=dict)
    resolved: bool = False  # a file of ``{task: {"query": ..., "document": ...}}``, used verbatim
    sha256: str | None = None

    def describe(self) -> dict[str, str | None]:
        return {"instructions": self.source, "instructions_sha256": self.sha256}

    def for_task(self, metadata: TaskMetadata) -> TaskInstruction:
        """Both sides' instructions for the task being run (``metadata`` is mteb's, local).

        The ``mteb`` source is resolved by the encoder (mteb's prompt lookup is an encoder method).
        """
        if self.source == "mteb":
            raise InstructionError("mteb's task prompts are looked up by the encoder, not by Instructions")
        if self.resolved:
            if metadata.name not in self.tasks:
                raise InstructionError(f"{self.source} has no instruction for task {metadata.name!r}")
            entry = self.tasks[metadata.name]
            return TaskInstruction(query=entry["query"], document=entry.get("document"))
        default = self.defaults_by_type.get(metadata.type)
        if metadata.name not in self.tasks and default is None:
            raise InstructionError(
                f"{self.source}: no instruction for task {metadata.name!r} and no default for its type "
                f"{metadata.type!r}; use --instructions mteb or a file that covers it"
            )
        return authors_rule(self.tasks.get(metadata.name), default or "", metadata.type)


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
        return Instructions(source, dict(data.get("tasks", {})), dict(data.get("defaults_by_type", {})), sha256=sha)
    for task, entry in data.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("query"), str)
                and isinstance(entry.get("document"), (str, type(None)))):
            raise InstructionError(
                f"{path}: task {task!r} must map to {{\"query\": str, \"document\": str or null}} "
                "(or use the authors' format with 'tasks' and 'defaults_by_type')"
            )
    return Instructions(source, data, resolved=True, sha256=sha)
