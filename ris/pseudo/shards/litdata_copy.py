"""The LitData copy of a shard folder, for training from object storage on many GPUs and nodes (docs/data.md §5).

The JSON Lines shards stay the inspectable, resumable generation output. ``ris optimize SHARDS --out DIR`` verifies
them (refusing missing or damaged shards unless ``--skip-damaged``) and writes their records that have a caption to
draw as LitData chunks with ``litdata.optimize``: one item per record, ``{"record": <its JSON line>}``. ``DIR`` may
be local or remote (``s3://…``, ``gs://…``: LitData writes and reads it); ``DIR/pseudo-ris.json`` records the source
(provenance id, image root, record count), read back for the image root (pass ``image_root`` when it cannot be
read, e.g. a remote folder without an fsspec backend).

Training reads it with :func:`litdata_dataset` (a ``litdata.StreamingDataset`` whose transform draws the caption and
builds the sample) and ``litdata.StreamingDataLoader``. LitData assigns chunks to ranks and dataloader workers
itself (world size and rank from ``torch.distributed``): under DDP every rank gets the same number of samples
(``drop_last``), no sample is read twice in an epoch, and every sample is read once when the record count is a
multiple of ``world_size × batch_size``; otherwise up to that many minus one are left out of the epoch (with
``shuffle``, different ones each epoch). The loader's position is saved into Lightning checkpoints (it is a stateful
dataloader) and restored by ``ris fit --ckpt_path``, so a run resumed from a mid-epoch checkpoint continues the
epoch with the samples not yet seen (docs/using_pseudo_labels_elsewhere.md says what is tested).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import fsspec

from ris.pseudo.records import PseudoRecord

from .index import ShardIndex
from .shard_set import ShardSet

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")  # no PyPI request at every dataset start

log = logging.getLogger(__name__)

METADATA = "pseudo-ris.json"
FORMAT = "pseudo-ris-litdata"


def _shard_items(shard: int, root: str) -> Iterator[dict[str, str]]:
    """The LitData items of one shard (its records with a caption), in file order (runs in optimize workers)."""
    shards = ShardSet(root)
    index = ShardIndex.open(shards, [shard], progress=False, save=False)
    usable = index.usable(shard)
    with shards.fs.open(shards.files[shard], "r", encoding="utf-8") as handle:
        position = 0
        for line in handle:
            if line.strip():
                if usable[position]:
                    yield {"record": line.rstrip("\n")}
                position += 1


def optimize_shards(
    shards_dir: str,
    out: str,
    chunk_bytes: str = "64MB",
    num_workers: int = 1,
    skip_damaged: bool = False,
    image_root: str | None = None,
) -> dict[str, Any]:
    """Write the LitData copy of ``shards_dir`` to ``out`` (see the module docstring); returns the metadata."""
    from litdata import StreamingDataset, optimize

    shards = ShardSet(shards_dir, image_root)
    problems = shards.problems(progress=True)
    damaged = {i: p for i, p in problems.items() if p.damaged}
    if damaged and not skip_damaged:
        raise ValueError(f"{shards_dir}: {len(damaged)} missing or damaged shard(s): "
                         f"{'; '.join(str(p) for p in damaged.values())}; rerun `ris generate` to repair them, or "
                         "pass --skip-damaged")
    include = [i for i in range(len(shards.files)) if i not in damaged]
    index = ShardIndex.open(shards, include)
    records = sum(index.count(i) for i in include)
    if records == 0:
        raise ValueError(f"{shards_dir}: no record with a caption to optimize")
    fork = "fork" if "fork" in multiprocessing.get_all_start_methods() else None  # spawn re-imports __main__
    optimize(fn=partial(_shard_items, root=shards.root), inputs=include, output_dir=out, chunk_bytes=chunk_bytes,
             num_workers=max(1, num_workers), mode="overwrite", verbose=False, start_method=fork)
    try:
        written = len(StreamingDataset(out))
    except (AssertionError, ValueError, FileNotFoundError):  # litdata asserts on a copy without chunks
        written = 0
    if written != records:
        raise RuntimeError(f"{out}: litdata.optimize wrote {written} of {records} records (see its log above)")
    metadata = {"format": FORMAT, "source": shards.root, "provenance_id": shards.manifest["provenance_id"],
                "image_root": shards.image_root, "records": records,
                "skipped_shards": [p.file for p in damaged.values()]}
    fs, path = fsspec.core.url_to_fs(out)
    fs.pipe_file(f"{path.rstrip('/')}/{METADATA}", json.dumps(metadata, indent=1).encode("utf-8"))
    return metadata


def read_metadata(out: str) -> dict[str, Any] | None:
    """``DIR/pseudo-ris.json`` of a LitData copy, or ``None`` when it cannot be read."""
    try:
        fs, path = fsspec.core.url_to_fs(out)
        with fs.open(f"{path.rstrip('/')}/{METADATA}", "r") as handle:
            data = json.load(handle)
    except (ImportError, OSError, ValueError) as err:
        log.info("%s: no readable %s (%s)", out, METADATA, err)
        return None
    return data if data.get("format") == FORMAT else None


def epoch_loader(dataset: Any, **kwargs: Any) -> Any:
    """A ``litdata.StreamingDataLoader`` over ``dataset`` whose restored position is used by one epoch only.

    LitData clears its "restored" flag only when an iteration runs to its end; Lightning ends an epoch after
    ``len(loader)`` batches without exhausting the iterator, so after a mid-epoch resume LitData can replay the
    restored position in the next epoch too (measured with ``num_workers=0``, litdata 0.2.76, Lightning 2.6: the
    epoch after the resumed one had 2 of its 8 batches, in the resumed epoch's order). Here the first iteration
    after ``load_state_dict`` continues the interrupted epoch and the next one starts a new epoch.
    """
    from litdata import StreamingDataLoader

    class EpochStreamingDataLoader(StreamingDataLoader):
        _resume_pending = False

        def load_state_dict(self, obj: dict[str, Any]) -> None:
            super().load_state_dict(obj)
            self._resume_pending = True

        def __iter__(self) -> Iterator[Any]:
            if self.restore and not self._resume_pending:
                self.restore = False
            self._resume_pending = False
            yield from super().__iter__()

    return EpochStreamingDataLoader(dataset, **kwargs)


def litdata_ready(out: str) -> bool:
    """Whether ``out`` holds a finished LitData copy (its metadata, written last, or else readable chunks)."""
    if read_metadata(out) is not None:
        return True
    from litdata import StreamingDataset

    try:
        return len(StreamingDataset(out)) > 0
    except (AssertionError, ValueError, FileNotFoundError, OSError):
        return False


def _decode(item: dict[str, str]) -> PseudoRecord:
    return PseudoRecord.from_json(item["record"], "litdata item")


def litdata_dataset(
    out: str,
    build: Callable[[PseudoRecord], Any],
    shuffle: bool = True,
    seed: int = 0,
    cache_dir: str | None = None,
    options: dict[str, Any] | None = None,
) -> Any:
    """A ``litdata.StreamingDataset`` over the LitData copy ``out`` yielding ``build(record)`` (``options``: more
    ``StreamingDataset`` arguments, e.g. ``storage_options``, ``max_cache_size``)."""
    from litdata import StreamingDataset

    return StreamingDataset(out, cache_dir=cache_dir, shuffle=shuffle, seed=seed, transform=[_decode, build],
                            **(options or {}))


def main(argv: Sequence[str]) -> int:
    """Entry point of ``ris optimize``."""
    parser = argparse.ArgumentParser(prog="ris optimize", description=(
        "Write the LitData copy of a pseudo-label shard folder (litdata.optimize), for StreamingDataset training "
        "from a local folder or object storage (PseudoRISDataModule litdata: DIR)."))
    parser.add_argument("shards", help="shard folder written by `ris generate` or `ris import-labels`")
    parser.add_argument("--out", required=True, help="output folder: local, s3://… or gs://…")
    parser.add_argument("--chunk-bytes", default="64MB", help="LitData chunk size (default 64MB)")
    parser.add_argument("--num-workers", type=int, default=1, help="optimize worker processes")
    parser.add_argument("--skip-damaged", action="store_true", help="leave missing/damaged shards out (reported)")
    parser.add_argument("--image-root", default=None, help="root of the records' images (default: the manifest's)")
    args = parser.parse_args(list(argv))
    metadata = optimize_shards(args.shards, args.out, args.chunk_bytes, args.num_workers, args.skip_damaged,
                               args.image_root)
    print(f"{args.out}: {metadata['records']} records from {args.shards}"
          + (f" (skipped {len(metadata['skipped_shards'])} damaged shards)" if metadata["skipped_shards"] else ""))
    return 0
