"""Mask proposals: the interface of every mask source, and the policy that turns a source's output into an image's
masks.

A :class:`MaskSource` maps an RGB image ``(H, W, 3)`` uint8 and its id to boolean masks ``(K, H, W)`` (K may be 0),
**ranked** best first, and describes itself with a ``name`` and a ``settings()`` dict for provenance.

:class:`MaskPolicy` then drops empty/small masks and masks covering the whole image, removes exact duplicates (a
fix, docs/method.md §0.1) and keeps the first ``max_masks`` masks of the ranking. An image left with no mask is skipped
with a reason (:func:`propose_masks`). Masks touching the image border are kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from PIL import Image


class SkipImage(Exception):
    """Raised by a mask source that has nothing for one image and knows why (e.g. no CutLER guide folder).

    :func:`propose_masks` turns it into a skipped :class:`MaskProposals` with ``skip_kind = kind``.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@runtime_checkable
class MaskSource(Protocol):
    """Anything that proposes masks for an image.

    ``__call__(image (H, W, 3) uint8 RGB, image_id) -> (K, H, W) bool``, ranked best first; K may be 0.
    """

    name: str

    def settings(self) -> dict[str, Any]: ...

    def __call__(self, image: np.ndarray, image_id: str) -> npt.NDArray[np.bool_]: ...


