"""Hard-negative mining, with the model itself or with BM25, never returning a known positive.

Model mining uses sentence-transformers' ``mine_hard_negatives`` (embedding, top-k search, skipping
every positive of a query); queries are embedded in the LENS query format with their own
instruction, and where a task's documents are instructed in training (STS, clustering) the
candidates are instructed too. BM25 mining (``bm25s``, of the ``eval`` extra) is the cheap, model-free
alternative.

Training mines only rows that have no negatives, once: :func:`complete_task` caches the result under
``OUTPUT/mined/`` keyed by everything that decides it, so resumed runs and other processes reuse it.
A cache entry is complete or absent: it is written atomically, and on reuse it must hold every row of
the task, in order, each with negatives; anything else (a file cut short by a full disk or a crash)
is reported and mined again, never trained on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lens_embed.base.optional import require
from lens_embed.base.prompts import query_prompt
from lens_embed.base.storage import check_writable, refuse_overlap
from lens_embed.models.loading import load_lens_model
from lens_embed.training.config import MINING_METHODS
from lens_embed.training.data import TaskData, TrainingDataError, load_task, load_tasks, write_jsonl

logger = logging.getLogger(__name__)

MINED_DIRNAME = "mined"


def candidate_corpus(task: TaskData) -> list[str]:
    """Texts a negative may come from: every positive and known negative of the task, and for
    symmetric tasks the other queries too (they are the same kind of text). Order-stable, unique."""
    texts: list[str] = []
    for row in task.rows:
        texts.extend(row["pos"])
        texts.extend(row["neg"])
        if task.spec.symmetric:
            texts.append(row["query"])
    return list(dict.fromkeys(texts))


def _excluded(row: dict[str, Any]) -> set[str]:
    """A row's own texts, which must never be its negatives."""
    return {row["query"], *row["pos"]}


def _merge_negatives(row: dict[str, Any], mined: Sequence[str], count: int) -> dict[str, Any]:
    """The row with ``count`` mined negatives (known positives and the query itself removed)
    appended after its existing negatives, without duplicates."""
    excluded = _excluded(row)
    fresh = [text for text in dict.fromkeys(mined) if text not in excluded and text not in row["neg"]]
    return {**row, "neg": row["neg"] + fresh[:count]}


def _mine_group_with_model(
    rows: list[dict[str, Any]],
    corpus: list[str],
    model: Any,
    prompt: str,
    instructed: bool,
    count: int,
    batch_size: int,
) -> list[list[str]]:
    """Mined negatives for rows sharing one instruction, via ``mine_hard_negatives``."""
    import datasets
    from sentence_transformers.util import mine_hard_negatives

    pairs = [(index, row["query"], positive) for index, row in enumerate(rows) for positive in row["pos"]]
    dataset = datasets.Dataset.from_dict(
        {"query": [pair[1] for pair in pairs], "positive": [pair[2] for pair in pairs]}
    )
    # One extra candidate per query: the query itself may sit in a symmetric corpus and is dropped later.
    wanted = min(count + 1, max(1, len(corpus) - 1))
    mined = mine_hard_negatives(
        dataset,
        model,
        anchor_column_name="query",
        positive_column_name="positive",
        corpus=corpus,
        num_negatives=wanted,
        sampling_strategy="top",
        query_prompt=query_prompt(prompt),
        corpus_prompt=query_prompt(prompt) if instructed else None,
        output_format="n-tuple",
        batch_size=batch_size,
        verbose=False,
    )
    return _collect_by_query(rows, mined)


def _collect_by_query(rows: list[dict[str, Any]], mined: Any) -> list[list[str]]:
    """Map mine_hard_negatives' (query, positive, negative_1..n) rows back to the input rows."""
    negative_columns = [column for column in mined.column_names if column.startswith("negative")]
    by_query: dict[str, list[str]] = defaultdict(list)
    for record in mined:
        by_query[record["query"]].extend(record[column] for column in negative_columns)
    return [by_query.get(row["query"], []) for row in rows]


