"""What the format readers produce: referring items (a region and its expressions) and annotated images.

A :class:`ReferringItem` is one annotated region of one image with the expressions referring to it (a RefCOCO ref,
a PhraseCut task); the datamodules turn items into samples. An :class:`AnnotatedImage` lists every annotated region
of one image (the generator's ground-truth masks). Regions are rasterised lazily, at the size of the loaded image.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np


class Region(Protocol):
    """An annotated region that can be rasterised at the image's size."""

    def rasterise(self, height: int, width: int) -> np.ndarray:
        """``(height, width)`` bool mask."""
        ...


@dataclass(frozen=True)
class Sentence:
    """One expression: its id and text."""

    sent_id: int
    text: str


@dataclass
class ReferringItem:
    """One region of one image and the expressions referring to it.

    Attributes:
        image_path: the image file.
        image_id: image id (labelled fractions select images by it).
        sample_id: stable id of the samples built from this item (``ref_id`` or PhraseCut ``task_id``).
        name: how errors name the item, e.g. ``ref 12``.
        source: the annotation file the item comes from (for error messages).
        region: the annotation of the region.
        sentences: the expressions.
        region_key: items with equal keys describe the same region (merged into one item for ``train_unit="ref"``).
        expected_size: ``(H, W)`` the annotation declares, checked against the image; ``None`` if not declared.
    """

    image_path: Path
    image_id: int
    sample_id: str
    name: str
    source: str
    region: Region
    sentences: list[Sentence]
    region_key: Hashable = None
    expected_size: tuple[int, int] | None = None


@dataclass
class AnnotatedImage:
    """Every annotated region of one image, in file order.

    Attributes:
        image_id: the image's id in the annotation file (as a string).
        file_name: the image's file name (relative to the dataset's image folder).
        regions: the annotated regions (instances).
        size: ``(H, W)`` the annotation declares, or ``None`` when the format does not declare it.
    """

    image_id: str
    file_name: str
    regions: list[Region]
    size: tuple[int, int] | None = None
