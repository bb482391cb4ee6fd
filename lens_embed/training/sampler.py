"""Task-homogeneous batches that stay homogeneous across devices.

sentence-transformers' multi-dataset samplers keep each *batch* inside one dataset, but under
DDP accelerate deals consecutive batches to different ranks (batch ``i`` goes to rank
``i % world_size``). Two ranks could then train different tasks in the same step: negatives
gathered across devices would mix tasks, and a rank on a no-in-batch task would skip the
all-gather its peers wait in. This sampler therefore emits ``world_size`` consecutive batches of
the same task (one global batch), shuffles the order of the global batches, and drops a task's
incomplete tail, so every step is one task on every rank.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate

import torch
from sentence_transformers.base.sampler import MultiDatasetDefaultBatchSampler
from torch.utils.data import BatchSampler, ConcatDataset


class TaskHomogeneousBatchSampler(MultiDatasetDefaultBatchSampler):
    """Yield per-rank batches so that each run of ``world_size`` consecutive batches is one task.

    The child samplers (one per task, from the trainer) decide the order inside a task; this class
    decides the order of the tasks' global batches. Seeded by ``seed + epoch`` so every rank and a
    resumed run see the same order.
    """

    def __init__(
        self,
        dataset: ConcatDataset,
        batch_samplers: list[BatchSampler],
        generator: torch.Generator | None = None,
        seed: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__(dataset, batch_samplers, generator=generator, seed=seed)
        if world_size < 1:
            raise ValueError(f"world_size must be at least 1, got {world_size}")
        self.world_size = world_size
        # Tasks have their own batch sizes. None tells accelerate's per-rank shard that batches vary
        # (with a number it silently drops every batch of another size).
        self.batch_size = None

    def _global_batches(self) -> list[list[list[int]]]:
        """Every task's batches, offset into the concatenated dataset and chunked per world."""
        offsets = [0, *accumulate(len(part) for part in self.dataset.datasets)]
        global_batches = []
        for offset, sampler in zip(offsets, self.batch_samplers, strict=False):
            batches = [[index + offset for index in batch] for batch in sampler]
            full = len(batches) - len(batches) % self.world_size
            global_batches.extend(
                batches[start : start + self.world_size] for start in range(0, full, self.world_size)
            )
        return global_batches

    def __iter__(self) -> Iterator[list[int]]:
        if self.generator is not None and self.seed is not None:
            self.generator.manual_seed(self.seed + self.epoch)
        global_batches = self._global_batches()
        for position in torch.randperm(len(global_batches), generator=self.generator).tolist():
            yield from global_batches[position]

    def __len__(self) -> int:
        per_task = (len(sampler) - len(sampler) % self.world_size for sampler in self.batch_samplers)
        return sum(per_task)
