"""The pseudo-label record: one JSON object per (image, mask), as stored in the generator's shards.

A record keeps everything the generator produced for one mask, so the DoS threshold τ and the caption choice can
change at training time without regenerating (docs/method.md §7.1, docs/data.md §3.4):

| field | meaning |
|---|---|
| ``sample_id`` | ``"{image_id}:{mask_index}"``, stable across runs, ranks and orders |
| ``image_id`` | the image id given by the image source (a string) |
| ``image`` | the image path relative to the manifest's ``image_root`` |
| ``height``, ``width`` | original image size |
| ``mask_index`` | index of the mask in the mask source's (filtered) ranking |
| ``mask`` | COCO RLE ``{"size": [H, W], "counts": str}`` at original resolution |
| ``box`` | inclusive ``[x_min, y_min, x_max, y_max]`` of the mask's pixels |
| ``area`` | mask pixel count |
| ``num_masks`` | K, the number of masks captioned together for this image |
| ``one_mask`` | K == 1: ``dos`` then holds the raw CLIP score A_t (docs/method.md §6.3) and ``uos`` is null |
| ``contrast`` | whether distinctive (contrastive) sampling was applied (2 ≤ K ≤ the decoder's bound) |
| ``captions`` | every candidate caption, crop-type major: index = crop_type · S + sampler |
| ``sampler``, ``crop`` | the sampler name and the crop type of each caption |
| ``dos``, ``uos``, ``cos`` | distinctiveness, uniqueness and correctness per caption (null where undefined) |
| ``generator`` | id of the generator provenance (models, checkpoints, settings, seed, versions; in the manifest) |
| ``image_bytes`` | optional base64 of the original image file |
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from ris.formats.errors import BadSampleError
from ris.formats.images import decode_rgb


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of a ``(H, W)`` bool mask, with ``counts`` as a string (JSON-safe)."""
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (string or bytes ``counts``) to a ``(H, W)`` bool mask."""
    counts = rle["counts"]
    return coco_mask.decode({"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str)
                             else counts}).astype(bool)


def mask_box(mask: np.ndarray) -> list[int]:
    """Inclusive ``[x_min, y_min, x_max, y_max]`` of the true pixels of a non-empty ``(H, W)`` mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("mask_box: the mask is empty")
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


@dataclass
class PseudoRecord:
    """One mask of one image with all its candidate captions and scores (see the module table)."""

    sample_id: str
    image_id: str
    image: str
    height: int
    width: int
    mask_index: int
    mask: dict[str, Any]
    box: list[int]
    area: int
    num_masks: int
    one_mask: bool
    contrast: bool
    captions: list[str]
    sampler: list[str]
    crop: list[int]
    dos: list[float | None]
    uos: list[float | None]
    cos: list[float | None]
    generator: str
    image_bytes: str | None = None

    def to_json(self) -> str:
        """One JSON line (no trailing newline); ``image_bytes`` is omitted when absent. The fields are serialised
        as they are (``dataclasses.asdict`` would deep-copy every list first: 5 ms per 44-caption record)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        if data["image_bytes"] is None:
            del data["image_bytes"]
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str, where: str = "<record>") -> PseudoRecord:
        """Parse and validate one JSON line; a bad line raises :class:`~ris.formats.errors.BadSampleError` naming
        ``where`` (e.g. ``file:line``), the record and the bad field."""
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise BadSampleError(where, "record", f"not a JSON object ({err})") from err
        if not isinstance(data, dict):
            raise BadSampleError(where, "record", f"expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(data) - {"image_bytes"})
        if missing:
            sample = f"record {data.get('sample_id', '?')!r}"
            raise BadSampleError(where, sample, f"lacks field(s) {', '.join(missing)}")
        record = cls(**{k: v for k, v in data.items() if k in names})
        record.validate(where)
        return record

    def validate(self, where: str = "<record>") -> None:
        """Check every caption is a string, the per-caption lists have one entry per caption and the mask matches
        the image size (:class:`~ris.formats.errors.BadSampleError` otherwise)."""
        sample = f"record {self.sample_id!r}"
        if not isinstance(self.captions, list):
            raise BadSampleError(where, sample, f"'captions' is a {type(self.captions).__name__}, not a list")
        for index, caption in enumerate(self.captions):
            if not isinstance(caption, str):
                raise BadSampleError(where, sample, f"caption {index} is {caption!r}, not text")
        n = len(self.captions)
        for name in ("sampler", "crop", "dos", "uos", "cos"):
            if len(getattr(self, name)) != n:
                raise BadSampleError(where, sample, f"has {len(getattr(self, name))} '{name}' entries for {n} captions")
        if list(self.mask.get("size", [])) != [self.height, self.width]:
            raise BadSampleError(
                where, sample, f"mask size {self.mask.get('size')} != image size [{self.height}, {self.width}]"
            )

    def decode_mask(self) -> np.ndarray:
        """The mask as ``(H, W)`` bool."""
        return rle_to_mask(self.mask)

    def decode_image_bytes(self) -> bytes | None:
        """The embedded original image file, if the record carries one."""
        return None if self.image_bytes is None else base64.b64decode(self.image_bytes)

    def load_image(self, image_root: str | Path) -> np.ndarray:
        """The record's image ``(H, W, 3)`` uint8 (embedded bytes, else ``image_root / image``), decoded by
        :func:`ris.formats.images.decode_rgb`; an image whose size differs from the record's raises ``ValueError``."""
        data = self.decode_image_bytes()
        path = Path(image_root) / self.image
        pixels = decode_rgb(path if data is None else data, f"{path} (record {self.sample_id})")
        if pixels.shape[:2] != (self.height, self.width):
            raise ValueError(
                f"record {self.sample_id}: image {self.image} is {pixels.shape[0]}x{pixels.shape[1]} (HxW), the "
                f"record's mask is {self.height}x{self.width}"
            )
        return pixels
