"""``ris export``: pseudo-label shards → the ``refer`` format (docs/data.md §1), for any refer-API codebase.

Written under ``OUT/<dataset>/`` (``dataset`` defaults to ``refcoco``: the refer API and CRIS's ``data_process.py``
accept only the RefCOCO folder names)::

    refs(pseudo).p     the refs (a protocol-2 pickle, readable by the Python 2 and 3 refer APIs), split "train"
    instances.json     images, annotations (the masks as COCO RLE) and one category ("object")
    export.json        what was exported from where, with which rule, and the counts

One ref per pseudo-label record (mask) that keeps a caption. **Its sentences are the captions a training draw of
``PseudoRISDataModule`` may return** at the given τ and fallback (docs/method.md §7.2,
:func:`ris.pseudo.caption_choice.eligible_captions`):

- several masks in the image: the captions with DoS > τ (strict); if none passes, ``fallback`` ``any`` keeps every
  non-empty caption (the official behaviour), ``best`` the one with the highest DoS, and ``none`` drops the mask
  (:func:`ris.pseudo.caption_choice.kept_flags`, no fallback);
- one mask in the image: the top half of the captions by raw CLIP score (the one-mask rule), for every fallback.

Duplicate captions stay separate sentences, so a refer-API trainer that draws one sentence of a ref uniformly (CRIS,
and ``RefCOCODataModule`` in training) samples exactly what ``PseudoRISDataModule`` samples. Each sentence keeps
the caption as ``raw`` (stripped), and ``sent`` / ``tokens`` are its lower-cased words; captions without a word are
left out (counted).

Masks: ``segmentation`` is ``[rle]``, a list holding one compressed RLE (``counts`` a string) — the form the refer
API's ``getMask`` decodes (it indexes ``segmentation[0]`` and sums the decoded masks); ``--segmentation coco``
writes the bare RLE dict of COCO's crowd annotations instead, for COCO-API/detectron2 readers. ``bbox`` is COCO
``[x, y, w, h]`` of the mask's pixels, ``area`` its pixel count.

Images are referenced, not copied: ``file_name`` is the absolute path of the image (``os.path.join(image_dir,
file_name)`` then finds it whatever the image folder), or its path relative to the shards' image root with
``--image-paths relative`` (give that root as the image folder). ``--copy-images`` copies them to
``OUT/images/mscoco/images/train2014/`` (the refer layout; ``file_name`` relative), and images embedded in the
records are always written there. Image ids are the records' ids when all are integers, otherwise 1, 2, … in shard
order; the original id is kept as ``pseudo_ris_image_id`` (and every ref/annotation carries its
``pseudo_ris_sample_id``).

An existing ``OUT/<dataset>`` that was not written by ``ris export`` is never overwritten.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import fsspec
from fsspec.implementations.local import LocalFileSystem
from tqdm import tqdm

from ris.atomic import atomic_write
from ris.pseudo.caption_choice import eligible_captions, kept_flags
from ris.pseudo.records import PseudoRecord
from ris.pseudo.shards import ShardSet

log = logging.getLogger(__name__)

SPLIT_BY = "pseudo"
REFS_FILE = f"refs({SPLIT_BY}).p"
INSTANCES_FILE = "instances.json"
EXPORT_FILE = "export.json"
IMAGE_DIR = "images/mscoco/images/train2014"
CATEGORY = {"id": 1, "name": "object", "supercategory": "object"}
EXPORT_FORMAT = "pseudo-ris-refer-export"

ExportFallback = Literal["any", "best", "none"]
Segmentation = Literal["refer", "coco"]
ImagePaths = Literal["absolute", "relative"]

_WORD = re.compile(r"\w+(?:'\w+)?")


def kept_captions(record: PseudoRecord, tau: float, fallback: ExportFallback) -> list[int]:
    """Indices of the captions exported as the record's sentences (see the module rules)."""
    if fallback == "none":
        return [i for i, kept in enumerate(kept_flags(record, tau)) if kept]
    return eligible_captions(record, tau, fallback)


def sentence_words(caption: str) -> list[str]:
    """The lower-cased words of a caption (``"A dog , running ! "`` → ``["a", "dog", "running"]``)."""
    return _WORD.findall(caption.lower())


