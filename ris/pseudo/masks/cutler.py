"""CutLER-guided selection of another source's masks (docs/method.md §2.3).

CutLER is a detectron2 model, so its instance masks are read from files, one folder per image
(``{guide_dir}/{image_id}/{j}.png``); each CutLER instance picks the best-matching mask of the inner source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

from .proposals import MaskSource, SkipImage, check_rgb, empty_masks, flatten

MatchRule = Literal["intersection", "iou"]


def match_guides(guides: np.ndarray, candidates: np.ndarray, rule: MatchRule = "intersection") -> np.ndarray:
    """For each guide mask, the index of the best-matching candidate mask (docs/method.md §2.3).

    Args:
        guides: ``(G, H, W)`` bool (CutLER instances).
        candidates: ``(M, H, W)`` bool (e.g. SAM masks), M >= 1.
        rule: ``"intersection"`` (the official code: arg-max of the intersection pixel count) or ``"iou"``
            (the paper's text).

    Returns:
        ``(G,)`` int64 candidate indices; ties go to the first (lowest) index.

    All intersection counts come from one matrix product of the flattened masks (exact: float32 for images up to
    2**24 pixels, float64 above).
    """
    if rule not in ("intersection", "iou"):
        raise ValueError(f"unknown match rule {rule!r}; expected 'intersection' or 'iou'")
    if len(candidates) == 0:
        raise ValueError("match_guides needs at least one candidate mask")
    if guides.shape[1:] != candidates.shape[1:]:
        raise ValueError(f"guide masks {guides.shape[1:]} and candidate masks {candidates.shape[1:]} differ in size")
    dtype = np.float32 if candidates[0].size <= 2**24 else np.float64
    flat_g, flat_c = flatten(guides).astype(dtype), flatten(candidates).astype(dtype)
    score = flat_g @ flat_c.T
    if rule == "iou":
        union = flat_g.sum(axis=1)[:, None] + flat_c.sum(axis=1)[None, :] - score
        score = np.divide(score, union, out=np.zeros_like(score), where=union > 0)
    return score.argmax(axis=1).astype(np.int64)


def read_mask_png(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A mask PNG (any non-zero pixel is foreground) as ``(H, W)`` bool; its size must be ``size`` = (H, W)."""
    try:
        with Image.open(path) as png:
            mask = np.asarray(png.convert("L")) > 0
    except OSError as err:
        raise ValueError(f"{path}: unreadable mask PNG ({err})") from err
    if mask.shape != size:
        raise ValueError(f"{path}: mask is {mask.shape[0]}x{mask.shape[1]} (HxW), expected {size[0]}x{size[1]}")
    return mask


def read_mask_folder(folder: Path, size: tuple[int, int]) -> np.ndarray:
    """The masks ``{folder}/0.png, 1.png, …`` in index order as ``(G, H, W)`` bool; a missing folder gives G = 0."""
    if not folder.is_dir():
        return empty_masks(*size)
    files = sorted(folder.glob("*.png"))
    bad = [f.name for f in files if not f.stem.isdigit()]
    if bad:
        raise ValueError(f"{folder}: mask files must be named <index>.png, found {', '.join(bad[:3])}")
    files.sort(key=lambda f: int(f.stem))
    if not files:
        return empty_masks(*size)
    return np.stack([read_mask_png(f, size) for f in files])


class CutLERGuidedSource:
    """Select, for each CutLER instance, the best-matching mask of another source (docs/method.md §2.3).

    CutLER's instance masks are read from ``guide_dir/{image_id}/{j}.png`` (j = 0…G−1 in CutLER order, uint8,
    any non-zero pixel is foreground, original resolution). A ``guide_dir`` without any such folder is refused when
    the source is created (an empty or wrong folder would otherwise skip every image). An image without a folder
    (CutLER found nothing: the official script writes no folder then, or the guides are for other images) raises
    :class:`~ris.pseudo.masks.proposals.SkipImage` ``no_cutler_guides``, so the run counts it under that reason
    instead of producing nothing silently. Each instance picks one mask of ``inner`` by ``match``
    (``"intersection"``, the official code, or ``"iou"``); when two instances pick the same mask it is kept once
    (``deduplicate``, the §0.1 fix; ``False`` reproduces the official duplicates). Output order = CutLER order of
    the first instance that picked each mask.
    """

    def __init__(
        self, inner: MaskSource, guide_dir: str | Path, match: MatchRule = "intersection", deduplicate: bool = True
    ) -> None:
        if match not in ("intersection", "iou"):
            raise ValueError(f"unknown match rule {match!r}; expected 'intersection' or 'iou'")
        self.guide_dir = Path(guide_dir)
        if not self.guide_dir.is_dir():
            raise FileNotFoundError(f"CutLER guide folder not found: {self.guide_dir}")
        if not any(folder.is_dir() and any(folder.glob("*.png")) for folder in self.guide_dir.iterdir()):
            loose = len(list(self.guide_dir.glob("*.png")))
            raise ValueError(
                f"CutLER guide folder {self.guide_dir} holds no {{image_id}}/{{j}}.png instance masks"
                + (f" (found {loose} PNG files directly in it)" if loose else " (it is empty of mask folders)")
                + "; point guide_dir at the folder CutLER's masks were written to"
            )
        self.inner = inner
        self.match = match
        self.deduplicate = deduplicate
        self.name = f"cutler+{inner.name}"

    def settings(self) -> dict[str, Any]:
        return {
            "guide_dir": str(self.guide_dir),
            "match": self.match,
            "deduplicate": self.deduplicate,
            "inner": {"name": self.inner.name, **self.inner.settings()},
        }

    def __call__(self, image: np.ndarray, image_id: str) -> npt.NDArray[np.bool_]:
        size = check_rgb(image, image_id)
        folder = self.guide_dir / str(image_id)
        guides = read_mask_folder(folder, size)
        if len(guides) == 0:
            raise SkipImage("no_cutler_guides", f"no CutLER instance masks in {folder} (CutLER found no instance, or "
                            "the guides were written for other images)")
        candidates = self.inner(image, image_id)
        if len(candidates) == 0:
            return empty_masks(*size)
        chosen = match_guides(guides, candidates, self.match)
        if self.deduplicate:
            _, first = np.unique(chosen, return_index=True)
            chosen = chosen[np.sort(first)]
        return candidates[chosen]
