"""Writing a shard folder: the per-process :class:`ShardWriter` and :func:`merge_manifests`.

Every process buffers whole images and writes a shard when it holds ``images_per_shard`` images (and at the end).
A shard is written to a temporary name and renamed; then the process's manifest is rewritten the same way. A shard
file not listed in a manifest (a kill between the two renames) is an orphan: its images count as not done, and the
orphan is deleted when its process restarts or when the manifests are merged.

Every record carries the short id of the generator's provenance (``generator``); resuming into a folder written
with a different provenance is refused (:mod:`ris.pseudo.provenance`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from ris.atomic import atomic_write
from ris.pseudo.distinctiveness import DEFAULT_TAU
from ris.pseudo.provenance import provenance_id

from .manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    RANK_MANIFEST,
    SHARD,
    SHARD_RE,
    check_folder_provenance,
    rank_manifests,
    read_manifest,
)
from .stats import GenerationStats, ImageResult

log = logging.getLogger(__name__)


class ShardWriter:
    """Buffers one process's image results and writes shards plus the process manifest atomically.

    Args:
        root: the shard folder (created if needed).
        rank: global rank of this process (names its files).
        provenance: the generator description; its id is stamped on every record.
        images_per_shard: images per shard file (skipped images count).
        tau: DoS threshold used for the ``kept`` counts.
        image_root: the image source's root (relative record paths are relative to it).
    """

    def __init__(
        self,
        root: str | Path,
        rank: int,
        provenance: dict[str, Any],
        images_per_shard: int = 1000,
        tau: float = DEFAULT_TAU,
        image_root: str = "",
    ) -> None:
        if images_per_shard < 1:
            raise ValueError(f"images_per_shard must be >= 1, got {images_per_shard}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.rank = rank
        self.provenance = provenance
        self.provenance_id = provenance_id(provenance)
        self.images_per_shard = images_per_shard
        self.tau = tau
        self.image_root = image_root
        self.manifest_path = self.root / RANK_MANIFEST.format(rank=rank)
        check_folder_provenance(self.root, provenance)
        if self.manifest_path.exists():
            self.manifest = read_manifest(self.manifest_path)
        else:
            self.manifest = self._new_manifest()
        self._buffer: list[ImageResult] = []
        self._remove_own_orphans()

    def _new_manifest(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "rank": self.rank,
            "provenance_id": self.provenance_id,
            "provenance": self.provenance,
            "tau": self.tau,
            "image_root": self.image_root,
            "shards": [],
        }

    def _remove_own_orphans(self) -> None:
        listed = {shard["file"] for shard in self.manifest["shards"]}
        for path in self.root.iterdir():
            match = SHARD_RE.match(path.name)
            own_tmp = path.name.startswith(f".shard-r{self.rank:03d}-") or path.name.startswith(
                f".{self.manifest_path.name}.tmp"
            )
            if (match and int(match.group(1)) == self.rank and path.name not in listed) or own_tmp:
                log.info("removing unfinished shard file %s", path)
                path.unlink()

    @property
    def next_seq(self) -> int:
        seqs = [int(s["file"][-12:-6]) for s in self.manifest["shards"]]
        return max(seqs, default=-1) + 1

    def add(self, result: ImageResult) -> None:
        """Buffer one image's result; write a shard when the buffer is full."""
        for record in result.records:
            record.generator = self.provenance_id
        self._buffer.append(result)
        if len(self._buffer) >= self.images_per_shard:
            self.flush()

    def flush(self) -> None:
        """Write the buffered images as one shard and record it in the process manifest (no-op when empty)."""
        if not self._buffer:
            return
        name = SHARD.format(rank=self.rank, seq=self.next_seq)
        lines = [record.to_json() for result in self._buffer for record in result.records]
        data = ("\n".join(lines) + "\n" if lines else "").encode("utf-8")
        atomic_write(self.root / name, data)
        stats = GenerationStats()
        for result in self._buffer:
            stats.add_result(result, self.tau)
        self.manifest["shards"].append(
            {
                "file": name,
                "records": len(lines),
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "images": [r.image_id for r in self._buffer if r.skip_reason is None],
                "skipped": {r.image_id: r.skip_reason for r in self._buffer if r.skip_reason is not None},
                "stats": stats.to_dict(),
            }
        )
        self.manifest["image_root"] = self.image_root
        atomic_write(self.manifest_path, json.dumps(self.manifest, indent=1).encode("utf-8"))
        self._buffer = []


def merge_manifests(root: str | Path, image_root: str | None = None, complete: bool = True) -> dict[str, Any]:
    """Merge the per-process manifests of ``root`` into ``manifest.json`` and delete orphan shard files.

    Call it when no process is writing (after generation). ``image_root`` overrides the recorded image root;
    ``complete`` records whether every image of the input list is done (false after a run with a ``limit``).
    Returns the merged manifest.
    """
    root = Path(root)
    manifests = rank_manifests(root)
    if not manifests:
        raise FileNotFoundError(f"{root}: no per-process manifest (manifest-rNNN.json); nothing was generated")
    first = next(iter(manifests.values()))
    check_folder_provenance(root, first["provenance"])
    shards, totals, seen = [], GenerationStats(), {}
    for _, manifest in sorted(manifests.items()):
        for shard in manifest["shards"]:
            for image_id in [*shard["images"], *shard["skipped"]]:
                if image_id in seen:
                    raise ValueError(
                        f"{root}: image {image_id!r} is in both {seen[image_id]} and {shard['file']}; the folder "
                        f"was written by overlapping runs"
                    )
                seen[image_id] = shard["file"]
            shards.append({k: shard[k] for k in ("file", "records", "bytes", "sha256")} | {
                "images": len(shard["images"]), "skipped": len(shard["skipped"])})
            totals.add(GenerationStats.from_dict(shard["stats"]))
    listed = {s["file"] for s in shards}
    for path in root.iterdir():
        if SHARD_RE.match(path.name) and path.name not in listed:
            log.info("removing orphan shard file %s", path)
            path.unlink()
    merged = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "provenance_id": first["provenance_id"],
        "provenance": first["provenance"],
        "tau": first["tau"],
        "image_root": image_root if image_root is not None else first["image_root"],
        "complete": complete,
        "ranks": sorted(manifests),
        "shards": shards,
        "totals": totals.to_dict(),
    }
    atomic_write(root / MANIFEST, json.dumps(merged, indent=1).encode("utf-8"))
    return merged