@dataclass
class ExportSummary:
    """Counts of one export.

    Attributes:
        records: records read.
        refs, sentences, images: written.
        dropped: records left out, by reason (``no_kept_caption``: no caption passes the rule; ``no_words``: the
            kept captions have no word).
        captions_without_words: kept captions left out because they have no word.
        images_copied: image files written under ``OUT/images/...``.
        images_missing: referenced local images that do not exist (exported anyway, counted).
    """

    records: int = 0
    refs: int = 0
    sentences: int = 0
    images: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    captions_without_words: int = 0
    images_copied: int = 0
    images_missing: int = 0


def integer_image_ids(image_ids: Iterable[str]) -> dict[str, int]:
    """The refer image id of each record image id: itself when every id is an integer (and they stay distinct),
    else 1, 2, … in the given order."""
    ids = list(dict.fromkeys(image_ids))
    if ids and all(i.isdigit() for i in ids) and len({int(i) for i in ids}) == len(ids):
        return {i: int(i) for i in ids}
    return {image_id: n for n, image_id in enumerate(ids, start=1)}


class ReferExporter:
    """Builds the refer files from records (see the module docstring); :meth:`write` puts them on disk."""

    def __init__(
        self,
        out: str | Path,
        image_root: str,
        dataset: str = "refcoco",
        split: str = "train",
        tau: float = 1.3,
        fallback: ExportFallback = "any",
        segmentation: Segmentation = "refer",
        image_paths: ImagePaths = "absolute",
        copy_images: bool = False,
    ) -> None:
        if fallback not in ("any", "best", "none"):
            raise ValueError(f"fallback must be 'any', 'best' or 'none', got {fallback!r}")
        if segmentation not in ("refer", "coco"):
            raise ValueError(f"segmentation must be 'refer' or 'coco', got {segmentation!r}")
        if image_paths not in ("absolute", "relative"):
            raise ValueError(f"image_paths must be 'absolute' or 'relative', got {image_paths!r}")
        if not dataset or "/" in dataset or dataset in (".", ".."):
            raise ValueError(f"dataset must be a folder name, got {dataset!r}")
        self.out = Path(out)
        self.image_root = image_root
        self.dataset, self.split, self.tau, self.fallback = dataset, split, tau, fallback
        self.segmentation, self.image_paths, self.copy_images = segmentation, image_paths, copy_images
        self.image_fs, self.image_root_path = fsspec.core.url_to_fs(image_root or ".")
        self.local_images = isinstance(self.image_fs, LocalFileSystem)
        if not self.local_images and not copy_images:
            raise ValueError(
                f"images under {image_root} cannot be referenced by a refer dataset (not a local folder); pass "
                "--copy-images"
            )
        self.summary = ExportSummary()
        self.images: dict[str, dict[str, Any]] = {}
        self.annotations: list[dict[str, Any]] = []
        self.refs: list[dict[str, Any]] = []

    @property
    def folder(self) -> Path:
        return self.out / self.dataset

    def check_target(self, overwrite: bool) -> None:
        """Refuse a target folder holding refer files not written by ``ris export`` (or any, without ``overwrite``)."""
        existing = [p.name for p in (self.folder / INSTANCES_FILE, self.folder / REFS_FILE) if p.exists()]
        if not existing:
            return
        marker = self.folder / EXPORT_FILE
        ours = marker.is_file() and json.loads(marker.read_text()).get("format") == EXPORT_FORMAT
        if not ours:
            raise FileExistsError(
                f"{self.folder} holds {', '.join(existing)} not written by `ris export` (a real dataset?); choose "
                "another --out or --dataset"
            )
        if not overwrite:
            raise FileExistsError(f"{self.folder} holds an earlier export; pass --overwrite to replace it")

    def _file_name(self, record: PseudoRecord) -> str:
        embedded = record.decode_image_bytes()
        relative = PurePosixPath(record.image)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"record {record.sample_id}: image path {record.image!r} is not inside the image root")
        if embedded is not None or self.copy_images:
            target = self.out / IMAGE_DIR / relative
            if not target.exists():
                data = embedded
                if data is None:
                    with self.image_fs.open(f"{self.image_root_path.rstrip('/')}/{record.image}", "rb") as handle:
                        data = handle.read()
                atomic_write(target, data)
                self.summary.images_copied += 1
            return str(relative)
        source = Path(self.image_root_path) / relative
        if not source.is_file():
            self.summary.images_missing += 1
        return str(source.resolve()) if self.image_paths == "absolute" else str(relative)

    def add(self, record: PseudoRecord) -> None:
        """Add one record: a ref with its kept captions as sentences, its annotation, and its image once."""
        self.summary.records += 1
        kept = kept_captions(record, self.tau, self.fallback)
        if not kept:
            self.summary.dropped["no_kept_caption"] = self.summary.dropped.get("no_kept_caption", 0) + 1
            return
        sentences = []
        for index in kept:
            words = sentence_words(record.captions[index])
            if not words:
                self.summary.captions_without_words += 1
                continue
            sent_id = self.summary.sentences + len(sentences) + 1
            sentences.append({"tokens": words, "raw": record.captions[index].strip(), "sent": " ".join(words),
                              "sent_id": sent_id})
        if not sentences:
            self.summary.dropped["no_words"] = self.summary.dropped.get("no_words", 0) + 1
            return
        image_id = record.image_id
        if image_id not in self.images:
            self.images[image_id] = {"id": image_id, "file_name": self._file_name(record), "height": record.height,
                                     "width": record.width, "pseudo_ris_image_id": image_id}
        ann_id = len(self.refs) + 1
        x0, y0, x1, y1 = record.box
        rle = {"size": list(record.mask["size"]), "counts": record.mask["counts"]}
        self.annotations.append({
            "id": ann_id, "image_id": image_id, "category_id": CATEGORY["id"],
            "segmentation": [rle] if self.segmentation == "refer" else rle, "area": int(record.area),
            "bbox": [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)], "iscrowd": 0,
            "pseudo_ris_sample_id": record.sample_id,
        })
        stem = PurePosixPath(record.image)
        self.refs.append({
            "ref_id": ann_id, "ann_id": ann_id, "image_id": image_id, "category_id": CATEGORY["id"],
            "split": self.split, "sent_ids": [s["sent_id"] for s in sentences], "sentences": sentences,
            "file_name": f"{stem.stem}_{ann_id}{stem.suffix or '.jpg'}", "pseudo_ris_sample_id": record.sample_id,
        })
        self.summary.refs += 1
        self.summary.sentences += len(sentences)

    def write(self, source: dict[str, Any]) -> ExportSummary:
        """Write ``refs(pseudo).p``, ``instances.json`` and ``export.json`` (each atomically); ``source``
        describes the input (recorded in ``export.json``)."""
        self.summary.images = len(self.images)
        ids = integer_image_ids(self.images)
        for image in self.images.values():
            image["id"] = ids[image["pseudo_ris_image_id"]]
        for item in (*self.annotations, *self.refs):
            item["image_id"] = ids[item["image_id"]]
        instances = {
            "info": {"description": "Pseudo-RIS pseudo-labels exported by `ris export`",
                     "provenance_id": source.get("provenance_id")},
            "images": list(self.images.values()),
            "annotations": self.annotations,
            "categories": [CATEGORY],
        }
        atomic_write(self.folder / INSTANCES_FILE, json.dumps(instances).encode("utf-8"))
        atomic_write(self.folder / REFS_FILE, pickle.dumps(self.refs, protocol=2))
        image_dir = str((self.out / IMAGE_DIR).resolve()) if self.copy_images else (
            str(Path(self.image_root_path).resolve()) if self.local_images else None)
        export = {
            "format": EXPORT_FORMAT,
            "source": source,
            "dataset": self.dataset,
            "split_by": SPLIT_BY,
            "split": self.split,
            "tau": self.tau,
            "fallback": self.fallback,
            "segmentation": self.segmentation,
            "image_paths": "relative" if self.copy_images else self.image_paths,
            "image_dir": image_dir,
            "summary": asdict(self.summary),
        }
        atomic_write(self.folder / EXPORT_FILE, json.dumps(export, indent=1).encode("utf-8"))
        return self.summary


