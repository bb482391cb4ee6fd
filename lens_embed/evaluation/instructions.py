"""Which instruction each task side gets: the LENS authors' map (default), mteb's prompts, or a file.

A source becomes mteb's own data: the ``prompts_dict`` of mteb's ``InstructSentenceTransformerModel``
(task name or task type -> instruction), which mteb's own lookup applies (``AbsEncoder.get_instruction``:
the task's entry, else its type's, else the task's own prompt) with ``apply_instruction_to_passages=True``,
in evaluation (:class:`lens_embed.evaluation.encoders.LoadedModelEncoder`) and in a submission kit's
registry entry alike. A task whose documents are plain gets mteb's per-side form,
``{"query": instruction, "document": ""}`` (as mteb's registry writes it for other instruction models),
so mteb embeds its queries instructed and its documents as they are.

The authors' rule (their mteb evaluation, which produced the published scores): the query-side
instruction is the task's entry in their map (the first element of a ``[query, document]`` pair),
else the default of the task's type, with a final "." appended when missing; it is applied once,
when the map is read. Documents of retrieval and reranking tasks are embedded as plain text; every
other task type embeds both sides as instructed queries with that same instruction
(:func:`embeds_as_query`, the one task-to-side rule). The map ships as package data
(``reference/authors_task_instructions.json``, provenance in ``reference/PROVENANCE.md``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import mteb
from mteb.abstasks import AbsTask
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.types import PromptType

from lens_embed.base.prompts import query_prompt

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
AUTHORS_MAP = REFERENCE_DIR / "authors_task_instructions.json"
CHOICES = ("authors", "mteb")
# Task types whose documents are plain text; every other type is instructed on both sides.
ASYMMETRIC_TASK_TYPES = frozenset({"Retrieval", "Reranking", "InstructionRetrieval", "InstructionReranking"})
# mteb's ``instruction_template``: an instruction becomes the LENS query prompt (a prompt ending in <query>,
# which makes sentence-transformers' plain ``encode(texts, prompt=...)`` embed LENS queries).
LENS_INSTRUCTION_TEMPLATE = query_prompt("{instruction}")

Prompt = str | dict[str, str]
"""One ``prompts_dict`` value: an instruction for every side, or mteb's per-side form."""


class InstructionError(ValueError):
    """An instruction source that cannot be read, or a task it has no instruction for."""


def embeds_as_query(task_type: str, document_side: bool) -> bool:
    """Whether a text of this task type and side is an instructed query (else a plain document)."""
    return not (document_side and task_type in ASYMMETRIC_TASK_TYPES)


@dataclass(frozen=True)
class Instructions:
    """An instruction source for LENS models in mteb; ``describe()`` is what gets recorded with the results.

    Attributes:
        source: ``authors``, ``mteb`` or the resolved path of a file.
        prompts: mteb's ``prompts_dict`` (task name or task type -> :data:`Prompt`).
        fallback: what a task without an entry of its name gets: ``type`` (its type's entry),
            ``none`` (nothing: a resolved file must name every task it is used on), ``mteb`` (mteb's own
            task prompt, as mteb's lookup gives it).
        sha256: of the file read.
    """

    source: str
    prompts: dict[str, Prompt]
    fallback: Literal["type", "none", "mteb"] = "type"
    sha256: str | None = None

    def describe(self) -> dict[str, str | None]:
        return {"instructions": self.source, "instructions_sha256": self.sha256}

    def missing(self, metadata: TaskMetadata) -> str | None:
        """Why this source has no instruction for the task; None when it has one (mteb's prompts always
        do)."""
        if self.fallback == "mteb" or metadata.name in self.prompts:
            return None
        if self.fallback == "none":
            return f"{self.source} has no instruction for task {metadata.name!r}"
        if metadata.type in self.prompts:
            return None
        return (
            f"{self.source}: no instruction for task {metadata.name!r} and no default for its type "
            f"{metadata.type!r}; use --instructions mteb or a file that covers it"
        )

    def entries(self, tasks: list[TaskMetadata]) -> dict[str, Prompt]:
        """A registry entry's ``prompts_dict``: each of these tasks under its name with the entry mteb's
        lookup takes for it here (the task's, else its type's), and the retrieval-type types' entries, which
        keep the documents of every other retrieval task plain. mteb's lookup then gives these tasks what
        this source gives them."""
        named = {
            metadata.name: self.prompts.get(metadata.name, self.prompts.get(metadata.type))
            for metadata in tasks
        }
        retrieval = {key: self.prompts[key] for key in sorted(ASYMMETRIC_TASK_TYPES) if key in self.prompts}
        return {**{name: entry for name, entry in named.items() if entry is not None}, **retrieval}


