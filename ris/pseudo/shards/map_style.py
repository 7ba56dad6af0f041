"""Map-style records of a shard folder: an index of line offsets, for local or shared disks, to be used with a
``DistributedSampler``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ris.pseudo.records import PseudoRecord

from .shard_set import ShardSet


class ShardRecords(Dataset):
    """Map-style records of a :class:`ShardSet`, read by byte offset (local or shared disks).

    The index (shard, offset) is built once by reading every record; ``keep`` drops records at that time
    (``dropped`` counts them). ``self[i]`` re-reads line ``i`` from its shard, so memory holds only offsets.
    """

    def __init__(self, shards: ShardSet, keep: Callable[[PseudoRecord], bool] | None = None) -> None:
        self.shards = shards
        shard_ids, offsets = [], []
        self.dropped = 0
        for index, path in enumerate(shards.files):
            with shards.fs.open(path, "rb") as handle:
                offset = 0
                for line_no, line in enumerate(handle, start=1):
                    if line.strip():
                        record = PseudoRecord.from_json(line.decode("utf-8"), f"{path}:{line_no}")
                        if keep is None or keep(record):
                            shard_ids.append(index)
                            offsets.append(offset)
                        else:
                            self.dropped += 1
                    offset += len(line)
        self.shard_ids = np.asarray(shard_ids, dtype=np.int64)
        self.offsets = np.asarray(offsets, dtype=np.int64)
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
