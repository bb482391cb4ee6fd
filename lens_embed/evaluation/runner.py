"""Run several models over a task list into one mteb results folder and one summary.

Results go through mteb's own ``ResultCache``: ``<output>/results/<org__model>/<revision>/<Task>.json``
plus ``model_meta.json`` -- the layout ``mteb run --output-folder`` writes and ``mteb submit`` /
the leaderboard's results repository take. Finished tasks are reused, so a rerun resumes.

Beside them, ``lens_embed_protocol.json`` records how the embeddings were computed (dtype,
instructions, attention, truncation). It is written, atomically, before the first task runs, so
even an interrupted run leaves its protocol behind; a rerun under another protocol, or into a folder
holding results of no recorded protocol, is refused rather than mixed into the same folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mteb
from mteb.abstasks import AbsTask
from mteb.cache import ResultCache
from mteb.models.search_encoder_index.search_indexes.faiss_search_index import FaissSearchIndex

from lens_embed.base.inputs import read_json
from lens_embed.base.storage import atomic_write
from lens_embed.evaluation.encoders import LoadedModelEncoder, PlainModelEncoder
from lens_embed.evaluation.instructions import ASYMMETRIC_TASK_TYPES, InstructionError
from lens_embed.evaluation.results import PROTOCOL_FILE, task_result_files
from lens_embed.evaluation.search import IndexedSearch, ShardedSearch
from lens_embed.evaluation.tasks import leaderboard_score

logger = logging.getLogger(__name__)


@dataclass
class ModelRun:
    """A model to evaluate: a display label, a lazy factory, and the task types it supports."""

    label: str
    factory: Callable[[], Any]
    task_types: frozenset[str] | None = None
    _model: Any = field(default=None, repr=False)

    def supports(self, task: AbsTask) -> bool:
        return self.task_types is None or task.metadata.type in self.task_types

    @property
    def model(self) -> Any:
        """Load on first use (and once), so a run that has no task to do never loads a model."""
        if self._model is None:
            self._model = self.factory()
        return self._model


@dataclass(frozen=True)
class Score:
    """One model's main score (x100) on one task."""

    model: str
    task: str
    task_type: str
    main_score: str
    value: float


def result_cache(output: str | Path) -> ResultCache:
    """mteb's result cache rooted at the OUTPUT folder (created if missing)."""
    root = Path(output).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return ResultCache(root)


def result_folder(output: str | Path, meta: Any, task: AbsTask) -> Path:
    """The folder holding a model's results for a task (``<output>/results/<org__model>/<revision>``)."""
    return result_cache(output).get_task_result_path(task.metadata.name, meta).parent


def _task_groups(
    run: ModelRun,
    tasks: list[AbsTask],
    shard_dir: Path | None,
    shard_size: int,
    search_index: Callable[[Any], Any] | None,
) -> list[tuple[Any, list[AbsTask]]]:
    """(model object, tasks) pairs for one run: retrieval through sharded search and/or the given search
    index when asked, the rest as is."""
    if (shard_dir is None and search_index is None) or not isinstance(
        run.model, (LoadedModelEncoder, PlainModelEncoder)
    ):
        return [(run.model, tasks)]
    factory = search_index or FaissSearchIndex
    searched = [t for t in tasks if t.metadata.type in ASYMMETRIC_TASK_TYPES]
    others = [t for t in tasks if t.metadata.type not in ASYMMETRIC_TASK_TYPES]
    if shard_dir is not None:
        searcher = ShardedSearch(
            run.model, shard_dir / run.model.mteb_model_meta.model_name_as_path(), shard_size, factory
        )
    else:
        searcher = IndexedSearch(run.model, factory)
    return [(model, group) for model, group in ((run.model, others), (searcher, searched)) if group]


def evaluate_runs(
    runs: Sequence[ModelRun],
    tasks: Iterable[AbsTask],
    output: str | Path,
    *,
    batch_size: int = 32,
    overwrite: bool = False,
    shard_dir: str | Path | None = None,
    shard_size: int = 10_000,
    search_index: Callable[[Any], Any] | None = None,
) -> list[Score]:
    """Evaluate every run on the tasks it supports; return the main scores of all of them.

    With ``shard_dir``, encoder runs embed retrieval corpora in resumable shards under it. With
    ``search_index`` (a factory of mteb search indexes, e.g. ``partial(QdrantSearchIndex, target=...)``),
    their retrieval tasks are searched through it instead of mteb's own exact search."""
    cache = result_cache(output)
    tasks = list(tasks)
    by_name = {task.metadata.name: task for task in tasks}
    scores: list[Score] = []
    for run in runs:
        selected = [task for task in tasks if run.supports(task)]
        if not selected:
            continue
        logger.info("Evaluating %s on %d task(s)", run.label, len(selected))
        check_instructions(run.model, selected)
        groups = _task_groups(run, selected, Path(shard_dir) if shard_dir else None, shard_size, search_index)
        # the last group's model: the searcher when there is one, whose protocol adds its index's settings
        record_protocol(cache, groups[-1][0], selected, overwrite)
        for model, group in groups:
            result = mteb.evaluate(
                model,
                group,
                cache=cache,
                overwrite_strategy="always" if overwrite else "only-missing",
                encode_kwargs={"batch_size": batch_size},
            )
            scores += [_score(run.label, by_name[r.task_name], r) for r in result.task_results]
            _refresh_model_meta(cache, model, group[0])
    return scores


