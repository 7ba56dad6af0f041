"""Map-style records of a shard folder, read by byte offset through the record index (:mod:`.index`), for local or
shared disks and a ``DistributedSampler``."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ris.pseudo.records import PseudoRecord

from .index import ShardIndex


class ShardRecords(Dataset):
    """Map-style records of the shards of a :class:`ShardIndex` (damaged shards are left out of the index by the
    caller).

    Only records with a caption to draw are kept unless ``usable_only`` is false; ``dropped`` counts the others.
    Start-up reads no record: the offsets come from the index. ``self[i]`` reads line ``i`` from its shard.
    """

    def __init__(self, index: ShardIndex, usable_only: bool = True) -> None:
        self.shards = index.shards
        shard_ids, offsets = [], []
        total = 0
        for shard in index.shard_ids:
            shard_offsets = index.offsets(shard)
            total += len(shard_offsets)
            if usable_only:
                shard_offsets = shard_offsets[index.usable(shard)]
            shard_ids.append(np.full(len(shard_offsets), shard, dtype=np.int64))
            offsets.append(shard_offsets)
        self.shard_ids = np.concatenate(shard_ids) if shard_ids else np.zeros(0, np.int64)
        self.offsets = np.concatenate(offsets) if offsets else np.zeros(0, np.int64)
        self.dropped = total - len(self.offsets)
        self._handles: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, index: int) -> PseudoRecord:
        shard = int(self.shard_ids[index])
        handle = self._handles.get(shard)
        if handle is None:
            handle = self._handles[shard] = self.shards.fs.open(self.shards.files[shard], "rb")
        handle.seek(int(self.offsets[index]))
        return PseudoRecord.from_json(handle.readline().decode("utf-8"), f"{self.shards.files[shard]}@{index}")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state
