"""The record index of a shard folder: per shard, the byte offset of every record line and whether the record has a
caption to train on, read from the files once and cached beside them (``DIR/index.npz``).

Opening a shard folder for training then reads this small file instead of parsing every record in every process.
The cache is written by the merge at the end of ``ris generate`` / ``ris import-labels`` (or the first time a
reader needs it, atomically) and holds, per shard, the sha256 it was read from; a shard whose manifest sha256
differs (regenerated, edited) is indexed again, the others are reused. Counts come from the files, never from a
manifest.

``usable`` is "some caption is not empty": the records a caption draw can use for every τ and fallback
(:func:`ris.pseudo.caption_choice.eligible_captions` is empty only when every caption is). A line that is not a
valid record (:meth:`PseudoRecord.from_json`: not JSON, a null caption, mismatched lists) is not in the index; its
error is kept (``bad``) for the datamodule's ``on_bad_sample`` policy (:meth:`ShardIndex.bad_records`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from fsspec.implementations.local import LocalFileSystem
from tqdm import tqdm

from ris.atomic import atomic_write
from ris.formats.errors import BadSampleError
from ris.pseudo.records import PseudoRecord

from .shard_set import ShardSet

log = logging.getLogger(__name__)

INDEX = "index.npz"
INDEX_VERSION = 2


@dataclass
class ShardEntryIndex:
    """The records of one shard: ``offsets`` ``(N,)`` int64 line starts, ``usable`` ``(N,)`` bool, and ``bad``: the
    lines that are no record, as ``(where, sample, reason)`` of their :class:`BadSampleError`."""

    file: str
    sha256: str
    offsets: np.ndarray
    usable: np.ndarray
    bad: list[tuple[str, str, str]]


def index_shard(data: bytes, file: str, sha256: str, path: str | None = None) -> ShardEntryIndex:
    """Index the content of one shard (parses and validates every line once); ``path`` names it in errors."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{file}: content differs from the manifest's sha256 (changed while indexing?)")
    offsets, usable, bad = [], [], []
    start = 0
    for line_no, line in enumerate(data.splitlines(keepends=True), start=1):
        if line.strip():
            try:
                record = PseudoRecord.from_json(line.decode("utf-8", errors="replace"), f"{path or file}:{line_no}")
            except BadSampleError as err:
                bad.append((err.source, err.sample, err.reason))
            else:
                offsets.append(start)
                usable.append(any(c.strip() for c in record.captions))
        start += len(line)
    return ShardEntryIndex(file, sha256, np.asarray(offsets, np.int64), np.asarray(usable, bool), bad)


class ShardIndex:
    """The index of the shards of a :class:`ShardSet` (see the module docstring), by shard position.

    Build or load it with :meth:`open`; shards left out (damaged ones) have no entry.
    """

    def __init__(self, shards: ShardSet, entries: dict[int, ShardEntryIndex]) -> None:
        self.shards = shards
        self.entries = entries

    def offsets(self, shard: int) -> np.ndarray:
        return self.entries[shard].offsets

    def usable(self, shard: int) -> np.ndarray:
        return self.entries[shard].usable

    def count(self, shard: int, usable_only: bool = True) -> int:
        """Records of ``shard`` (only those with a caption by default)."""
        entry = self.entries[shard]
        return int(entry.usable.sum()) if usable_only else len(entry.offsets)

    @property
    def shard_ids(self) -> list[int]:
        return sorted(self.entries)

    def bad_records(self) -> list[BadSampleError]:
        """The lines of the indexed shards that are no valid record, in shard and line order."""
        return [BadSampleError(*bad) for shard in self.shard_ids for bad in self.entries[shard].bad]

    @classmethod
    def open(
        cls, shards: ShardSet, include: Sequence[int] | None = None, progress: bool = True, save: bool = True
    ) -> ShardIndex:
        """The index of the shards ``include`` (default: all): cached entries whose sha256 matches the manifest are
        reused, the others are read (with a progress bar) and, with ``save``, the cache is rewritten."""
        wanted = range(len(shards.files)) if include is None else include
        cached = _load(shards)
        entries, missing = {}, []
        for i in wanted:
            shard = shards.manifest["shards"][i]
            entry = cached.get(shard["file"])
            if entry is not None and entry.sha256 == shard["sha256"]:
                entries[i] = entry
            else:
                missing.append(i)
        for i in tqdm(missing, desc="index shards", unit="shard", disable=not progress or not missing):
            shard = shards.manifest["shards"][i]
            with shards.fs.open(shards.files[i], "rb") as handle:
                entries[i] = index_shard(handle.read(), shard["file"], shard["sha256"], shards.files[i])
        index = cls(shards, entries)
        if missing and save:
            index.save(cached)
        return index

    def save(self, cached: dict[str, ShardEntryIndex] | None = None) -> bool:
        """Write ``DIR/index.npz`` with these entries and the still-valid ``cached`` ones; ``False`` (a warning) when
        the folder is not writable. Local folders are written atomically."""
        names = {s["file"]: s["sha256"] for s in self.shards.manifest["shards"]}
        merged = {e.file: e for e in (cached or {}).values() if names.get(e.file) == e.sha256}
        merged |= {e.file: e for e in self.entries.values()}
        entries = [merged[f] for f in names if f in merged]
        buffer = io.BytesIO()
        np.savez(
            buffer,
            version=np.asarray(INDEX_VERSION),
            files=np.asarray(json.dumps([[e.file, e.sha256] for e in entries])),
            counts=np.asarray([len(e.offsets) for e in entries], np.int64),
            offsets=np.concatenate([e.offsets for e in entries]) if entries else np.zeros(0, np.int64),
            usable=np.concatenate([e.usable for e in entries]) if entries else np.zeros(0, bool),
            bad=np.asarray(json.dumps([e.bad for e in entries])),
        )
        path = f"{self.shards.path.rstrip('/')}/{INDEX}"
        try:
            if isinstance(self.shards.fs, LocalFileSystem):
                atomic_write(path, buffer.getvalue())
            else:
                self.shards.fs.pipe_file(path, buffer.getvalue())
        except OSError as err:
            log.warning("%s: cannot cache the shard index (%s); it is rebuilt at every start", path, err)
            return False
        return True


def _load(shards: ShardSet) -> dict[str, ShardEntryIndex]:
    """The cached entries by file name (empty when there is no readable cache of this version)."""
    path = f"{shards.path.rstrip('/')}/{INDEX}"
    try:
        with shards.fs.open(path, "rb") as handle:
            data = np.load(io.BytesIO(handle.read()), allow_pickle=False)
            if int(data["version"]) != INDEX_VERSION:
                return {}
            files = json.loads(str(data["files"]))
            counts, offsets, usable = data["counts"], data["offsets"], data["usable"]
            bad = json.loads(str(data["bad"]))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError) as err:
        log.warning("%s: unreadable shard index (%s); rebuilding it", path, err)
        return {}
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return {
        file: ShardEntryIndex(file, sha, offsets[bounds[k]:bounds[k + 1]], usable[bounds[k]:bounds[k + 1]],
                              [tuple(b) for b in bad[k]])
        for k, (file, sha) in enumerate(files)
    }
