"""``ris import-labels``: the official Pseudo-RIS output → our pseudo-label shards (docs/data.md §3.3).

Input, as ``distinctive_caption_generation.py`` writes it:

- the **JSON Lines** file (one object per (image, mask): ``img_name, img_id, seg_id, num_sent, pseudo_caption,
  doc, one_mask``) or the **CSV** made from it (``index, img_name, …`` with the lists as Python-repr strings, read
  with :func:`ast.literal_eval`, never ``eval``);
- the masks ``MASK_DIR/{img_id}/{j}.png`` (uint8 0/255, original resolution);
- the images ``IMAGE_DIR/{img_name}`` (only their headers are read, to check the size).

Output: a shard folder as ``ris generate`` writes it (``ris.pseudo.shards``), one record per row: the 44 captions
with their ``doc`` as ``dos`` (DoS, or the raw CLIP score where ``one_mask`` is 1), ``one_mask``, ``num_masks`` = K
(the masks captioned together), ``contrast`` = K in [2, 30] (the official sampler's bound, docs/method.md §4.4),
``sampler``/``crop`` from the official caption order (docs/method.md §4.2), UoS/CoS null (the official output has
none), and the mask from its PNG (pixels > 0).

**The seg_id caveat** (docs/method.md §0.2): the official loader counts the files of ``{img_id}/``, reads ``0.png …
(n-1).png`` and skips every PNG holding a single value (all 0 or all 255); ``seg_id`` is the index into that
*filtered* list, while the official training dataset re-opens ``{img_id}/{seg_id}.png`` — the wrong mask once a
PNG before it was skipped. With ``seg_ids: filtered`` (default) we rebuild the filtered list the same way and map
``seg_id`` to the PNG the captions were generated for; ``mask_index`` is that PNG's number (the framework keeps
the original index). Images where this changes the mask are counted (``seg_id_remapped``).
``seg_ids: file`` takes ``seg_id`` as the PNG name (for outputs whose bug was fixed); a row whose PNG is
single-valued is then dropped.

Bad input costs one counted item, named in the log with its file and line: an unparsable row, lists of unequal
length, a seg_id without a mask (rows, dropped); an image with no mask folder, no mask, a missing image file or one
whose size differs from its masks (images, skipped with a reason). Rows of an image that appears again later in the
file (the official script appends, so a rerun duplicates images) are ignored after the first run of rows and
counted. A killed import resumes: images already in the shard folder are not imported again.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from rich.console import Console
from tqdm import tqdm

from ris.atomic import atomic_write
from ris.pseudo.provenance import file_sha256
from ris.pseudo.records import PseudoRecord, mask_box, mask_to_rle
from ris.pseudo.shards import ImageResult, ShardWriter, done_image_ids, merge_manifests

log = logging.getLogger(__name__)

OFFICIAL_SAMPLERS = [
    "beam", *(f"top_k={k}" for k in (5, 7, 9, 11, 13)), *(f"top_p={p}" for p in (0.4, 0.5, 0.6, 0.7, 0.8))
]
OFFICIAL_CROPS = 4
CONTRAST_BOUNDS = (2, 30)
COLUMNS = ("img_name", "img_id", "seg_id", "num_sent", "pseudo_caption", "doc", "one_mask")
REPORT_FILE = "import-report.json"

SegIds = Literal["filtered", "file"]


@dataclass
class OfficialRow:
    """One (image, mask) row of the official output; ``where`` is ``file:line``."""

    img_name: str
    img_id: int
    seg_id: int
    captions: list[str]
    doc: list[float | None]
    one_mask: bool
    where: str


class RowError(ValueError):
    """A row that cannot be read (the message names its file and line)."""


def _float(value: Any) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


def _row(data: dict[str, Any], where: str) -> OfficialRow:
    missing = [c for c in COLUMNS if c not in data]
    if missing:
        raise RowError(f"{where}: missing field(s) {', '.join(missing)}")
    captions, doc = data["pseudo_caption"], data["doc"]
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise RowError(f"{where}: pseudo_caption is not a list of strings")
    if not isinstance(doc, list) or len(doc) != len(captions):
        found = len(doc) if isinstance(doc, list) else "no"
        raise RowError(f"{where}: {found} doc values for {len(captions)} captions")
    try:
        scores = [_float(d) for d in doc]
        img_id, seg_id, one_mask = int(data["img_id"]), int(data["seg_id"]), int(data["one_mask"])
    except (TypeError, ValueError) as err:
        raise RowError(f"{where}: bad number ({err})") from err
    if one_mask not in (0, 1) or seg_id < 0:
        raise RowError(f"{where}: one_mask must be 0 or 1 and seg_id >= 0, got {one_mask}, {seg_id}")
    return OfficialRow(str(data["img_name"]), img_id, seg_id, list(captions), scores, bool(one_mask), where)


_NON_FINITE = re.compile(r"(?<![\w'\"])(nan|inf)(?![\w'\"])")


def _literal_list(text: str, where: str, column: str, numbers: bool) -> list:
    if numbers:
        text = _NON_FINITE.sub(lambda m: {"nan": "None", "inf": "1e999"}[m.group(1)], text)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as err:
        raise RowError(f"{where}: column {column} is not a Python list literal ({err})") from err
    if not isinstance(value, list):
        raise RowError(f"{where}: column {column} is not a list")
    return [float("nan") if v is None else v for v in value] if numbers else value


def read_rows(path: str | Path) -> Iterator[OfficialRow | RowError]:
    """The rows of an official JSON Lines (``.json``/``.jsonl``) or CSV (``.csv``) file, in file order; rows that
    cannot be read come as :class:`RowError` (the caller counts and logs them)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: official Pseudo-RIS output not found")
    if path.suffix.lower() == ".csv":
        yield from _read_csv(path)
        return
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise RowError(f"{where}: expected a JSON object")
                yield _row(data, where)
            except json.JSONDecodeError as err:
                yield RowError(f"{where}: not JSON ({err.msg})")
            except RowError as err:
                yield err


