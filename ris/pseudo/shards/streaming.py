"""Streaming records of a shard folder: the shards of this (rank, dataloader worker) only, for object storage."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

import torch
from torch.utils.data import IterableDataset, get_worker_info

from ris.formats.errors import BadSampleError
from ris.pseudo.records import PseudoRecord

from .index import ShardIndex


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class StreamingShardRecords(IterableDataset):
    """Stream the records of the shards assigned to this (rank, dataloader worker), for object storage.

    The shards are those of the record index (damaged ones are left out by the caller), and only records with a
    caption to draw are yielded; the counts come from the index, i.e. from the files, never from a manifest. The
    ``j``-th indexed shard goes to reader ``j mod (world_size · num_workers)`` (reader = rank · num_workers +
    worker); a reader never opens another reader's shards. Every reader yields **exactly** ``per_reader`` records
    per pass, the smallest count any reader has, so all ranks run the same number of steps (unequal counts would
    hang DDP) and no record is yielded twice in a pass. With ``shuffle`` the reader's shard order and a
    ``buffer_size`` window of records are shuffled, differently on every pass (the seed mixes ``seed``, the reader,
    the pass number and torch's worker seed, so ``seed_everything(workers=True)`` makes it reproducible). A shard
    whose line count no longer matches the index (changed after start-up) raises.

    Args:
        index: the record index of the shard folder.
        num_workers: the dataloader's worker count (the readers per rank).
        shuffle, seed, buffer_size: see above.
        rank, world_size: override the ``torch.distributed`` values.
    """

    def __init__(
        self,
        index: ShardIndex,
        num_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        buffer_size: int = 1000,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.index = index
        self.shards = index.shards
        self.shard_list = index.shard_ids
        self.num_workers = max(1, num_workers)
        self.shuffle = shuffle
        self.seed = seed
        self.buffer_size = buffer_size
        self.rank = rank
        self.world_size = world_size
        self.passes = 0
        counts = [index.count(s) for s in self.shard_list]
        readers = self._world()[1] * self.num_workers
        if len(counts) < readers:
            raise ValueError(
                f"{self.shards.root}: {len(counts)} shards cannot feed {readers} streaming readers (world size x "
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
        """Positions (in the shard folder) of the shards of the calling reader."""
        reader, readers = self.reader()
        return self.shard_list[reader::readers]

    def __len__(self) -> int:
        """Records per rank and pass."""
        return self.per_reader * self.num_workers

    def _stream(self, order: list[int]) -> Iterator[PseudoRecord]:
        for shard in order:
            usable = self.index.usable(shard)
            position = -1
            for position, record in enumerate(self.shards.read_shard(shard, _indexed_bad_line)):
                if position >= len(usable):
                    break
                if usable[position]:
                    yield record
            if position + 1 != len(usable):
                raise ValueError(f"{self.shards.files[shard]}: changed since it was indexed ({len(usable)} records)")

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


def _indexed_bad_line(error: BadSampleError) -> None:
    """Bad lines are not in the index (:meth:`ShardIndex.bad_records` reported them when the dataset was built)."""
