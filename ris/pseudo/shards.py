"""Pseudo-label shards: JSON Lines files written per process, manifests, and readers.

Layout of a shard folder (``ris generate --output.dir DIR``)::

    DIR/shard-r{rank:03d}-{seq:06d}.jsonl   one PseudoRecord per line (ris.pseudo.records), whole images per shard
    DIR/manifest-r{rank:03d}.json           per-process manifest: finished shards, their image ids, skips, counts
    DIR/manifest.json                       merged manifest: provenance, image root, shard list, totals

Writing: every process buffers whole images and writes a shard when it holds ``images_per_shard`` images (and at
the end). A shard is written to a temporary name and renamed; then the process's manifest is rewritten the same
way. A shard file not listed in a manifest (a kill between the two renames) is an orphan: its images count as not
done, and the orphan is deleted when its process restarts or when the manifests are merged. Images already listed
in a manifest (with records or skipped with a reason) are what "done" means for resume.

Provenance: the generator's description (model names, checkpoint hashes, settings, seed, versions) is stored in
the manifests; every record carries its short id (``generator``). Resuming into a folder written with a different
provenance is refused.

Reading: :class:`ShardSet` opens a folder (a local path or any fsspec URL) through ``manifest.json``;
:class:`ShardRecords` is a map-style dataset (an index of line offsets, for local or shared disks, to be used with a
``DistributedSampler``); :class:`StreamingShardRecords` iterates shards assigned to this (rank, worker), for
streaming from object storage. Shards are plain text: ``head -1 shard-r000-000000.jsonl | python -m json.tool``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from ris.atomic import atomic_write
from ris.pseudo.caption_choice import kept_flags
from ris.pseudo.records import PseudoRecord

log = logging.getLogger(__name__)

FORMAT = "pseudo-ris-shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_RANK_MANIFEST = "manifest-r{rank:03d}.json"
_SHARD = "shard-r{rank:03d}-{seq:06d}.jsonl"
_SHARD_RE = re.compile(r"^shard-r(\d{3})-(\d{6})\.jsonl$")
_RANK_MANIFEST_RE = re.compile(r"^manifest-r(\d{3})\.json$")


def provenance_id(provenance: dict[str, Any]) -> str:
    """Short stable id of a provenance dict (sha256 of its canonical JSON, 16 hex digits)."""
    return hashlib.sha256(json.dumps(provenance, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class ImageResult:
    """What the generator produced for one image.

    Attributes:
        image_id: the image id.
        records: one record per kept mask (empty when the image is skipped).
        skip_reason: a short category (``unreadable``, ``no_masks``, ``all_masks_dropped``, ``mask_source_error``)
            when the image produced no record, else ``None``.
        masks_dropped: masks dropped before captioning, per reason (``small``, ``full_image``, ``duplicate``,
            ``over_limit``).
        message: details of the skip (logged, not counted).
    """

    image_id: str
    records: list[PseudoRecord] = field(default_factory=list)
    skip_reason: str | None = None
    masks_dropped: dict[str, int] = field(default_factory=dict)
    message: str = ""


@dataclass
class GenerationStats:
    """Counts over a set of images; additive across shards and processes.

    ``kept`` counts candidates kept at the manifest's τ (DoS > τ; top half for one-mask images); ``dos_sum`` /
    ``dos_count`` cover the DoS of multi-mask candidates; ``negative_scores`` counts multi-mask candidates whose
    DoS is negative (negative CLIP logits, method.md §0.2); ``no_contrast`` counts multi-mask records captioned
    without contrast (K above the decoder's bound).
    """

    images: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    masks: int = 0
    masks_dropped: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    kept: int = 0
    empty_captions: int = 0
    dos_sum: float = 0.0
    dos_count: int = 0
    negative_scores: int = 0
    one_mask: int = 0
    no_contrast: int = 0

    @property
    def mean_dos(self) -> float:
        return self.dos_sum / self.dos_count if self.dos_count else float("nan")

    def add_result(self, result: ImageResult, tau: float) -> None:
        """Count one image's result."""
        if result.skip_reason is not None:
            self.skipped[result.skip_reason] = self.skipped.get(result.skip_reason, 0) + 1
        else:
            self.images += 1
        for reason, n in result.masks_dropped.items():
            if n:
                self.masks_dropped[reason] = self.masks_dropped.get(reason, 0) + n
        for record in result.records:
            self.masks += 1
            self.candidates += len(record.captions)
            self.kept += sum(kept_flags(record, tau))
            self.empty_captions += sum(not c.strip() for c in record.captions)
            if record.one_mask:
                self.one_mask += 1
                continue
            if not record.contrast:
                self.no_contrast += 1
            scores = [d for d in record.dos if d is not None]
            self.dos_sum += float(sum(scores))
            self.dos_count += len(scores)
            self.negative_scores += sum(d < 0 for d in scores)

    def add(self, other: GenerationStats) -> None:
        """Add ``other``'s counts to these."""
        for name in ("images", "masks", "candidates", "kept", "empty_captions", "dos_sum", "dos_count",
                     "negative_scores", "one_mask", "no_contrast"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("skipped", "masks_dropped"):
            mine = Counter(getattr(self, name))
            mine.update(getattr(other, name))
            setattr(self, name, dict(sorted(mine.items())))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationStats:
        return cls(**data)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable manifest ({err})") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} manifest (missing or wrong 'format')")
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: manifest version {data.get('version')}, this code reads {FORMAT_VERSION}")
    return data


def rank_manifests(root: str | Path) -> dict[int, dict[str, Any]]:
    """The per-process manifests in ``root`` by rank (empty when there is none)."""
    root = Path(root)
    if not root.is_dir():
        return {}
    out = {}
    for path in sorted(root.iterdir()):
        match = _RANK_MANIFEST_RE.match(path.name)
        if match:
            out[int(match.group(1))] = _read_json(path)
    return out


def done_image_ids(root: str | Path) -> set[str]:
    """Ids of the images listed in any per-process manifest of ``root`` (with records or skipped)."""
    done: set[str] = set()
    for manifest in rank_manifests(root).values():
        for shard in manifest["shards"]:
            done.update(shard["images"])
            done.update(shard["skipped"])
    return done


def check_provenance(root: str | Path, provenance: dict[str, Any]) -> None:
    """Refuse to add to ``root`` when its manifests were written with a different provenance."""
    pid = provenance_id(provenance)
    provenance = json.loads(json.dumps(provenance))
    for rank, manifest in rank_manifests(root).items():
        if manifest["provenance_id"] != pid:
            old = manifest["provenance"]
            keys = sorted(k for k in set(old) | set(provenance) if old.get(k) != provenance.get(k))
            raise ValueError(
                f"{Path(root) / _RANK_MANIFEST.format(rank=rank)} was written by a generator with different "
                f"settings (differing keys: {', '.join(keys)}); use a new output folder or restore the settings"
            )


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
        tau: float = 1.3,
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
        self.manifest_path = self.root / _RANK_MANIFEST.format(rank=rank)
        check_provenance(self.root, provenance)
        if self.manifest_path.exists():
            self.manifest = _read_json(self.manifest_path)
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
            match = _SHARD_RE.match(path.name)
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
        name = _SHARD.format(rank=self.rank, seq=self.next_seq)
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
    check_provenance(root, first["provenance"])
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
        if _SHARD_RE.match(path.name) and path.name not in listed:
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


class ShardSet:
    """A finished shard folder (local path or fsspec URL) opened through its ``manifest.json``.

    Attributes:
        root: the folder as given.
        manifest: the merged manifest.
        files: full paths/URLs of the shard files in manifest order.
        image_root: root of relative image paths (the manifest's, unless overridden).
    """

    def __init__(self, root: str | Path, image_root: str | None = None) -> None:
        self.root = str(root)
        self.fs, self._path = fsspec.core.url_to_fs(self.root)
        manifest_path = f"{self._path.rstrip('/')}/{MANIFEST}"
        if not self.fs.exists(manifest_path):
            raise FileNotFoundError(
                f"{self.root}: no {MANIFEST}; the shards are missing or generation did not finish "
                f"(run `ris generate --config ... --output.dir {self.root}`)"
            )
        with self.fs.open(manifest_path, "r") as handle:
            try:
                self.manifest = json.load(handle)
            except json.JSONDecodeError as err:
                raise ValueError(f"{self.root}/{MANIFEST}: not valid JSON ({err})") from err
        if self.manifest.get("format") != FORMAT or self.manifest.get("version") != FORMAT_VERSION:
            raise ValueError(f"{self.root}/{MANIFEST}: not a {FORMAT} v{FORMAT_VERSION} manifest")
        self.files = [f"{self._path.rstrip('/')}/{s['file']}" for s in self.manifest["shards"]]
        self.image_root = image_root if image_root is not None else self.manifest["image_root"]

    @property
    def num_records(self) -> int:
        return sum(s["records"] for s in self.manifest["shards"])

    @property
    def provenance(self) -> dict[str, Any]:
        return self.manifest["provenance"]

    def read_shard(self, index: int) -> Iterator[PseudoRecord]:
        """The records of shard ``index``, validated, in file order."""
        path = self.files[index]
        with self.fs.open(path, "r", encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if line.strip():
                    yield PseudoRecord.from_json(line, f"{path}:{line_no}")

    def __iter__(self) -> Iterator[PseudoRecord]:
        for index in range(len(self.files)):
            yield from self.read_shard(index)

    def verify(self) -> None:
        """Check every shard's record count and sha256 against the manifest (raises ``ValueError`` naming the file)."""
        for path, shard in zip(self.files, self.manifest["shards"]):
            with self.fs.open(path, "rb") as handle:
                data = handle.read()
            if hashlib.sha256(data).hexdigest() != shard["sha256"]:
                raise ValueError(f"{path}: content differs from the manifest's sha256")
            lines = data.count(b"\n")
            if lines != shard["records"]:
                raise ValueError(f"{path}: {lines} records, the manifest lists {shard['records']}")


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
