"""Reading a finished shard folder (a local path or any fsspec URL) through its ``manifest.json``.

Shards are plain text: ``head -1 shard-r000-000000.jsonl | python -m json.tool``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec

from ris.pseudo.records import PseudoRecord

from .manifest import FORMAT, FORMAT_VERSION, MANIFEST


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
