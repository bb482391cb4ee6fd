"""Corpus encoding across processes: data-parallel over every GPU of a node, and over nodes.

Launched with ``torchrun`` (``torchrun --nproc-per-node 8 -m lens_embed.commands encode-corpus ...``),
every rank loads the model on its own device and embeds the shards ``i`` with
``i % world_size == rank`` of one :class:`lens_embed.serving.retrieval.ShardStore`, the same folder layout
and manifest as the single-process path. Shards are written atomically, so a rerun (with any
number of ranks) computes only the missing ones. Once all ranks are done, rank 0 streams the
shards into one ``embeddings.npy``. Without ``torchrun`` the same code runs as one process.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm

from lens_embed.base.storage import atomic_write
from lens_embed.models.batching import encode_bucketed
from lens_embed.models.loading import load_lens_model
from lens_embed.models.model import encode
from lens_embed.serving.retrieval import ShardStore, corpus_key

logger = logging.getLogger(__name__)
MERGED_NAME = "embeddings.npy"
T = TypeVar("T")


def distributed_context() -> tuple[int, int, str]:
    """``(rank, world_size, device)``, joining the process group torchrun describes in the environment.

    NCCL on GPUs, gloo on CPUs; a plain (non-torchrun) process is rank 0 of 1.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = f"cuda:{local_rank}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(local_rank)
    if world > 1 and not dist.is_initialized():
        # Ranks wait for each other at the end: allow long imbalances on large corpora.
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=6))
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, (dist.get_world_size() if dist.is_initialized() else 1), device


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast(value: Any) -> Any:
    """Rank 0's value on every rank (the value itself outside torchrun)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def rank_zero(produce: Callable[[], T]) -> T | None:
    """``produce()`` on rank 0 only (None elsewhere); an error it raises is raised on every rank, so no
    rank is left waiting for a step rank 0 will never reach."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    result, problem = None, None
    if rank == 0:
        try:
            result = produce()
        except Exception as error:  # re-raised below, on every rank
            problem = error
    problem = broadcast(problem)
    if problem is not None:
        raise problem
    return result


def _sum_over_ranks(value: float) -> float:
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return float(tensor.item())


def merge_shards(directory: str | Path, n_texts: int, shard_size: int, key: str) -> Path:
    """Stream every shard into ``directory/embeddings.npy`` (:func:`atomic_write`), row order kept."""
    store = ShardStore(directory, n_texts, shard_size, key)
    target = store.directory / MERGED_NAME
    if target.is_file():
        return target
    store.require_complete()
    first = np.load(store.shard_path(0), mmap_mode="r")
    header = {
        "descr": np.lib.format.dtype_to_descr(first.dtype),
        "fortran_order": False,
        "shape": (n_texts, first.shape[1]),
    }

    def write(stream: BinaryIO) -> None:
        np.lib.format.write_array_header_1_0(stream, header)
        for index in range(store.n_shards):
            stream.write(np.ascontiguousarray(np.load(store.shard_path(index), mmap_mode="r")).tobytes())

    return atomic_write(target, write)


def encode_corpus(
    model: SentenceTransformer,
    texts: Sequence[str],
    directory: str | Path,
    *,
    query: bool = False,
    instruction: str | None = None,
    shard_size: int = 10_000,
    batch_size: int = 32,
    max_tokens: int | None = None,
    show_progress: bool = True,
) -> Path:
    """Embed ``texts`` into ``directory`` data-parallel over the ranks of the process group; the merged file.

    Call it on every rank with the same texts (under ``torchrun``; a single process works alone).
    Returns the path of ``embeddings.npy`` (rows in input order) on every rank.

    Args:
        model: the model, already on this rank's device (see :func:`distributed_context`).
        texts: the whole corpus, identical on every rank.
        directory: shard folder; reruns resume there, a folder of another corpus or model is refused.
        query: embed as instructed queries (default: documents).
        instruction: the query instruction (default: the model's ``query`` prompt).
        shard_size: texts per shard file (the unit of resumption).
        batch_size: texts per batch (ignored with ``max_tokens``).
        max_tokens: token-budget batches (:mod:`lens_embed.models.batching`) instead of a fixed batch size.
        show_progress: a progress bar with throughput on rank 0.
    """
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    texts = list(texts)
    key = broadcast(corpus_key(model, texts, query=query, instruction=instruction) if rank == 0 else None)
    if rank == 0:
        ShardStore(directory, len(texts), shard_size, key)  # writes the manifest, or refuses a foreign folder
    _barrier()
    store = ShardStore(directory, len(texts), shard_size, key)
    mine = [index for index in store.pending() if index % world == rank]
    started, done = time.perf_counter(), 0
    bar = tqdm(
        total=sum(store.bounds(i)[1] - store.bounds(i)[0] for i in mine),
        unit="text",
        desc=f"Encoding corpus ({world} process{'es' if world > 1 else ''})",
        disable=not show_progress or rank,
    )

    def embed(chunk: list[str]) -> np.ndarray:
        if max_tokens is None:
            options = {"batch_size": batch_size, "show_progress_bar": False}
            return encode(model, chunk, query=query, instruction=instruction, **options)
        return encode_bucketed(model, chunk, query=query, instruction=instruction, max_tokens=max_tokens)

    for count in store.fill(embed, texts, mine):
        done += count
        bar.update(count)
        bar.set_postfix(rank0_texts_per_s=f"{done / (time.perf_counter() - started):.1f}")
    bar.close()
    elapsed = time.perf_counter() - started
    total = _sum_over_ranks(float(done))
    _barrier()
    if rank == 0:
        if total:
            logger.info(
                "encoded %d texts in %.1f s: %.1f texts/s over %d process(es)",
                total,
                elapsed,
                total / max(elapsed, 1e-9),
                world,
            )
        merge_shards(directory, len(texts), shard_size, key)
    _barrier()
    return store.directory / MERGED_NAME


def load_for_rank(model: str, **load_keywords: Any) -> tuple[int, int, SentenceTransformer]:
    """``(rank, world size, model)``: this process's place in the torchrun group and the model on its
    device.

    Args:
        model: what :func:`lens_embed.models.loading.load_lens_model` loads.
        **load_keywords: its other keywords (``dtype``, ``attn_implementation``, ``backend``...).
    """
    rank, world, device = distributed_context()
    return rank, world, load_lens_model(model, device=device, **load_keywords)