def check_rgb(image: np.ndarray, image_id: str) -> tuple[int, int]:
    """Validate an ``(H, W, 3)`` uint8 image and return ``(H, W)``."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}"
        raise ValueError(f"image {image_id}: expected an (H, W, 3) uint8 RGB array, got {desc}")
    return int(image.shape[0]), int(image.shape[1])


def at_working_resolution(
    propose: Callable[[np.ndarray], np.ndarray], image: np.ndarray, max_pixels: int | None
) -> np.ndarray:
    """Run ``propose`` (``(h, w, 3)`` uint8 → ``(K, h, w)`` bool) on ``image`` ``(H, W, 3)`` shrunk to at most
    ``max_pixels`` pixels (aspect kept, PIL's antialiased bilinear resize) and map the masks back to ``(K, H, W)``
    (nearest). Images within the budget, or ``max_pixels=None``, run at full resolution. This bounds the time and
    memory a mask source spends on a large photo (docs/method.md §2)."""
    height, width = image.shape[:2]
    if max_pixels is None or height * width <= max_pixels:
        return propose(image)
    scale = math.sqrt(max_pixels / (height * width))
    small_h, small_w = max(1, int(height * scale)), max(1, int(width * scale))
    small = np.asarray(Image.fromarray(image).resize((small_w, small_h), Image.BILINEAR))
    masks = propose(small)
    rows = (np.arange(height) * small_h) // height
    cols = (np.arange(width) * small_w) // width
    return masks[:, rows[:, None], cols[None, :]]


def empty_masks(height: int, width: int) -> np.ndarray:
    """No mask: ``(0, H, W)`` bool."""
    return np.zeros((0, height, width), dtype=bool)


def flatten(masks: np.ndarray) -> np.ndarray:
    """``(K, H, W)`` → ``(K, H·W)`` (also for K = 0)."""
    return masks.reshape(masks.shape[0], masks.shape[1] * masks.shape[2])


def duplicate_free(masks: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of every distinct mask of ``masks`` ``(K, H, W)``, in order."""
    seen: set[bytes] = set()
    keep = []
    for index, packed in enumerate(np.packbits(flatten(masks), axis=1)):
        key = packed.tobytes()
        if key not in seen:
            seen.add(key)
            keep.append(index)
    return np.asarray(keep, dtype=np.int64)


@dataclass
class MaskProposals:
    """The masks kept for one image.

    Attributes:
        image_id: the image id.
        masks: ``(K, H, W)`` bool, in the source's ranking order.
        source_count: how many masks the source returned.
        dropped: counts of masks dropped per reason (``small``, ``full_image``, ``duplicate``, ``over_limit``).
        skip_reason: why the image has no mask (``None`` when K > 0).
        skip_kind: the skip category: ``no_masks`` (the source returned none), ``all_masks_dropped`` (the policy
            dropped all), or a source's own (:class:`SkipImage`, e.g. ``no_cutler_guides``).
    """

    image_id: str
    masks: np.ndarray
    source_count: int
    dropped: dict[str, int] = field(default_factory=dict)
    skip_reason: str | None = None
    skip_kind: str | None = None

    @property
    def skipped(self) -> bool:
        return self.skip_reason is not None


@dataclass
class MaskPolicy:
    """What happens to a source's masks before captioning.

    Applied in this order: masks with fewer than ``min_area`` pixels are dropped (empty masks always; the default
    1 drops only those); masks covering every pixel are dropped when ``drop_full_image`` (the official caption script
    skips single-valued mask PNGs, docs/method.md §3.2); exact duplicates are removed keeping the first
    (``deduplicate``, the §0.1 fix); then the first ``max_masks`` masks of the source's ranking are kept.

    ``max_masks`` is an explicit cap, off by default (``None``): the official generator keeps every mask (CutLER's
    at most 100 detections) and only turns the distinctive contrast off above 30 masks, which is the decoder's
    ``contrast_max_masks`` (docs/method.md §4.4 step 6), a separate setting. Masks dropped by a cap are counted
    (``over_limit``) in the run's summary.
    """

    min_area: int = 1
    max_masks: int | None = None
    deduplicate: bool = True
    drop_full_image: bool = True

    def __post_init__(self) -> None:
        if self.min_area < 0:
            raise ValueError(f"MaskPolicy.min_area must be >= 0, got {self.min_area}")
        if self.max_masks is not None and self.max_masks < 1:
            raise ValueError(f"MaskPolicy.max_masks must be >= 1 or None, got {self.max_masks}")

    def settings(self) -> dict[str, Any]:
        return asdict(self)

    def apply(self, masks: np.ndarray, image_id: str) -> MaskProposals:
        """Filter ``masks`` ``(K, H, W)`` bool; the result is skipped (with a reason) when no mask remains."""
        source_count = len(masks)
        dropped = {"small": 0, "full_image": 0, "duplicate": 0, "over_limit": 0}
        areas = flatten(masks).sum(axis=1)
        keep = areas >= max(self.min_area, 1)
        dropped["small"] = int((~keep).sum())
        if self.drop_full_image:
            full = areas == masks.shape[1] * masks.shape[2]
            dropped["full_image"] = int((full & keep).sum())
            keep &= ~full
        masks = masks[keep]
        if self.deduplicate:
            unique = duplicate_free(masks)
            dropped["duplicate"] = len(masks) - len(unique)
            masks = masks[unique]
        if self.max_masks is not None and len(masks) > self.max_masks:
            dropped["over_limit"] = len(masks) - self.max_masks
            masks = masks[: self.max_masks]
        reason = kind = None
        if len(masks) == 0:
            detail = ", ".join(f"{n} {why}" for why, n in dropped.items() if n)
            reason = "the mask source returned no mask" if source_count == 0 else f"all masks dropped ({detail})"
            kind = "no_masks" if source_count == 0 else "all_masks_dropped"
        return MaskProposals(image_id, masks, source_count, dropped, reason, kind)


def propose_masks(source: MaskSource, image: np.ndarray, image_id: str, policy: MaskPolicy) -> MaskProposals:
    """Run ``source`` on ``image`` ``(H, W, 3)`` uint8 RGB, check its output and apply ``policy`` (a
    :class:`SkipImage` from the source gives a skipped result of its kind)."""
    height, width = check_rgb(image, image_id)
    try:
        masks = source(image, image_id)
    except SkipImage as skip:
        return MaskProposals(image_id, empty_masks(height, width), 0, {}, f"{source.name}: {skip}", skip.kind)
    if not isinstance(masks, np.ndarray) or masks.dtype != bool or masks.shape[1:] != (height, width):
        desc = f"{getattr(masks, 'dtype', type(masks).__name__)} {getattr(masks, 'shape', '')}"
        raise ValueError(
            f"mask source {source.name!r} on image {image_id}: expected a (K, {height}, {width}) bool array, "
            f"got {desc}"
        )
    proposals = policy.apply(masks, image_id)
    if proposals.skip_reason is not None:
        proposals.skip_reason = f"{source.name}: {proposals.skip_reason}"
    return proposals
