"""The image list that generation runs over: image sources, the image dataset and its datamodule.

An :class:`ImageSource` lists :class:`ImageEntry` records (an id and a path relative to the source's ``root``):

- :class:`ImageFolder`: every image file under a folder (id = relative path without extension; files that share
  that, ``a.jpg`` and ``a.png``, keep their extension: ids ``a.jpg``, ``a.png``); broken symbolic links are listed
  too, so they become counted skips instead of vanishing;
- :class:`ImageListFile`: a text file with one ``path``, ``id<TAB>path`` or ``id<space>path`` per line (a line that
  names an existing file is a path, spaces included);
- :class:`ReferImages`: the unique images of a split of a RefCOCO/+/g dataset in the ``refer`` format (id = COCO
  image id), e.g. RefCOCO+ (unc) train, the paper's generation input (docs/method.md §1).

:class:`GenerationImages` sorts the entries by id, removes the images already done in a shard folder
(``skip_done``) **before** the list is split across processes, and serves one :class:`ImageItem` per image;
under DDP each process gets a disjoint part (``UnrepeatedDistributedSampler``, no padding duplicates).
Unreadable images are not errors here: the item carries the error and a skip category (``missing_file``,
``too_large`` for the pixel budget of :mod:`ris.formats.images`, ``unreadable``) and the generator skips it, counted
under that reason.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from ris.formats.coco import image_file_names
from ris.formats.images import DEFAULT_MAX_PIXELS, ImageDecodeError, ImageTooLargeError, decode_rgb
from ris.formats.refer import DEFAULT_IMAGE_DIR, load_refs, refer_files, split_matches
from ris.pseudo.shards import done_image_ids

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageEntry:
    """An image to generate pseudo-labels for: ``id`` and ``path`` (relative to the source root, or absolute)."""

    image_id: str
    path: str


@dataclass
class ImageItem:
    """One loaded image.

    Attributes:
        image_id, path: from the entry (``path`` relative to the source root).
        image: ``(H, W, 3)`` uint8 RGB, or ``None`` when it could not be read.
        error: why it could not be read.
        skip_reason: the skip category when it could not be read (``missing_file``, ``too_large``, ``unreadable``).
        file_bytes: the original file's bytes (only when the datamodule embeds images).
    """

    image_id: str
    path: str
    image: np.ndarray | None
    error: str | None = None
    skip_reason: str | None = None
    file_bytes: bytes | None = None


class ImageSource(ABC):
    """Lists the images of a generation run."""

    root: Path

    @abstractmethod
    def entries(self) -> list[ImageEntry]:
        """The images, each id once."""


def _check_unique(entries: Sequence[ImageEntry], where: str) -> list[ImageEntry]:
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.image_id in seen and seen[entry.image_id] != entry.path:
            raise ValueError(
                f"{where}: image id {entry.image_id!r} names two files ({seen[entry.image_id]}, {entry.path})"
            )
        seen[entry.image_id] = entry.path
    return [ImageEntry(i, p) for i, p in seen.items()]


def _stem_ids(relative: Sequence[Path]) -> list[ImageEntry]:
    """Entries with id = path without extension, or the whole path for the files whose stems coincide."""
    stems = [r.with_suffix("").as_posix() for r in relative]
    shared = {stem for stem in stems if stems.count(stem) > 1}
    return [ImageEntry(r.as_posix() if stem in shared else stem, r.as_posix()) for r, stem in zip(relative, stems)]


class ImageFolder(ImageSource):
    """Every file with an image extension under ``root`` (recursively), broken symbolic links included; id = relative
    path without extension, or with it for files that share a stem (module docstring)."""

    def __init__(self, root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> None:
        self.root = Path(root)
        self.extensions = tuple(e.lower() for e in extensions)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")

    def entries(self) -> list[ImageEntry]:
        files = sorted(
            p for p in self.root.rglob("*")
            if (p.is_file() or (p.is_symlink() and not p.exists())) and p.suffix.lower() in self.extensions
        )
        return _check_unique(_stem_ids([p.relative_to(self.root) for p in files]), str(self.root))


class ImageListFile(ImageSource):
    """A text file listing images, one per line: ``path`` (id = path without extension, or with it when two listed
    paths share a stem), ``id<TAB>path``, or ``id<space>path``.

    A line with a tab is split there; otherwise a line that names an existing file (relative to ``root``) is a path,
    spaces included (``my photo.png``); otherwise a line with whitespace is ``id path``. Blank lines and lines
    starting with ``#`` are ignored; relative paths are relative to ``root`` (default: the list file's folder).
    """

    def __init__(self, path: str | Path, root: str | Path | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"image list file not found: {self.path}")
        self.root = Path(root) if root is not None else self.path.parent

    def entries(self) -> list[ImageEntry]:
        paths: list[Path] = []
        named: list[ImageEntry] = []
        for line_no, raw in enumerate(self.path.read_text().splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if "\t" in line:
                image_id, path = (part.strip() for part in line.split("\t", 1))
            elif (self.root / line).exists() or (self.root / line).is_symlink() or len(line.split()) == 1:
                paths.append(Path(line))
                continue
            else:
                image_id, path = (part.strip() for part in line.split(maxsplit=1))
            if not path:
                raise ValueError(f"{self.path}:{line_no}: empty image path")
            named.append(ImageEntry(image_id, path))
        return _check_unique([*_stem_ids(paths), *named], str(self.path))


class ReferImages(ImageSource):
    """The unique images of one split of a ``refer``-format dataset (``refs(<split_by>).p`` + ``instances.json``).

    The files are read by :mod:`ris.formats.refer` (Python 2 and 3 pickles), and the split is matched with the
    refer API's rule, as in the datamodules (``test`` also matches ``testA``/``testB``, docs/data.md §1.3).

    Args:
        data_root: folder holding ``<dataset>/refs(<split_by>).p`` and ``<dataset>/instances.json``.
        dataset: ``refcoco``, ``refcoco+`` or ``refcocog``.
        split_by: ``unc``, ``google`` or ``umd``.
        split: the refs' split, e.g. ``train``.
        image_dir: folder of the image files; default ``<data_root>/images/mscoco/images/train2014``.
    """

    def __init__(
        self,
        data_root: str | Path,
        dataset: str = "refcoco+",
        split_by: str = "unc",
        split: str = "train",
        image_dir: str | Path | None = None,
    ) -> None:
        self.data_root = Path(data_root)
        self.dataset, self.split_by, self.split = dataset, split_by, split
        self.root = Path(image_dir) if image_dir is not None else self.data_root / DEFAULT_IMAGE_DIR

    def entries(self) -> list[ImageEntry]:
        refs_path, inst_path = refer_files(self.data_root, self.dataset, self.split_by)
        try:
            refs = load_refs(refs_path)
            images = image_file_names(inst_path)
            ids = sorted({int(ref["image_id"]) for ref in refs if split_matches(str(ref["split"]), self.split)})
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"cannot read the refer dataset {self.dataset} ({self.split_by}) from {refs_path} and {inst_path} "
                f"({type(err).__name__}: {err})"
            ) from err
        if not ids:
            raise ValueError(f"{refs_path}: no ref has split {self.split!r}")
        missing = [i for i in ids if i not in images]
        if missing:
            raise ValueError(f"{inst_path}: image id(s) {missing[:5]} of split {self.split!r} are not listed")
        return [ImageEntry(str(i), images[i]) for i in ids]


class ImageDataset(Dataset):
    """Loads the images of ``entries`` (paths relative to ``root``) as :class:`ImageItem` with the project's decoder
    (:func:`ris.formats.images.decode_rgb`, pixel budget ``max_pixels``); a failure is carried by the item."""

    def __init__(
        self, entries: Sequence[ImageEntry], root: Path, embed_bytes: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.entries = list(entries)
        self.root = root
        self.embed_bytes = embed_bytes
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> ImageItem:
        entry = self.entries[index]
        path = self.root / entry.path
        try:
            image = decode_rgb(path, max_pixels=self.max_pixels)
            data = path.read_bytes() if self.embed_bytes else None
        except FileNotFoundError as err:
            return ImageItem(entry.image_id, entry.path, None, error=str(err), skip_reason="missing_file")
        except ImageTooLargeError as err:
            return ImageItem(entry.image_id, entry.path, None, error=str(err), skip_reason="too_large")
        except (ImageDecodeError, OSError) as err:
            return ImageItem(entry.image_id, entry.path, None, error=str(err), skip_reason="unreadable")
        return ImageItem(entry.image_id, entry.path, image, file_bytes=data)


def collate_items(items: list[ImageItem]) -> list[ImageItem]:
    """Batches are plain lists of :class:`ImageItem` (images differ in size)."""
    return items


class GenerationImages(pl.LightningDataModule):
    """The predict-stage datamodule of ``ris generate``.

    Args:
        source: where the images come from.
        batch_size: images per predict step.
        num_workers: dataloader workers (image decoding).
        skip_done: a shard folder; images already listed in its manifests are left out (resume).
        limit: process at most this many of the remaining images (a trial run; ``None`` = all).
        embed_images: also read the original files' bytes so the records can embed them.
        max_pixels: the decoded-size budget per image (docs/data.md §1.5); a larger image is skipped as
            ``too_large`` before it is decoded. ``None`` = no budget besides PIL's decompression-bomb check.
    """

    def __init__(
        self,
        source: ImageSource,
        batch_size: int = 1,
        num_workers: int = 0,
        skip_done: str | None = None,
        limit: int | None = None,
        embed_images: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__()
        self.max_pixels = max_pixels
        self.source = source
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.skip_done = skip_done
        self.limit = limit
        self.embed_images = embed_images
        self.entries: list[ImageEntry] = []
        self.paths: dict[str, str] = {}
        self.already_done = 0
        self.left_for_later = 0

    def setup(self, stage: str) -> None:
        """List the images, drop those done in ``skip_done``, apply ``limit`` (identically on every process)."""
        entries = sorted(self.source.entries(), key=lambda e: e.image_id)
        self.paths = {e.image_id: e.path for e in entries}
        done = done_image_ids(self.skip_done) if self.skip_done else set()
        remaining = [e for e in entries if e.image_id not in done]
        self.already_done = len(entries) - len(remaining)
        self.entries = remaining if self.limit is None else remaining[: self.limit]
        self.left_for_later = len(remaining) - len(self.entries)
        log.info("%d images listed, %d already done, %d to process, %d left for a later run", len(entries),
                 self.already_done, len(self.entries), self.left_for_later)

    def predict_dataloader(self) -> DataLoader:
        dataset = ImageDataset(self.entries, self.source.root, self.embed_images, self.max_pixels)
        sampler = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_items,
        )