def _mine_rows_with_model(
    rows: list[dict[str, Any]], corpus: list[str], instructed: bool, model: Any, count: int, batch_size: int
) -> list[list[str]]:
    """Model-mined candidates for every row, grouped by instruction (one prompt per call)."""
    by_prompt: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        by_prompt[row["prompt"]].append(index)
    mined: list[list[str]] = [[] for _ in rows]
    for prompt, indices in by_prompt.items():
        group = [rows[index] for index in indices]
        found = _mine_group_with_model(group, corpus, model, prompt, instructed, count, batch_size)
        for index, negatives in zip(indices, found, strict=True):
            mined[index] = negatives
    return mined


def _mine_rows_with_bm25(rows: list[dict[str, Any]], corpus: list[str], count: int) -> list[list[str]]:
    """BM25 top candidates for every row (its own texts are removed when merging)."""
    bm25s = require("bm25s", "eval")  # the offline suite's BM25 baseline, its extra

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(corpus, show_progress=False), show_progress=False)
    depth = min(len(corpus), count + max(len(row["pos"]) for row in rows) + 1)
    queries = bm25s.tokenize([row["query"] for row in rows], show_progress=False)
    documents, _ = retriever.retrieve(queries, k=depth, show_progress=True)
    return [[corpus[int(index)] for index in ranked] for ranked in documents]


def mine_task(
    task: TaskData,
    count: int,
    method: str = "model",
    model: Any = None,
    batch_size: int = 32,
    only_missing: bool = False,
) -> TaskData:
    """A copy of ``task`` whose rows gained up to ``count`` mined negatives each (rows that already
    have negatives are left alone when ``only_missing``). Candidates come from the whole task."""
    check_count(count)
    if method not in MINING_METHODS:
        raise ValueError(f"unknown mining method {method!r}; expected one of {MINING_METHODS}")
    if method == "model" and model is None:
        raise ValueError("model mining needs a model")
    targets = [index for index, row in enumerate(task.rows) if not (only_missing and row["neg"])]
    if not targets:
        return task
    selected = [task.rows[index] for index in targets]
    corpus = candidate_corpus(task)
    if method == "model":
        mined = _mine_rows_with_model(
            selected, corpus, task.spec.instructed_documents, model, count, batch_size
        )
    else:
        mined = _mine_rows_with_bm25(selected, corpus, count)
    rows = list(task.rows)
    for index, negatives in zip(targets, mined, strict=True):
        rows[index] = _merge_negatives(task.rows[index], negatives, count)
    starved = sum(1 for index in targets if not rows[index]["neg"])
    if starved:
        logger.warning("%s: %d rows found no negative that is not a positive", task.name, starved)
    return dataclasses.replace(task, rows=rows)