def prompt_entry(query: str, document: str | None, task: AbsTask | None = None) -> Prompt:
    """The ``prompts_dict`` value of a task (or task type) whose queries get ``query`` and whose documents
    get ``document`` (None: plain text).

    One instruction for both sides is a string: mteb then instructs every text of the task, whatever its
    prompt type. Other documents take mteb's per-side form, which mteb reads only where it names the side of
    every text: retrieval tasks, and the pair tasks that declare both inputs' sides (e.g. TERRa.V2). A task
    whose texts have no side (mteb passes none: STS12, classification) embeds every text as a query, so
    its document instruction is never asked for and its entry is the query's.
    """
    if document == query:
        return query
    if task is not None and not isinstance(task, AbsTaskRetrieval):
        declared = (getattr(task, "input1_prompt_type", None), getattr(task, "input2_prompt_type", None))
        if None in declared:
            return query
    return {PromptType.query.value: query, PromptType.document.value: document or ""}


@cache
def registry_tasks() -> Mapping[str, AbsTask]:
    """mteb's every task by name (its local registry: no network)."""
    tasks = mteb.get_tasks(exclude_superseded=False, exclude_private=False)
    return {task.metadata.name: task for task in tasks}


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


def _rule_entry(instruction: str, task_type: str | None, task: AbsTask | None = None) -> Prompt:
    """The entry of a task or type under the authors' rule: documents plain for retrieval-type types,
    instructed like the queries elsewhere (and where the type is unknown)."""
    document_as_query = task_type is None or embeds_as_query(task_type, document_side=True)
    return prompt_entry(instruction, instruction if document_as_query else None, task)


def _authors_prompts(path: Path, data: dict[str, Any]) -> dict[str, Prompt]:
    """The authors' rule applied to a map in their format: mteb's prompts_dict of task and type entries.

    An empty task entry is left out, so mteb's lookup falls through to the task type's default."""
    tasks, defaults = data.get("tasks", {}), data.get("defaults_by_type", {})
    if not isinstance(tasks, dict) or not isinstance(defaults, dict):
        raise InstructionError(f"{path}: 'tasks' and 'defaults_by_type' must be JSON objects")
    prompts: dict[str, Prompt] = {}
    for task_type, default in defaults.items():
        if not isinstance(default, str):
            raise InstructionError(f"{path}: the default of type {task_type!r} must be a string")
        prompts[task_type] = _rule_entry(_with_period(default), task_type)
    known = registry_tasks()
    for name, entry in tasks.items():
        text = entry[0] if isinstance(entry, list) and entry else entry
        if not isinstance(text, str):
            raise InstructionError(
                f"{path}: task {name!r} must map to a string or a [query, document] pair of strings"
            )
        if text:
            task = known.get(name)
            prompts[name] = _rule_entry(_with_period(text), task.metadata.type if task else None, task)
    return prompts


def _mteb_prompts() -> dict[str, Prompt]:
    """mteb's own task prompts under the side rule: each task's query instruction as mteb's lookup finds it
    (its metadata prompt, else its task class's ``abstask_prompt``), documents plain for retrieval-type
    tasks; a local task of those types gets the retrieval class's prompt, as mteb gives it."""
    prompts: dict[str, Prompt] = {
        task_type: _rule_entry(AbsTaskRetrieval.abstask_prompt, task_type)
        for task_type in sorted(ASYMMETRIC_TASK_TYPES)
    }
    for name, task in registry_tasks().items():
        prompt = task.metadata.prompt
        own = prompt.get(PromptType.query.value, "") if isinstance(prompt, dict) else prompt
        prompts[name] = _rule_entry(own or getattr(task, "abstask_prompt", ""), task.metadata.type, task)
    return prompts


def _resolved_prompts(path: Path, data: dict[str, Any]) -> dict[str, Prompt]:
    """A resolved file (``{task: {"query": str, "document": str | null}}``), each side verbatim."""
    known = registry_tasks()
    prompts: dict[str, Prompt] = {}
    for name, entry in data.items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("query"), str)
            and entry["query"]
            and isinstance(entry.get("document"), (str, type(None)))
        ):
            raise InstructionError(
                f'{path}: task {name!r} must map to {{"query": non-empty str, "document": str or null}} '
                "(or use the authors' format with 'tasks' and 'defaults_by_type')"
            )
        prompts[name] = prompt_entry(entry["query"], entry.get("document"), known.get(name))
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
        return Instructions(source="mteb", prompts=_mteb_prompts(), fallback="mteb")
    path = AUTHORS_MAP if spec == "authors" else Path(spec).expanduser()
    data, sha = _read_map(path)
    source = "authors" if spec == "authors" else str(path.resolve())
    if "tasks" in data or "defaults_by_type" in data:
        return Instructions(source, _authors_prompts(path, data), sha256=sha)
    return Instructions(source, _resolved_prompts(path, data), fallback="none", sha256=sha)
