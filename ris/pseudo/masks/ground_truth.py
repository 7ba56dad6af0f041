"""Ground-truth masks as a mask source: every annotated instance of the image (the paper's "GT masks" setting).

The annotation files are read by the format layer (:mod:`ris.formats.coco` for a RefCOCO ``instances.json``,
:mod:`ris.formats.phrasecut` for a PhraseCut ``refer_{split}.json``), which also rasterises the instances.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ris.formats import coco, phrasecut
from ris.formats.items import AnnotatedImage

from .proposals import check_rgb, empty_masks, flatten


class GroundTruthMaskSource:
    """Every annotated instance of an image, read directly from the annotation file.

    ``annotations`` is a RefCOCO/+/g ``instances.json`` (every annotation of the image, crowd ones included;
    images keyed by COCO id and by file name) or a PhraseCut ``refer_{split}.json`` (every instance polygon set of
    every task, each instance once; keyed by Visual Genome image id and ``{id}.jpg``). ``kind="auto"`` decides by
    the file's content. Masks are ranked by area, largest first (stable).
    """

    def __init__(self, annotations: str | Path, kind: Literal["auto", "refer", "phrasecut"] = "auto") -> None:
        self.path = Path(annotations)
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{self.path}: cannot read the annotation JSON ({err})") from err
        if kind == "auto":
            kind = "refer" if isinstance(data, dict) and "annotations" in data else "phrasecut"
        self.kind = kind
        self.name = f"gt-{kind}"
        if kind == "refer":
            annotated = coco.annotated_images(data, self.path)
        elif kind == "phrasecut":
            annotated = phrasecut.annotated_images(data, self.path)
        else:
            raise ValueError(f"unknown annotation kind {kind!r}; expected 'auto', 'refer' or 'phrasecut'")
        self.images: dict[str, AnnotatedImage] = {image.image_id: image for image in annotated}
        self.images.update({image.file_name: image for image in annotated})

    def settings(self) -> dict[str, Any]:
        return {"annotations": str(self.path), "kind": self.kind}

    def __call__(self, image: np.ndarray, image_id: str) -> npt.NDArray[np.bool_]:
        height, width = check_rgb(image, image_id)
        entry = self.images.get(str(image_id))
        if entry is None:
            raise KeyError(f"image {image_id!r} is not in {self.path}")
        if entry.size is not None and entry.size != (height, width):
            raise ValueError(
                f"image {image_id}: {self.path} annotates {entry.size[0]}x{entry.size[1]} (HxW) but the image is "
                f"{height}x{width}"
            )
        if not entry.regions:
            return empty_masks(height, width)
        masks = np.stack([region.rasterise(height, width) for region in entry.regions])
        order = np.argsort(-flatten(masks).sum(axis=1), kind="stable")
        return masks[order]
