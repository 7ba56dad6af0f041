"""Reading a finished shard folder (a local path or any fsspec URL) through its ``manifest.json``.

Shards are plain text: ``head -1 shard-r000-000000.jsonl | python -m json.tool``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec

from ris.formats.errors import BadSampleError
from ris.pseudo.records import PseudoRecord

from .manifest import FORMAT, FORMAT_VERSION, MANIFEST
from .verification import ShardProblem, check_entries

BadRecordHandler = Callable[[BadSampleError], None]
"""What a reader does with a bad record line under a skip policy (the datamodules record and report it)."""


class ShardSet:
    """A finished shard folder (local path or fsspec URL) opened through its ``manifest.json``.

    Attributes:
        root: the folder as given; ``fs``, ``path``: its fsspec filesystem and path.
        manifest: the merged manifest.
        files: full paths/URLs of the shard files in manifest order.
        image_root: root of relative image paths (the manifest's, unless overridden).
    """

    def __init__(self, root: str | Path, image_root: str | None = None) -> None:
        self.root = str(root)
        self.fs, self.path = fsspec.core.url_to_fs(self.root)
        manifest_path = f"{self.path.rstrip('/')}/{MANIFEST}"
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
        self.files = [f"{self.path.rstrip('/')}/{s['file']}" for s in self.manifest["shards"]]
        self.image_root = image_root if image_root is not None else self.manifest["image_root"]

    @property
    def num_records(self) -> int:
        """Records as the manifest lists them (readers count from the files: :mod:`~ris.pseudo.shards.index`)."""
        return sum(s["records"] for s in self.manifest["shards"])

    @property
    def provenance(self) -> dict[str, Any]:
        return self.manifest["provenance"]

    def read_shard(self, index: int, on_bad: BadRecordHandler | None = None) -> Iterator[PseudoRecord]:
        """The records of shard ``index``, validated, in file order. A bad line raises its
        :class:`~ris.formats.errors.BadSampleError`, or is passed to ``on_bad`` and left out."""
        path = self.files[index]
        with self.fs.open(path, "r", encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = PseudoRecord.from_json(line, f"{path}:{line_no}")
                except BadSampleError as err:
                    if on_bad is None:
                        raise
                    on_bad(err)
                    continue
                yield record

    def __iter__(self) -> Iterator[PseudoRecord]:
        for index in range(len(self.files)):
            yield from self.read_shard(index)

    def problems(self, progress: bool = False) -> dict[int, ShardProblem]:
        """Missing, damaged and miscounted shards by position (:mod:`~ris.pseudo.shards.verification`; reads every
        shard once)."""
        found = check_entries(self.fs, self.path, self.manifest["shards"], progress)
        return {i: found[s["file"]] for i, s in enumerate(self.manifest["shards"]) if s["file"] in found}

    def verify(self) -> None:
        """Raise ``ValueError`` listing every shard whose file differs from its manifest entry."""
        problems = self.problems()
        if problems:
            listed = "; ".join(str(p) for p in problems.values())
            raise ValueError(f"{self.root}: {len(problems)} shard(s) differ from the manifest: {listed}")