def export_shards(
    shards: str | Path,
    out: str | Path,
    image_root: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **options: Any,
) -> ExportSummary:
    """Export a finished shard folder to ``out/<dataset>`` (options: see :class:`ReferExporter`; ``tau`` defaults
    to the manifest's τ)."""
    shard_set = ShardSet(shards, image_root)
    options.setdefault("tau", shard_set.manifest["tau"])
    exporter = ReferExporter(out, shard_set.image_root, **options)
    exporter.check_target(overwrite)
    for record in tqdm(shard_set, total=shard_set.num_records, desc="export", unit="mask", disable=not progress):
        exporter.add(record)
    source = {"shards": str(shards), "image_root": shard_set.image_root,
              "provenance_id": shard_set.manifest["provenance_id"]}
    summary = exporter.write(source)
    if summary.images_missing:
        log.warning("%d referenced images do not exist under %s", summary.images_missing, shard_set.image_root)
    return summary


def summary_lines(summary: ExportSummary, folder: Path) -> list[str]:
    """A short human-readable report of an export."""
    dropped = Counter(summary.dropped)
    lines = [
        f"exported to {folder}: {summary.refs} refs, {summary.sentences} sentences, {summary.images} images "
        f"(from {summary.records} records)",
    ]
    if dropped:
        lines.append("left out: " + ", ".join(f"{n} {reason}" for reason, n in sorted(dropped.items())))
    if summary.captions_without_words:
        lines.append(f"kept captions without a word left out: {summary.captions_without_words}")
    if summary.images_copied:
        lines.append(f"images written: {summary.images_copied}")
    if summary.images_missing:
        lines.append(f"referenced images missing: {summary.images_missing}")
    return lines