def check_instructions(model: Any, tasks: list[AbsTask]) -> None:
    """Refuse, before anything is embedded, a task the model's instruction source has no instruction for
    (mteb's lookup would fall back to the task's own prompt, which is not the source asked for)."""
    instructions = getattr(model, "instructions", None)
    problems = [instructions.missing(task.metadata) for task in tasks] if instructions is not None else []
    problem = next((problem for problem in problems if problem is not None), None)
    if problem is not None:
        raise InstructionError(problem)


def record_protocol(cache: ResultCache, model: Any, tasks: list[AbsTask], overwrite: bool) -> None:
    """Write the protocol of a run into its results folder before any task runs, unless that would
    mix results computed under another protocol (dtype, instructions...) into one folder.

    A folder whose results were computed under another protocol, or under none recorded (a run
    killed before the protocol was written by an older lens-embed, or another tool's results), is
    refused; ``overwrite`` recomputes them, provided every task there is part of this run (a task
    left out would keep the old protocol's scores under the new record). A task result that is not
    readable JSON is named. Models without a protocol (BM25) are not checked.
    """
    protocol = getattr(model, "protocol", None)
    if protocol is None:
        return
    folder = cache.get_task_result_path(tasks[0].metadata.name, model.mteb_model_meta).parent
    path = folder / PROTOCOL_FILE
    current = json.loads(json.dumps(protocol()))
    recorded = read_json(path) if path.is_file() else None
    if recorded is not None and not isinstance(recorded, dict):
        raise ValueError(f"{path}: expected a JSON object (the protocol record); delete it to start over")
    existing = task_result_files(folder)
    if existing and recorded != current:
        problem = (
            f"holds results computed under another protocol ({_differences(recorded, current)})"
            if recorded is not None
            else f"holds results of an unknown protocol (no {PROTOCOL_FILE}: "
            "an interrupted run or another tool's)"
        )
        if not overwrite:
            raise ValueError(
                f"{folder} {problem}; pass --overwrite to recompute them or choose another --output"
            )
        rerun = {task.metadata.name for task in tasks}
        kept = [result.stem for result in existing if result.stem not in rerun]
        if kept:
            raise ValueError(
                f"{folder} {problem}; --overwrite recomputes only this run's tasks "
                f"and {', '.join(kept)} would keep the old results: "
                "run them too, move them away, or choose another --output"
            )
    if not overwrite:
        _check_readable(
            [result for result in existing if result.stem in {task.metadata.name for task in tasks}]
        )
    atomic_write(path, lambda stream: stream.write(json.dumps(current, indent=2).encode("utf-8")))


def _check_readable(results: list[Path]) -> None:
    """Name a task result that mteb would reuse but cannot read (a write cut short), not a bare JSON error."""
    for result in results:
        try:
            read_json(result)
        except ValueError as error:
            raise ValueError(
                f"{error}: a damaged task result; delete it to recompute the task, or pass --overwrite"
            ) from None


def _differences(recorded: dict[str, Any], current: dict[str, Any]) -> str:
    """``key: old there, new now`` for every entry that differs."""
    keys = [key for key in dict.fromkeys([*current, *recorded]) if recorded.get(key) != current.get(key)]
    return "; ".join(f"{key}: {recorded.get(key)!r} there, {current.get(key)!r} now" for key in keys)


def _refresh_model_meta(cache: ResultCache, model: Any, task: AbsTask) -> None:
    """Rewrite ``model_meta.json`` even when every task came from the cache (mteb only writes it
    beside a newly saved result), so the folder always describes the model as it is now."""
    meta = model.mteb_model_meta
    folder = cache.get_task_result_path(task.metadata.name, meta).parent
    if folder.is_dir():
        text = json.dumps(meta.to_dict(), default=str, indent=4)
        atomic_write(folder / "model_meta.json", lambda stream: stream.write(text.encode("utf-8")))


def _score(label: str, task: AbsTask, task_result: Any) -> Score:
    return Score(
        model=label,
        task=task.metadata.name,
        task_type=task.metadata.type,
        main_score=task.metadata.main_score,
        value=100 * leaderboard_score(task, task_result),
    )