def check_count(count: int) -> None:
    """Mining zero negatives would silently leave the data as it was: refuse it."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"the number of negatives to mine must be an integer >= 1, got {count!r}")


def mined_cache_path(cache_dir: Path, task: TaskData, method: str, count: int, model_id: str) -> Path:
    """Cache file of a task's mined rows, keyed by the rows, the method, the count and the model,
    so changed data or settings never reuse stale negatives."""
    key = json.dumps([task.rows, method, count, model_id], sort_keys=True).encode("utf-8")
    digest = hashlib.sha256(key).hexdigest()[:12]
    return cache_dir / f"{task.name.replace('/', '__')}.{digest}.jsonl"


def complete_task(
    task: TaskData, count: int, method: str, model: Any, cache_dir: Path, model_id: str, batch_size: int = 64
) -> TaskData:
    """``task`` with every row holding negatives: rows without any get ``count`` mined ones, read
    from the cache when the same rows were mined the same way before.

    Args:
        task: the task to complete.
        count: negatives to mine per row (group size - 1).
        method: ``model`` or ``bm25``.
        model: the sentence-transformers model that mines (``method='model'``).
        cache_dir: folder of cached mined rows (``OUTPUT/mined``).
        model_id: names the mining model in the cache key.
        batch_size: encoding batch size.
    """
    if all(row["neg"] for row in task.rows):
        return task
    cached = mined_cache_path(cache_dir, task, method, count, model_id)
    reused = cached_task(cached, task)
    if reused is not None:
        return reused
    logger.info("mining %d negatives per query for %s (%s)", count, task.name, method)
    was_training = getattr(model, "training", False)
    if model is not None:
        model.eval()
    mined = mine_task(task, count, method, model, batch_size, only_missing=True)
    if model is not None:
        model.train(was_training)
    starved = [row for row in mined.rows if not row["neg"]]
    if starved:
        raise ValueError(f"{task.name}: {len(starved)} rows found no negative (task too small to mine from)")
    write_jsonl(mined.rows, cached)
    return mined


def cached_task(path: Path, task: TaskData) -> TaskData | None:
    """``task`` completed from the cache entry at ``path``, or None (mine again) when there is none or
    it is damaged or incomplete: it must parse, and extend every row of the task, in order, with
    negatives (a row that had some keeps exactly those)."""
    if not path.exists():
        return None
    try:
        (loaded,) = load_task(path, name=task.name)
        problem = _cache_mismatch(loaded.rows, task.rows)
    except TrainingDataError as error:
        problem = str(error)
    if problem is None:
        return dataclasses.replace(task, rows=loaded.rows)
    logger.warning("%s: damaged or incomplete cache of mined negatives (%s); mining again", path, problem)
    return None


def _cache_mismatch(cached: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str | None:
    """Why cached rows are not the task's rows completed with negatives (None when they are)."""
    if len(cached) != len(rows):
        return f"{len(cached)} rows, the task has {len(rows)}"
    for number, (mined, row) in enumerate(zip(cached, rows, strict=True), start=1):
        known = row["neg"]
        if {**mined, "neg": known} != row or not mined["neg"] or (known and mined["neg"] != known):
            return f"row {number} is not the task's row {number} with negatives"
    return None


def mine_negatives(
    data: Sequence[str | Path],
    output: str | Path,
    *,
    model: Any = None,
    method: str = "model",
    num_negatives: int = 7,
    batch_size: int = 32,
    only_missing: bool = False,
    overwrite: bool = False,
    trust_remote_code: bool = False,
) -> list[Path]:
    """Mine negatives for every row of the given jsonl files / datasets and write jsonl.

    Args:
        data: jsonl files, folders of them, saved datasets.
        output: one input: the ``.jsonl`` file to write; several: a folder, one ``<name>.jsonl`` per task.
        model: a sentence-transformers model or a name/path for
        :func:`lens_embed.models.loading.load_lens_model`. method: ``model`` or ``bm25``.
        num_negatives: negatives to add per row.
        batch_size: encoding batch size.
        only_missing: mine only rows without negatives.
        overwrite: replace existing output files (refused otherwise, before any work is done); an
            output that is one of the input files is refused even so.
        trust_remote_code: let a model loaded by name run its own code.

    Every file is written atomically: it is whole, or the previous file is still there.
    """
    check_count(num_negatives)
    tasks = load_tasks(data)
    output = Path(output)
    single = len(tasks) == 1 and output.suffix == ".jsonl"
    targets = [output] if single else [output / f"{task.name}.jsonl" for task in tasks]
    for target in targets:  # writing one would replace the data it was mined from
        for source in (task.path for task in tasks if task.path is not None):
            refuse_overlap(target, "output", source, "the input file")
    check_writable(output, "output", folder=not single)
    existing = [str(path) for path in targets if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"output exists: {', '.join(existing)} (pass overwrite=True / --overwrite to replace)"
        )
    if method == "model" and isinstance(model, (str, Path)):
        model = load_model(model, trust_remote_code=trust_remote_code)
    mined = [mine_task(task, num_negatives, method, model, batch_size, only_missing) for task in tasks]
    return [write_jsonl(task.rows, path) for task, path in zip(mined, targets, strict=True)]


def load_model(name_or_path: str | Path, device: str | None = None, trust_remote_code: bool = False) -> Any:
    """Load a model to mine with or to train, through the one loader (released names, lens-embed
    and sentence-transformers folders); remote code only when asked."""
    return load_lens_model(str(name_or_path), device=device, trust_remote_code=trust_remote_code)
