"""COCO annotations (docs/data.md §1.1, §1.5): ``instances.json`` and ``segmentation`` values.

A ``segmentation`` is a list of flat polygons ``[x0, y0, x1, y1, ...]`` (the parts of one object, unioned) or an RLE
dict ``{"size": [H, W], "counts": ...}``, uncompressed (``counts`` a list) or compressed (a string or bytes).
:func:`segmentation_to_mask` decodes every kind with pycocotools and binarises, so overlapping polygon parts give
one mask, as the refer API's ``getMask`` (sum over the parts, then > 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ris.formats.files import read_json
from ris.formats.items import AnnotatedImage


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygon list, uncompressed or compressed RLE) as an ``(H, W)`` bool mask."""
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        counts = segmentation["counts"]
        rle = {"size": segmentation["size"], "counts": counts.encode() if isinstance(counts, str) else counts}
    return mask_utils.decode(rle).astype(bool)


@dataclass(frozen=True)
class CocoRegion:
    """A COCO ``segmentation``: a list of flat polygons (unioned) or an RLE dict."""

    segmentation: Any

    def rasterise(self, height: int, width: int) -> np.ndarray:
        """``(height, width)`` bool mask (:func:`segmentation_to_mask`)."""
        return segmentation_to_mask(self.segmentation, height, width)


def segmentation_problem(segmentation: Any) -> str | None:
    """Why ``segmentation`` cannot be decoded (degenerate or malformed polygon, unknown type), or ``None``."""
    if isinstance(segmentation, dict):
        return None if {"counts", "size"} <= segmentation.keys() else "RLE segmentation without 'counts' and 'size'"
    if not isinstance(segmentation, list) or not segmentation:
        return f"expected a non-empty list of polygons or an RLE dict, got {segmentation!r:.60}"
    for k, polygon in enumerate(segmentation):
        if not isinstance(polygon, list) or not all(isinstance(v, (int, float)) for v in polygon):
            return f"polygon {k} is not a flat list of numbers"
        if len(polygon) < 6 or len(polygon) % 2:
            return f"degenerate polygon {k}: {len(polygon)} coordinates, expected an even number >= 6 (3 points)"
    return None


def load_instances(path: Path) -> tuple[dict[int, dict], dict[int, dict]]:
    """``(images by id, annotations by id)`` of an ``instances.json``."""
    data = read_json(path, "instances file")
    try:
        images = {int(im["id"]): im for im in data["images"]}
        annotations = {int(a["id"]): a for a in data["annotations"]}
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: expected 'images' and 'annotations' lists of records with 'id's ({err!r})") from err
    return images, annotations


def image_file_names(path: Path) -> dict[int, str]:
    """``file_name`` by image id of the ``images`` of an ``instances.json`` (its annotations are not read)."""
    data = read_json(path, "instances file")
    try:
        return {int(image["id"]): str(image["file_name"]) for image in data["images"]}
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: expected an 'images' list of records with 'id' and 'file_name' ({err!r})") from err


def annotated_images(data: Any, path: Path) -> list[AnnotatedImage]:
    """Every image of the parsed ``instances.json`` ``data`` (read from ``path``) with the regions of all its
    annotations, crowd ones included, in file order; the declared size comes from the image record."""
    try:
        images = {
            int(image["id"]): AnnotatedImage(
                str(int(image["id"])),
                str(image.get("file_name", int(image["id"]))),
                [],
                (int(image["height"]), int(image["width"])),
            )
            for image in data["images"]
        }
        for annotation in data["annotations"]:
            images[int(annotation["image_id"])].regions.append(CocoRegion(annotation["segmentation"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{path}: expected a refer instances.json with 'images' (id, height, width, file_name) and "
            f"'annotations' (image_id, segmentation) ({type(err).__name__}: {err})"
        ) from err
    return list(images.values())