def _read_csv(path: Path) -> Iterator[OfficialRow | RowError]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or not set(COLUMNS) <= set(header):
            raise ValueError(f"{path}: expected a CSV header with {', '.join(COLUMNS)}, got {header}")
        for values in reader:
            where = f"{path}:{reader.line_num}"
            if len(values) != len(header):
                yield RowError(f"{where}: {len(values)} columns, the header has {len(header)}")
                continue
            data: dict[str, Any] = dict(zip(header, values))
            try:
                data["pseudo_caption"] = _literal_list(data["pseudo_caption"], where, "pseudo_caption", False)
                data["doc"] = _literal_list(data["doc"], where, "doc", True)
                yield _row(data, where)
            except RowError as err:
                yield err


def read_official_mask(path: Path) -> np.ndarray | None:
    """An official mask PNG as ``(H, W)`` bool (pixels > 0), or ``None`` when the official loader would skip it
    (missing, unreadable, or a single value)."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L") if image.mode not in ("L", "1", "I;16", "I") else image)
    except (OSError, ValueError):
        return None
    if pixels.size == 0 or pixels.min() == pixels.max():
        return None
    return pixels > 0


@dataclass
class ImportStats:
    """Counts of one import beyond the shard statistics.

    Attributes:
        rows: rows read; ``bad_rows``: rows that could not be read or mapped to a mask (by reason).
        duplicate_rows: rows of an image already imported earlier in the file, or repeating a seg_id.
        images_done_before: images found in the shard folder from an earlier (interrupted) import.
        seg_id_remapped: images whose filtered seg_ids name other PNGs than ``{seg_id}.png`` (docs/method.md §0.2).
        one_mask_mismatch: images whose ``one_mask`` flag disagrees with their number of loadable masks.
    """

    rows: int = 0
    bad_rows: dict[str, int] = field(default_factory=dict)
    duplicate_rows: int = 0
    images_done_before: int = 0
    seg_id_remapped: int = 0
    one_mask_mismatch: int = 0

    def bad(self, reason: str) -> None:
        self.bad_rows[reason] = self.bad_rows.get(reason, 0) + 1


class OfficialImporter:
    """Turns the rows of one image into an :class:`ImageResult` (see the module docstring).

    Args:
        mask_dir: the official mask folder (``{img_id}/{j}.png``).
        image_dir: the image folder (``{img_name}``).
        seg_ids: ``filtered`` (the official generator's meaning, default) or ``file``.
    """

    def __init__(self, mask_dir: str | Path, image_dir: str | Path, seg_ids: SegIds = "filtered") -> None:
        if seg_ids not in ("filtered", "file"):
            raise ValueError(f"seg_ids must be 'filtered' or 'file', got {seg_ids!r}")
        self.mask_dir, self.image_dir, self.seg_ids = Path(mask_dir), Path(image_dir), seg_ids
        if not self.mask_dir.is_dir():
            raise FileNotFoundError(f"{self.mask_dir}: mask folder not found (MASK_DIR/{{img_id}}/{{j}}.png)")
        self.stats = ImportStats()

    def _masks(self, img_id: int) -> tuple[dict[int, np.ndarray], int] | None:
        """``({file index: mask}, number of files)`` as the official loader sees them (it reads ``0.png`` …
        ``(n-1).png`` for the ``n`` files of the folder and skips single-valued ones), or ``None`` without a
        folder. The sorted keys are the official filtered list."""
        folder = self.mask_dir / str(img_id)
        if not folder.is_dir():
            return None
        count = sum(1 for p in folder.iterdir() if p.is_file())
        masks = {}
        for j in range(count):
            mask = read_official_mask(folder / f"{j}.png")
            if mask is not None:
                masks[j] = mask
        return masks, count

    def _image_size(self, img_name: str) -> tuple[int, int] | None:
        try:
            with Image.open(self.image_dir / img_name) as image:
                return image.height, image.width
        except (OSError, ValueError):
            return None

    def convert(self, rows: list[OfficialRow]) -> ImageResult:
        """The records of one image's rows (or the image skipped with a reason)."""
        first = rows[0]
        image_id = str(first.img_id)
        loaded = self._masks(first.img_id)
        if loaded is None:
            return ImageResult(image_id, skip_reason="masks_missing", message=f"{self.mask_dir / image_id} not found")
        masks, files = loaded
        filtered = sorted(masks)
        if not filtered:
            return ImageResult(image_id, skip_reason="no_masks", message=f"{self.mask_dir / image_id}: no loadable PNG")
        size = self._image_size(first.img_name)
        if size is None:
            return ImageResult(image_id, skip_reason="image_missing",
                               message=f"{self.image_dir / first.img_name} cannot be read")
        mask_size = masks[filtered[0]].shape
        if any(m.shape != mask_size for m in masks.values()) or size != mask_size:
            return ImageResult(image_id, skip_reason="size_mismatch",
                               message=f"image {size} (HxW) and masks {sorted({m.shape for m in masks.values()})}")
        k = len(filtered)
        if any(row.one_mask != (k == 1) for row in rows):
            self.stats.one_mask_mismatch += 1
            log.warning("%s: one_mask=%d but %d loadable masks in %s", first.where, first.one_mask, k,
                        self.mask_dir / image_id)
        records, remapped, seen = [], False, set()
        for row in rows:
            if row.seg_id in seen:
                self.stats.duplicate_rows += 1
                continue
            seen.add(row.seg_id)
            index = self._file_index(row, filtered)
            if index is None:
                continue
            remapped |= index != row.seg_id
            records.append(self._record(row, image_id, index, masks[index], k))
        self.stats.seg_id_remapped += remapped
        dropped = {"single_valued": files - k}
        if not records:
            return ImageResult(image_id, skip_reason="no_valid_rows", masks_dropped=dropped)
        return ImageResult(image_id, records, masks_dropped=dropped)

    def _file_index(self, row: OfficialRow, filtered: list[int]) -> int | None:
        if self.seg_ids == "filtered":
            if row.seg_id < len(filtered):
                return filtered[row.seg_id]
            self.stats.bad("seg_id_out_of_range")
            log.warning("%s: seg_id %d, but image %d has %d loadable masks", row.where, row.seg_id, row.img_id,
                        len(filtered))
            return None
        if row.seg_id in filtered:
            return row.seg_id
        self.stats.bad("mask_not_loadable")
        log.warning("%s: %s/%d/%d.png is missing or single-valued", row.where, self.mask_dir, row.img_id, row.seg_id)
        return None

    @staticmethod
    def _record(row: OfficialRow, image_id: str, index: int, mask: np.ndarray, k: int) -> PseudoRecord:
        n = len(row.captions)
        if n == OFFICIAL_CROPS * len(OFFICIAL_SAMPLERS):
            sampler = OFFICIAL_SAMPLERS * OFFICIAL_CROPS
            crop = [t for t in range(OFFICIAL_CROPS) for _ in OFFICIAL_SAMPLERS]
        else:
            sampler, crop = ["unknown"] * n, [-1] * n
        return PseudoRecord(
            sample_id=f"{image_id}:{index}", image_id=image_id, image=row.img_name, height=mask.shape[0],
            width=mask.shape[1], mask_index=index, mask=mask_to_rle(mask), box=mask_box(mask), area=int(mask.sum()),
            num_masks=k, one_mask=row.one_mask,
            contrast=not row.one_mask and CONTRAST_BOUNDS[0] <= k <= CONTRAST_BOUNDS[1],
            captions=row.captions, sampler=sampler, crop=crop, dos=row.doc, uos=[None] * n, cos=[None] * n,
            generator="",
        )


def image_groups(rows: Iterator[OfficialRow | RowError], stats: ImportStats) -> Iterator[list[OfficialRow]]:
    """Consecutive rows of one image, in file order; bad rows and later repeats of an image are counted."""
    finished: set[int] = set()
    group: list[OfficialRow] = []
    for row in rows:
        stats.rows += 1
        if isinstance(row, RowError):
            stats.bad("unreadable")
            log.warning("%s", row)
            continue
        if group and row.img_id != group[0].img_id:
            finished.add(group[0].img_id)
            yield group
            group = []
        if row.img_id in finished:
            stats.duplicate_rows += 1
            continue
        group.append(row)
    if group:
        yield group


def import_official(
    source: str | Path,
    mask_dir: str | Path,
    image_dir: str | Path,
    out: str | Path,
    seg_ids: SegIds = "filtered",
    tau: float = 1.3,
    images_per_shard: int = 1000,
    progress: bool = True,
) -> tuple[dict[str, Any], ImportStats]:
    """Import an official output into the shard folder ``out`` (resuming an interrupted import). Returns the merged
    manifest and the import counts (also written to ``out/import-report.json``)."""
    source, out = Path(source), Path(out)
    importer = OfficialImporter(mask_dir, image_dir, seg_ids)
    provenance = {
        "importer": "ris.pseudo.official_import",
        "source": "official Pseudo-RIS distinctive_caption_generation.py output",
        "file": source.name,
        "sha256": file_sha256(source) if source.is_file() else None,
        "mask_dir": str(Path(mask_dir).resolve()),
        "seg_ids": seg_ids,
        "contrast_bounds": list(CONTRAST_BOUNDS),
        "tau": tau,
    }
    writer = ShardWriter(out, 0, provenance, images_per_shard, tau, str(Path(image_dir).resolve()))
    done = done_image_ids(out)
    importer.stats.images_done_before = len(done)
    for rows in tqdm(image_groups(read_rows(source), importer.stats), desc="import", unit="image",
                     disable=not progress):
        if str(rows[0].img_id) in done:
            continue
        result = importer.convert(rows)
        if result.skip_reason is not None:
            log.warning("image %s skipped (%s) %s", result.image_id, result.skip_reason, result.message)
        writer.add(result)
    writer.flush()
    manifest = merge_manifests(out, str(Path(image_dir).resolve()), complete=True)
    atomic_write(out / REPORT_FILE, json.dumps(asdict(importer.stats), indent=1).encode("utf-8"))
    return manifest, importer.stats


def main(argv: Sequence[str]) -> int:
    """Entry point of ``ris import-labels``."""
    from ris.pseudo.generate_command import summary_table
    from ris.pseudo.shards import GenerationStats

    parser = argparse.ArgumentParser(
        prog="ris import-labels",
        description="Import the official Pseudo-RIS output (JSON Lines or CSV + mask PNGs) as pseudo-label shards.",
    )
    parser.add_argument("source", help="distinctive_captions_*.json (JSON Lines) or the .csv made from it")
    parser.add_argument("--mask-dir", required=True, help="official mask folder holding {img_id}/{j}.png")
    parser.add_argument("--image-dir", required=True, help="image folder holding the rows' img_name files")
    parser.add_argument("--out", required=True, help="shard folder to write (an interrupted import resumes)")
    parser.add_argument("--seg-ids", choices=["filtered", "file"], default="filtered",
                        help="seg_id = index among the loadable PNGs (official generator, default) or the PNG name")
    parser.add_argument("--tau", type=float, default=1.3, help="DoS threshold of the summary's kept counts")
    parser.add_argument("--images-per-shard", type=int, default=1000)
    args = parser.parse_args(list(argv))
    manifest, stats = import_official(args.source, args.mask_dir, args.image_dir, args.out, args.seg_ids, args.tau,
                                      args.images_per_shard)
    console = Console()
    console.print(summary_table(GenerationStats.from_dict(manifest["totals"]), args.tau, len(manifest["shards"]),
                                stats.images_done_before))
    bad = Counter(stats.bad_rows)
    console.print(
        f"rows {stats.rows}; bad rows {sum(bad.values())} {dict(bad) or ''}; duplicate rows {stats.duplicate_rows}; "
        f"images with remapped seg_ids {stats.seg_id_remapped}; one_mask mismatches {stats.one_mask_mismatch}"
    )
    return 0
