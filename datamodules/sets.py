"""Specs of referring sets (one dataset + split [+ partition / category filter]) usable as evaluation sets.

A datamodule's ``val_sets`` / ``test_sets`` list any number of them, from any dataset, so that one ``ris test``
scores e.g. RefCOCO, RefCOCO+, RefCOCOg and PhraseCut all / non-COCO together. In YAML the ``dataset`` key selects
the kind::

    test_sets:
      - {dataset: refcoco+, data_root: data/refer, split: testA}
      - {dataset: refcocog, data_root: data/refer, split_by: umd, split: test}
      - {dataset: phrasecut, data_root: data/VGPhraseCut_v0, split: test, category_filter: non_coco}

Each set is logged under ``{dataset label}/{split}``: the dataset name with the partition for a non-default one
(``refcoco`` = unc, ``refcoco-google``, ``refcoco+``, ``refcocog-umd``, ``refcocog-google``) or the category filter
(``phrasecut``, ``phrasecut-coco``, ``phrasecut-non_coco``); ``name`` replaces the dataset label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ris.formats.errors import BadSampleError
from ris.formats.items import ReferringItem
from ris.formats.phrasecut import COCO_CLASSES, CategoryFilter, read_phrasecut
from ris.formats.refer import read_refer

PARTITIONS = {"refcoco": ("unc", "google"), "refcoco+": ("unc",), "refcocog": ("umd", "google")}
UNNAMED_PARTITION = {"refcoco": "unc", "refcoco+": "unc"}

Problems = list[tuple[BadSampleError, int]]


@dataclass
class RefCOCOSet:
    """A split of RefCOCO / RefCOCO+ / RefCOCOg in the ``refer`` format.

    Attributes:
        dataset: ``refcoco``, ``refcoco+`` or ``refcocog`` (the folder under ``data_root``).
        data_root: folder holding ``<dataset>/refs(<split_by>).p`` and ``<dataset>/instances.json``.
        split: refer split name (``train``, ``val``, ``test``, ``testA``, ``testB``).
        split_by: partition, i.e. which ``refs(<split_by>).p``: ``unc`` (refcoco, refcoco+), ``google`` (refcoco,
            refcocog) or ``umd`` (refcocog).
        image_dir: image folder; default ``<data_root>/images/mscoco/images/train2014``.
        name: dataset label in set names (default: derived from ``dataset`` and ``split_by``).
    """

    dataset: Literal["refcoco", "refcoco+", "refcocog"]
    data_root: str
    split: str = "val"
    split_by: Literal["unc", "umd", "google"] = "unc"
    image_dir: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.dataset not in PARTITIONS:
            raise ValueError(f"unknown refer dataset {self.dataset!r}; expected one of {list(PARTITIONS)}")
        if self.split_by not in PARTITIONS[self.dataset]:
            raise ValueError(
                f"{self.dataset} has no {self.split_by!r} partition; split_by must be one of {PARTITIONS[self.dataset]}"
            )

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        unnamed = UNNAMED_PARTITION.get(self.dataset)
        return self.dataset if self.split_by == unnamed else f"{self.dataset}-{self.split_by}"

    @property
    def set_name(self) -> str:
        return f"{self.label}/{self.split}"

    def read(self) -> tuple[list[ReferringItem], Problems]:
        """Items and per-sample problems of the set (see :func:`ris.formats.refer.read_refer`)."""
        return read_refer(self.data_root, self.dataset, self.split_by, self.split, self.image_dir)


@dataclass
class PhraseCutSet:
    """A split of PhraseCut, optionally restricted by category.

    Attributes:
        dataset: always ``phrasecut``.
        data_root: folder with ``refer_{split}.json`` and ``images/``.
        split: split name; parts joined by ``_`` are concatenated (``val_miniv``).
        category_filter: ``all``, ``coco`` (name among ``seen_categories``) or ``non_coco`` (the "unseen" subset).
        seen_categories: the category names counted as seen; default the 80 COCO class names (exact match).
        image_dir: image folder; default ``<data_root>/images``.
        name: dataset label in set names (default: ``phrasecut`` plus ``-coco`` / ``-non_coco``).
    """

    dataset: Literal["phrasecut"]
    data_root: str
    split: str = "val"
    category_filter: CategoryFilter = "all"
    seen_categories: list[str] | None = None
    image_dir: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.dataset != "phrasecut":
            raise ValueError(f"PhraseCutSet.dataset must be 'phrasecut', got {self.dataset!r}")
        if self.category_filter not in ("all", "coco", "non_coco"):
            raise ValueError(f"category_filter must be 'all', 'coco' or 'non_coco', got {self.category_filter!r}")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return "phrasecut" if self.category_filter == "all" else f"phrasecut-{self.category_filter}"

    @property
    def set_name(self) -> str:
        return f"{self.label}/{self.split}"

    def read(self) -> tuple[list[ReferringItem], Problems]:
        """Items and per-sample problems of the set (see :func:`ris.formats.phrasecut.read_phrasecut`)."""
        seen = COCO_CLASSES if self.seen_categories is None else tuple(self.seen_categories)
        return read_phrasecut(self.data_root, self.split, self.category_filter, seen, self.image_dir)


ReferringSet = RefCOCOSet | PhraseCutSet