HELP = """\
Export pseudo-label shards to the refer format (refs(pseudo).p + instances.json) for refer-API codebases
(CRIS, LAVT, ReLA, ...) and RefCOCODataModule (dataset: <--dataset>, split_by: pseudo).

The sentences of each ref are the captions a training draw of PseudoRISDataModule may return at --tau / --fallback
(ris.pseudo.caption_choice.eligible_captions): several masks: DoS > tau; if none passes, all non-empty captions
(any) or the best one (best), or the mask is left out (none); one mask in the image: the top half of the captions
by raw CLIP score. Duplicates stay separate sentences, so a uniform draw of one sentence equals the training draw.
"""


def main(argv: Sequence[str]) -> int:
    """Entry point of ``ris export``."""
    parser = argparse.ArgumentParser(prog="ris export", description=HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shards", help="shard folder written by `ris generate` or `ris import-labels`")
    parser.add_argument("--out", required=True, help="data root to write <dataset>/refs(pseudo).p etc. into")
    parser.add_argument("--dataset", default="refcoco",
                        help="dataset folder name (default refcoco: the refer API accepts only the RefCOCO names)")
    parser.add_argument("--split", default="train", help="split name of every ref (default train)")
    parser.add_argument("--tau", type=float, default=None, help="DoS threshold, strict > (default: the manifest's)")
    parser.add_argument("--fallback", choices=["any", "best", "none"], default="any",
                        help="masks whose captions all fail tau: all captions (any), the best (best) or dropped (none)")
    parser.add_argument("--image-root", default=None, help="root of the records' images (default: the manifest's)")
    parser.add_argument("--copy-images", action="store_true",
                        help=f"copy the images to OUT/{IMAGE_DIR} (default: reference them)")
    parser.add_argument("--image-paths", choices=["absolute", "relative"], default="absolute",
                        help="referenced images: absolute paths, or relative to the image root")
    parser.add_argument("--segmentation", choices=["refer", "coco"], default="refer",
                        help="masks as [rle] (refer API getMask) or a bare RLE dict (COCO API, detectron2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier `ris export` in the same place")
    args = parser.parse_args(list(argv))
    options: dict[str, Any] = dict(dataset=args.dataset, split=args.split, fallback=args.fallback,
                                   segmentation=args.segmentation, image_paths=args.image_paths,
                                   copy_images=args.copy_images)
    if args.tau is not None:
        options["tau"] = args.tau
    summary = export_shards(args.shards, args.out, args.image_root, args.overwrite, **options)
    for line in summary_lines(summary, Path(args.out) / args.dataset):
        print(line)
    return 0
