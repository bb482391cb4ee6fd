"""Run several models over a task list into one mteb results folder and one summary.

Results go through mteb's own ``ResultCache``: ``<output>/results/<org__model>/<revision>/<Task>.json``
plus ``model_meta.json`` -- the layout ``mteb run --output-folder`` writes and ``mteb submit`` /
the leaderboard's results repository take. Finished tasks are reused, so a rerun resumes.
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

logger = logging.getLogger(__name__)
# Beside model_meta.json: how the embeddings were computed (instructions, dtype, attention, truncation).
PROTOCOL_FILE = "lens_embed_protocol.json"


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
    run: ModelRun, tasks: list[AbsTask], shard_dir: Path | None, shard_size: int, search_index: Callable[[Any], Any] | None
) -> list[tuple[Any, list[AbsTask]]]:
    """(model object, tasks) pairs for one run: retrieval through sharded search and/or the given search
    index when asked, the rest as is."""
    from lens_embed.evaluation.instructions import ASYMMETRIC_TASK_TYPES
    from lens_embed.evaluation.mteb_model import LensEncoder

    if (shard_dir is None and search_index is None) or not isinstance(run.model, LensEncoder):
        return [(run.model, tasks)]
    from mteb.models.search_encoder_index.search_indexes.faiss_search_index import FaissSearchIndex

    from lens_embed.evaluation.search import IndexedSearch, ShardedSearch

    factory = search_index or FaissSearchIndex
    searched = [t for t in tasks if t.metadata.type in ASYMMETRIC_TASK_TYPES]
    others = [t for t in tasks if t.metadata.type not in ASYMMETRIC_TASK_TYPES]
    if shard_dir is not None:
        searcher = ShardedSearch(run.model, shard_dir / run.model.mteb_model_meta.model_name_as_path(), shard_size, factory)
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
        for model, group in _task_groups(run, selected, Path(shard_dir) if shard_dir else None, shard_size, search_index):
            check_protocol(cache, model, group[0], overwrite)
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


def check_protocol(cache: ResultCache, model: Any, task: AbsTask, overwrite: bool) -> None:
    """Refuse to mix results computed under another protocol (dtype, instructions...) into one folder."""
    protocol = getattr(model, "protocol", None)
    path = cache.get_task_result_path(task.metadata.name, model.mteb_model_meta).parent / PROTOCOL_FILE
    if protocol is None or overwrite or not path.is_file():
        return
    recorded = json.loads(path.read_text(encoding="utf-8"))
    current = protocol()
    changed = {key: (recorded.get(key), value) for key, value in current.items() if recorded.get(key) != value}
    if changed:
        details = "; ".join(f"{key}: {old!r} there, {new!r} now" for key, (old, new) in changed.items())
        raise ValueError(
            f"{path.parent} holds results computed under another protocol ({details}); "
            "pass --overwrite to recompute them or choose another --output"
        )


def _refresh_model_meta(cache: ResultCache, model: Any, task: AbsTask) -> None:
    """Rewrite ``model_meta.json`` (and the protocol record) even when every task came from the cache
    (mteb only writes it beside a newly saved result), so the folder always describes the model as it is now."""
    meta = model.mteb_model_meta
    folder = cache.get_task_result_path(task.metadata.name, meta).parent
    if folder.is_dir():
        (folder / "model_meta.json").write_text(json.dumps(meta.to_dict(), default=str, indent=4), encoding="utf-8")
        if hasattr(model, "protocol"):
            (folder / PROTOCOL_FILE).write_text(json.dumps(model.protocol(), indent=2), encoding="utf-8")


def _score(label: str, task: AbsTask, task_result: Any) -> Score:
    from lens_embed.evaluation.tasks import leaderboard_score

    return Score(
        model=label,
        task=task.metadata.name,
        task_type=task.metadata.type,
        main_score=task.metadata.main_score,
        value=100 * leaderboard_score(task, task_result),
    )
