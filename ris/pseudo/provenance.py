"""Provenance of pseudo-labels: everything that determines a generator's records, identified and hashed.

The generator describes itself as a provenance dict (model names, checkpoint hashes, settings, seed, package
versions; :meth:`ris.pseudo.generator.PseudoRISGenerator.provenance`). Its short id (:func:`provenance_id`) is
stamped on every record and stored with the dict in the shard manifests; :func:`check_provenance` refuses to add
records of another provenance to a folder (docs/data.md §3.4).

- :func:`checkpoint_id`: a model reference as provenance, with the sha256 of its file or ``local-dir:`` folder;
- :func:`with_checkpoint_hashes`: a mask source's settings with the hash of every ``checkpoint`` file;
- :func:`package_version`: the installed version of a distribution (``None`` when absent).

File hashes are cached per (path, size, mtime), so a resumed or multi-image run hashes each checkpoint once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any


@cache
def _sha256_file(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 of the file ``path`` (cached by resolved path, size and modification time)."""
    stat = path.stat()
    return _sha256_file(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def checkpoint_id(reference: str | None) -> dict[str, Any] | None:
    """Identify a model reference for provenance: a file or ``local-dir:`` folder gets its sha256 (for a folder,
    over its files' names and hashes); a name or pretrained tag is kept as ``{"name": ...}``."""
    if reference is None:
        return None
    folder = Path(reference.split(":", 1)[1]) if reference.startswith("local-dir:") else None
    if folder is not None and folder.is_dir():
        digest = hashlib.sha256()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(f"{path.relative_to(folder).as_posix()}:{file_sha256(path)}".encode())
        return {"path": reference, "sha256": digest.hexdigest()}
    path = Path(reference)
    if path.is_file():
        return {"path": reference, "sha256": file_sha256(path)}
    return {"name": reference}


def with_checkpoint_hashes(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with a ``checkpoint_sha256`` beside every ``checkpoint`` entry that is a file (recursively)."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        out[key] = with_checkpoint_hashes(value) if isinstance(value, dict) else value
        if key == "checkpoint" and isinstance(value, str) and Path(value).is_file():
            out["checkpoint_sha256"] = file_sha256(Path(value))
    return out


def package_version(package: str) -> str | None:
    """The installed version of the distribution ``package``, ``None`` when it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def provenance_id(provenance: dict[str, Any]) -> str:
    """Short stable id of a provenance dict (sha256 of its canonical JSON, 16 hex digits)."""
    return hashlib.sha256(json.dumps(provenance, sort_keys=True).encode()).hexdigest()[:16]


def check_provenance(manifests: Mapping[Path, Mapping[str, Any]], provenance: dict[str, Any]) -> None:
    """Refuse to add records of ``provenance`` where any of ``manifests`` (by file) was written with another one;
    the error names the file and the differing top-level keys."""
    pid = provenance_id(provenance)
    provenance = json.loads(json.dumps(provenance))
    for path, manifest in manifests.items():
        if manifest["provenance_id"] != pid:
            old = manifest["provenance"]
            keys = sorted(k for k in set(old) | set(provenance) if old.get(k) != provenance.get(k))
            raise ValueError(
                f"{path} was written by a generator with different settings (differing keys: {', '.join(keys)}); "
                "use a new output folder or restore the settings"
            )
