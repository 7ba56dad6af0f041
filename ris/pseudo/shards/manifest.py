"""The shard folder's format: file names, format constants and the per-process manifests.

Layout of a shard folder (``ris generate --output.dir DIR``)::

    DIR/shard-r{rank:03d}-{seq:06d}.jsonl   one PseudoRecord per line (ris.pseudo.records), whole images per shard
    DIR/manifest-r{rank:03d}.json           per-process manifest: finished shards, their image ids, skips (reason
                                            category and message per image), counts
    DIR/manifest.json                       merged manifest: provenance, image root, shard list, totals

Images listed in a per-process manifest (with records or skipped with a reason) whose shard file is intact are what
"done" means for resume (:func:`ris.pseudo.shards.verification.done_image_ids`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ris.pseudo.provenance import check_provenance

FORMAT = "pseudo-ris-shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
RANK_MANIFEST = "manifest-r{rank:03d}.json"
SHARD = "shard-r{rank:03d}-{seq:06d}.jsonl"
SHARD_RE = re.compile(r"^shard-r(\d{3})-(\d{6})\.jsonl$")
RANK_MANIFEST_RE = re.compile(r"^manifest-r(\d{3})\.json$")


def read_manifest(path: Path) -> dict[str, Any]:
    """A per-process manifest, checked to be of this format and version (``ValueError`` naming the file)."""
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
        match = RANK_MANIFEST_RE.match(path.name)
        if match:
            out[int(match.group(1))] = read_manifest(path)
    return out


def check_folder_provenance(root: str | Path, provenance: dict[str, Any]) -> None:
    """Refuse to add to ``root`` when its manifests were written with a different provenance."""
    manifests = rank_manifests(root)
    check_provenance({Path(root) / RANK_MANIFEST.format(rank=rank): m for rank, m in manifests.items()}, provenance)


@dataclass(frozen=True)
class SkippedImage:
    """An image generation skipped: its id, file (when known), reason category and message."""

    image_id: str
    path: str
    reason: str
    message: str

    def __str__(self) -> str:
        where = f" ({self.path})" if self.path else ""
        message = " ".join(self.message.split())  # one line per image, whatever the exception printed
        return f"{self.image_id}{where}: {self.reason}" + (f" — {message}" if message else "")


def skipped_images(folder: str | Path, paths: dict[str, str] | None = None) -> list[SkippedImage]:
    """Every image skipped in the shard folder (all runs), by id, with its file from ``paths``."""
    paths = paths or {}
    out = []
    for _, manifest in sorted(rank_manifests(folder).items()):
        for shard in manifest["shards"]:
            messages = shard.get("skip_messages", {})
            for image_id, reason in shard["skipped"].items():
                out.append(SkippedImage(image_id, paths.get(image_id, ""), reason, messages.get(image_id, "")))
    return sorted(out, key=lambda s: s.image_id)
