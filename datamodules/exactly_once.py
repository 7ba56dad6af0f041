"""Exactly-once evaluation on any number of processes (docs/data.md §4.4), for sets of any size.

Lightning's ``UnrepeatedDistributedSampler`` gives each process its share of a set without duplicates, but a set
with fewer samples than processes leaves a process with nothing: its sampler asserts and the other processes wait
in a collective for it. :class:`PaddedEvaluationSampler` instead gives **every** process the same number of
indices, at least one: its share of ``0 … n-1`` (each sample on exactly one process), topped up with *padding*
indices ``≥ n``. :class:`PaddedEvaluationSet` serves a padding index as a copy of a real sample marked
``padding=True`` (:class:`ris.batch.RISSample`), which the :class:`ris.evaluation.Evaluator` never scores. So the
metrics count every sample once, and every process runs the same number of batches per set.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace

from torch.utils.data import Dataset, DistributedSampler

from ris.batch import RISSample


class PaddedEvaluationSampler(DistributedSampler):
    """Rank ``r`` of ``W`` gets ``r, r + W, …`` below ``n``, then padding indices ``n, n + 1, …`` up to
    ``ceil(n / W)`` indices (none for an empty set). A :class:`DistributedSampler`, so Lightning keeps it."""

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.size = len(dataset)
        self.num_samples = math.ceil(self.size / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def __iter__(self) -> Iterator[int]:
        own = list(range(self.rank, self.size, self.num_replicas))
        padding = range(self.size, self.size + self.num_samples - len(own))
        return iter([*own, *padding])

    def __len__(self) -> int:
        return self.num_samples


class PaddedEvaluationSet(Dataset):
    """``dataset`` (of :class:`RISSample`) plus padding indices ``≥ len(dataset)``: a real sample marked
    ``padding=True``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> RISSample:
        size = len(self.dataset)
        if index < size:
            return self.dataset[index]
        return replace(self.dataset[(index - size) % size], padding=True)
