"""Streaming records of a shard folder: the shards of this (rank, dataloader worker) only, for object storage."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import IterableDataset, get_worker_info

from ris.pseudo.records import PseudoRecord

from .shard_set import ShardSet


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class StreamingShardRecords(IterableDataset):
    """Stream the records of the shards assigned to this (rank, dataloader worker), for object storage.

    Shard ``i`` goes to reader ``i mod (world_size · num_workers)`` (reader = rank · num_workers + worker); a
    reader never opens another reader's shards. Every reader yields **exactly** ``per_reader`` records per pass,
    the smallest record count any reader has according to the manifest, so all ranks run the same number of
    steps (unequal counts would hang DDP). Records dropped by ``keep`` are made up by continuing into the
    reader's shards again. With ``shuffle`` the reader's shard order and a ``buffer_size`` window of records are
    shuffled, differently on every pass (the seed mixes ``seed``, the reader, the pass number and torch's worker
    seed, so ``seed_everything(workers=True)`` makes it reproducible).

    Args:
        shards: the shard folder.
        num_workers: the dataloader's worker count (the readers per rank).
        shuffle, seed, buffer_size: see above.
        keep: record filter (e.g. "has a usable caption").
        rank, world_size: override the ``torch.distributed`` values.
    """

    def __init__(
        self,
        shards: ShardSet,
        num_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        buffer_size: int = 1000,
        keep: Callable[[PseudoRecord], bool] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.shards = shards
        self.num_workers = max(1, num_workers)
        self.shuffle = shuffle
        self.seed = seed
        self.buffer_size = buffer_size
        self.keep = keep
        self.rank = rank
        self.world_size = world_size
        self.passes = 0
        counts = [s["records"] for s in shards.manifest["shards"]]
        readers = self._world()[1] * self.num_workers
        if len(counts) < readers:
            raise ValueError(
                f"{shards.root}: {len(counts)} shards cannot feed {readers} streaming readers (world size x "
                "workers); write smaller shards (--output.images_per_shard) or use the map-style reader"
            )
        self.per_reader = min(sum(counts[r::readers]) for r in range(readers))

    def _world(self) -> tuple[int, int]:
        rank, world = _rank_and_world()
        return (rank if self.rank is None else self.rank), (world if self.world_size is None else self.world_size)

    def reader(self) -> tuple[int, int]:
        """``(reader index, number of readers)`` of the calling process/worker."""
        rank, world = self._world()
        info = get_worker_info()
        workers = self.num_workers if info is None else info.num_workers
        if workers != self.num_workers and info is not None:
            raise ValueError(f"StreamingShardRecords was built for {self.num_workers} workers, runs in {workers}")
        return rank * workers + (0 if info is None else info.id), world * workers

    def assigned_shards(self) -> list[int]:
        """Indices of the shards of the calling reader."""
        reader, readers = self.reader()
        return list(range(reader, len(self.shards.files), readers))

    def __len__(self) -> int:
        """Records per rank and pass."""
        return self.per_reader * self.num_workers

    def _stream(self, order: list[int]) -> Iterator[PseudoRecord]:
        found = False
        while True:
            for index in order:
                for record in self.shards.read_shard(index):
                    if self.keep is None or self.keep(record):
                        found = True
                        yield record
            if not found:
                raise ValueError(f"{self.shards.root}: no usable record in shards {order}")

    def __iter__(self) -> Iterator[PseudoRecord]:
        reader, _ = self.reader()
        rng = random.Random(f"{self.seed}:{reader}:{self.passes}:{torch.initial_seed()}")
        self.passes += 1
        order = self.assigned_shards()
        if self.shuffle:
            rng.shuffle(order)
        taken = itertools.islice(self._stream(order), self.per_reader)
        if not self.shuffle:
            yield from taken
            return
        buffer: list[PseudoRecord] = []
        for record in taken:
            buffer.append(record)
            if len(buffer) >= self.buffer_size:
                yield buffer.pop(rng.randrange(len(buffer)))
        rng.shuffle(buffer)
        yield from buffer
