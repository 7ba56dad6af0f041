"""Checking shard files against their manifest entries, and repairing the per-process manifests (docs/data.md §3.4).

A manifest entry records a shard's ``bytes``, ``sha256`` and ``records`` (lines). A shard is

- **missing**: the file is gone;
- **damaged**: its size or sha256 differs (a truncated file, a removed or edited line): its records cannot be
  trusted, and its images are not done;
- **miscounted**: the content is intact (size and sha256 match) but the entry's ``records`` differs from the file's
  line count (an edited manifest): the file is right, the count is taken from the file.

A rerun of ``ris generate`` therefore treats the images of missing and damaged shards as not done
(:func:`done_image_ids`) and drops those entries from the manifests (:func:`repair_rank_manifests`, run by
each process's writer for its own manifest and by the merge for all), so they are generated again; miscounted
entries get the file's count. Readers count records from the files (:mod:`~ris.pseudo.shards.index`), never from a
manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from ris.atomic import atomic_write

from .manifest import RANK_MANIFEST, rank_manifests

log = logging.getLogger(__name__)

Problem = Literal["missing", "damaged", "miscounted"]


@dataclass(frozen=True)
class ShardProblem:
    """What is wrong with one shard file (see the module docstring)."""

    file: str
    problem: Problem
    detail: str
    records: int | None = None
    """The file's line count, when its content is intact (``miscounted``)."""

    @property
    def damaged(self) -> bool:
        """Missing or damaged: the shard's records cannot be used."""
        return self.problem != "miscounted"

    def __str__(self) -> str:
        return f"{self.file}: {self.detail}"


def check_shard(data: bytes | None, entry: dict[str, Any], name: str) -> ShardProblem | None:
    """Compare a shard's content (``None`` = the file is missing) with its manifest ``entry``."""
    if data is None:
        return ShardProblem(name, "missing", "listed in the manifest but missing")
    if len(data) != entry["bytes"]:
        return ShardProblem(name, "damaged", f"{len(data)} bytes, the manifest lists {entry['bytes']} (truncated or "
                                             "edited)")
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        return ShardProblem(name, "damaged", "content differs from the manifest's sha256")
    lines = data.count(b"\n")
    if lines != entry["records"]:
        return ShardProblem(name, "miscounted", f"{lines} records, the manifest lists {entry['records']}", lines)
    return None


def read_or_none(fs: Any, path: str) -> bytes | None:
    """The bytes of ``path`` on the fsspec filesystem ``fs``, or ``None`` when it does not exist."""
    try:
        with fs.open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def check_entries(
    fs: Any, folder: str, entries: Sequence[dict[str, Any]], progress: bool = False, desc: str = "verify shards"
) -> dict[str, ShardProblem]:
    """Problems of the shards ``entries`` under ``folder`` (reads every file once), by file name."""
    problems = {}
    for entry in tqdm(entries, desc=desc, unit="shard", disable=not progress or not entries):
        problem = check_shard(read_or_none(fs, f"{folder.rstrip('/')}/{entry['file']}"), entry, entry["file"])
        if problem is not None:
            problems[entry["file"]] = problem
    return problems


def _local_problems(root: Path, entries: Iterable[dict[str, Any]]) -> dict[str, ShardProblem]:
    from fsspec.implementations.local import LocalFileSystem

    return check_entries(LocalFileSystem(), str(root), list(entries))


def done_image_ids(root: str | Path) -> set[str]:
    """Ids of the images listed in ``root``'s per-process manifests (with records or skipped) whose shard files are
    intact (miscounted ones included): what a rerun need not generate again. Reads every listed shard once."""
    root = Path(root)
    done: set[str] = set()
    for manifest in rank_manifests(root).values():
        problems = _local_problems(root, manifest["shards"])
        for shard in manifest["shards"]:
            problem = problems.get(shard["file"])
            if problem is None or not problem.damaged:
                done.update(shard["images"])
                done.update(shard["skipped"])
    return done


def repair_rank_manifests(root: str | Path, ranks: Iterable[int] | None = None) -> list[ShardProblem]:
    """Drop the entries of missing or damaged shards from the per-process manifests of ``ranks`` (default: all)
    and take miscounted entries' counts from their files; rewrites changed manifests atomically. The dropped
    shards' files become orphans (removed by the writer or the merge). Returns the problems found."""
    root = Path(root)
    found: list[ShardProblem] = []
    wanted = None if ranks is None else set(ranks)
    for rank, manifest in rank_manifests(root).items():
        if wanted is not None and rank not in wanted:
            continue
        problems = _local_problems(root, manifest["shards"])
        if not problems:
            continue
        kept = []
        for shard in manifest["shards"]:
            problem = problems.get(shard["file"])
            if problem is None:
                kept.append(shard)
                continue
            found.append(problem)
            if problem.damaged:
                log.warning("%s/%s; its %d images will be generated again", root, problem,
                            len(shard["images"]) + len(shard["skipped"]))
            else:
                log.warning("%s/%s; the count is taken from the file", root, problem)
                kept.append(shard | {"records": problem.records})
        manifest["shards"] = kept
        atomic_write(root / RANK_MANIFEST.format(rank=rank), json.dumps(manifest, indent=1).encode("utf-8"))
    return found
