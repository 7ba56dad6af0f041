"""Benchmark: start-up time and samples/s of the pseudo-label shard readers, side by side in one run (issue 15).

On ``--records`` synthetic records (44 captions each, like the official output; a few shared masks), written as
shards by :class:`~ris.pseudo.shards.ShardWriter` and merged (which verifies them and writes the record index):

- **previous**: the map-style reader before the record index — it parsed every record of every shard at start-up
  to collect the line offsets (re-implemented below as it was);
- **indexed**: :class:`~ris.pseudo.shards.ShardRecords` over :class:`~ris.pseudo.shards.ShardIndex`; start-up =
  verification of every shard (sha256, size, line count; ``PseudoRISDataModule``'s default) + loading
  ``index.npz``, and also without the verification (``verify_shards: false``);
- **litdata**: ``litdata.StreamingDataset`` + the ``StreamingDataLoader`` of ``PseudoRISDataModule`` over the
  ``ris optimize`` copy; start-up = opening both and the first batch.

Samples/s: ``--reads`` records decoded to :class:`~ris.pseudo.records.PseudoRecord` in shuffled order (no image
decoding: the readers are measured, not the image pipeline), 32 per batch, ``--workers`` dataloader workers. The
one-time costs (writing and merging the shards, building the index, the LitData copy) are printed too. Start-up is
paid by every training process.

Run: ``.venv/bin/python bench/shard_readers.py --records 100000`` (about 1.5 GB in a temporary folder).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from ris.pseudo.records import PseudoRecord, mask_box, mask_to_rle
from ris.pseudo.shards import INDEX, ImageResult, ShardIndex, ShardRecords, ShardSet, ShardWriter, merge_manifests
from ris.pseudo.shards.litdata_copy import epoch_loader, litdata_dataset, optimize_shards

WORDS = ("a the man woman dog cat red blue green small big left right shirt car tree table chair sign white black "
         "standing sitting holding near behind front wooden glass").split()
SAMPLERS = ["beam", "top_k=5", "top_k=7", "top_k=9", "top_k=11", "top_k=13", "top_p=0.4", "top_p=0.5", "top_p=0.6",
            "top_p=0.7", "top_p=0.8"]


def synthetic_records(image_id: str, masks: int, rng: random.Random, rles: list) -> list[PseudoRecord]:
    out = []
    for k in range(masks):
        rle, box, area = rles[(int(image_id) + k) % len(rles)]
        captions = [" ".join(rng.choices(WORDS, k=rng.randint(3, 9))) + " " for _ in range(44)]
        out.append(PseudoRecord(
            sample_id=f"{image_id}:{k}", image_id=image_id, image=f"{image_id}.jpg", height=480, width=640,
            mask_index=k, mask=rle, box=box, area=area, num_masks=masks, one_mask=masks == 1,
            contrast=masks > 1, captions=captions, sampler=SAMPLERS * 4, crop=[t for t in range(4) for _ in SAMPLERS],
            dos=[rng.uniform(0.6, 1.8) for _ in range(44)], uos=[rng.uniform(0.8, 1.3) for _ in range(44)],
            cos=[rng.uniform(15, 30) for _ in range(44)], generator="",
        ))
    return out


def write_shards(root: Path, records: int, images_per_shard: int) -> float:
    rng = random.Random(0)
    rles = []
    for k in range(8):
        mask = np.zeros((480, 640), bool)
        mask[40 * k:40 * k + 120, 60 * k:60 * k + 200] = True
        rles.append((mask_to_rle(mask), mask_box(mask), int(mask.sum())))
    start = time.perf_counter()
    writer = ShardWriter(root, 0, {"bench": "shard_readers"}, images_per_shard, image_root=str(root))
    written, image = 0, 0
    while written < records:
        masks = min(rng.randint(1, 9), records - written)
        writer.add(ImageResult(f"{image:08d}", synthetic_records(f"{image:08d}", masks, rng, rles)))
        written, image = written + masks, image + 1
    writer.flush()
    merge_manifests(root, progress=False)
    return time.perf_counter() - start


def previous_start_up(shards: ShardSet) -> int:
    """The start-up of the map-style reader before the index: every record parsed to find the line offsets."""
    offsets = []
    for index, path in enumerate(shards.files):
        with shards.fs.open(path, "rb") as handle:
            offset = 0
            for line_no, line in enumerate(handle, start=1):
                if line.strip():
                    record = PseudoRecord.from_json(line.decode("utf-8"), f"{path}:{line_no}")
                    if any(c.strip() for c in record.captions):
                        offsets.append((index, offset))
                offset += len(line)
    return len(offsets)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def map_style_rate(records: ShardRecords, reads: int, workers: int) -> float:
    loader = DataLoader(records, batch_size=32, shuffle=True, num_workers=workers, collate_fn=list)
    return loader_rate(loader, reads)


def loader_rate(loader: object, reads: int) -> float:
    """Samples per second of iterating ``loader`` (any iterable of batches) until ``reads`` samples."""
    seen, start = 0, time.perf_counter()
    for batch in loader:
        seen += len(batch)
        if seen >= reads:
            break
    return seen / (time.perf_counter() - start)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--images-per-shard", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=20_000, help="records read for the samples/s figures")
    parser.add_argument("--workers", type=int, default=0, help="dataloader workers")
    parser.add_argument("--dir", default=None, help="work folder (default: a temporary one, removed at the end)")
    args = parser.parse_args(list(argv))
    work = Path(args.dir or tempfile.mkdtemp(prefix="shard_readers_"))
    shards_dir, lit_dir = work / "shards", work / "litdata"
    try:
        write_s = write_shards(shards_dir, args.records, args.images_per_shard)
        shards = ShardSet(shards_dir)
        size = sum(s["bytes"] for s in shards.manifest["shards"]) / 2**20
        (shards_dir / INDEX).unlink()
        build_s, _ = timed(lambda: ShardIndex.open(shards, progress=False))
        optimize_s, _ = timed(lambda: optimize_shards(str(shards_dir), str(lit_dir), num_workers=max(1, args.workers)))

        previous_s, n_previous = timed(lambda: previous_start_up(ShardSet(shards_dir)))

        def indexed(verify: bool) -> ShardRecords:
            fresh = ShardSet(shards_dir)
            if verify:
                assert not fresh.problems()
            return ShardRecords(ShardIndex.open(fresh, progress=False))

        indexed_s, records = timed(lambda: indexed(True))
        no_verify_s, _ = timed(lambda: indexed(False))
        assert len(records) == n_previous == args.records

        def litdata_start() -> object:
            dataset = litdata_dataset(str(lit_dir), lambda record: record, shuffle=True)
            loader = epoch_loader(dataset, batch_size=32, num_workers=args.workers, collate_fn=list)
            next(iter(loader))
            return loader

        litdata_s, _ = timed(litdata_start)
        loader = epoch_loader(litdata_dataset(str(lit_dir), lambda record: record, shuffle=True), batch_size=32,
                              num_workers=args.workers, collate_fn=list)
        rate_indexed = map_style_rate(records, args.reads, args.workers)
        rate_litdata = loader_rate(loader, args.reads)
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)

    print(f"{args.records} records in {len(shards.files)} shards ({size:.0f} MiB), {args.workers} workers, "
          f"{args.reads} reads")
    print(f"one-time: write + merge (verify, index) {write_s:.1f} s; index build alone {build_s:.1f} s; "
          f"LitData copy {optimize_s:.1f} s")
    print()
    print("| reader | start-up per process | vs previous | samples/s | vs indexed |")
    print("|---|---|---|---|---|")
    print(f"| previous (parse every record) | {previous_s:.2f} s | 1.0× | {rate_indexed:.0f} (same read path) | 1.0× |")
    print(f"| indexed, verified (default) | {indexed_s:.2f} s | {previous_s / indexed_s:.1f}× faster | "
          f"{rate_indexed:.0f} | 1.0× |")
    print(f"| indexed, verify_shards: false | {no_verify_s:.3f} s | {previous_s / no_verify_s:.0f}× faster | "
          f"{rate_indexed:.0f} | 1.0× |")
    print(f"| LitData | {litdata_s:.2f} s | {previous_s / litdata_s:.1f}× faster | {rate_litdata:.0f} | "
          f"{rate_litdata / rate_indexed:.1f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
