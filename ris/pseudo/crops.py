"""The generator's per-mask crops (docs/method.md §3).

For every mask of an image, :func:`make_crops` cuts one crop per entry of ``margins``: the first is the **masked**
crop (pixels outside the mask replaced by the fill colour, tight box scaled by ``margins[0]``), the others are plain
context crops of the unmasked image with the box scaled by their factor. The default ``(1.0, 1.0, 1.1, 1.2)`` gives
the paper's four crop types 0–3. Every crop is padded to a square with the fill colour and resized to ``size``.

Arithmetic (the official script's, with the fixes of docs/method.md §0.2):

- the image is normalised once at full resolution, ``(x / 255 − mean) / std``, and crops are cut from it;
- boxes are inclusive: width = x_max − x_min + 1 (the official code drops the last column/row; fixed);
- a factor f widens the box by ``(f − 1)·w / 2`` on each side (likewise for the height), clamps it to the image
  and takes every pixel the scaled box touches: ``floor`` of the start, ``ceil`` of the end. For f = 1 this is the
  exact box. (The official ``int()`` of start and width can move a sub-pixel-margin crop off a 1-pixel mask.);
- square padding: ``pad_left = (side − w) // 2``, the remainder on the right, likewise top/bottom;
- the fill is given in raw RGB (0–255); the default is the official value, whose *normalised* value equals
  ``mean`` (the mean vector added in the normalised space), i.e. RGB ≈ (155.8, 147.3, 132.8) for CLIP's
  statistics — not the CLIP mean colour;
- resize: bilinear, ``align_corners=False``, without antialias by default (torchvision 0.12 on tensors).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

PAPER_MARGINS = (1.0, 1.0, 1.1, 1.2)


def default_fill(mean: Sequence[float], std: Sequence[float]) -> tuple[float, float, float]:
    """The official fill in raw RGB 0–255: normalised value = ``mean``, raw = 255·(mean + mean·std)."""
    return tuple(255.0 * (m + m * s) for m, s in zip(mean, std))  # type: ignore[return-value]


def mask_boxes(masks: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Inclusive boxes ``(K, 4)`` long ``[x_min, y_min, x_max, y_max]`` of ``masks`` ``(K, H, W)`` bool.

    Raises ``ValueError`` naming the first empty mask.
    """
    masks = masks.bool() if isinstance(masks, torch.Tensor) else torch.from_numpy(np.array(masks, dtype=bool))
    any_cols, any_rows = masks.any(dim=1), masks.any(dim=2)
    empty = ~any_cols.any(dim=1)
    if empty.any():
        raise ValueError(f"mask {int(empty.nonzero()[0])} is empty; drop empty masks before cropping")
    width, height = masks.shape[2], masks.shape[1]
    x_idx, y_idx = torch.arange(width), torch.arange(height)
    big = max(width, height)
    x_min = torch.where(any_cols, x_idx, big).amin(dim=1)
    x_max = torch.where(any_cols, x_idx, -1).amax(dim=1)
    y_min = torch.where(any_rows, y_idx, big).amin(dim=1)
    y_max = torch.where(any_rows, y_idx, -1).amax(dim=1)
    return torch.stack([x_min, y_min, x_max, y_max], dim=1)


def crop_window(box: Sequence[int], factor: float, height: int, width: int) -> tuple[int, int, int, int]:
    """Pixel window ``(top, left, bottom, right)`` (exclusive ends) of the inclusive ``box`` scaled by ``factor``,
    clamped to the image."""
    x_min, y_min, x_max, y_max = (int(v) for v in box)
    w, h = x_max - x_min + 1, y_max - y_min + 1
    x_margin, y_margin = (factor - 1.0) * w / 2.0, (factor - 1.0) * h / 2.0
    left = max(0, math.floor(x_min - x_margin))
    top = max(0, math.floor(y_min - y_margin))
    right = min(width, math.ceil(x_max + 1 + x_margin))
    bottom = min(height, math.ceil(y_max + 1 + y_margin))
    return top, left, bottom, right


def _to_chw(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    tensor = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image))
    if tensor.dtype != torch.uint8 or tensor.ndim != 3:
        raise ValueError(f"expected a uint8 image (H, W, 3) or (3, H, W), got {tensor.dtype} {tuple(tensor.shape)}")
    if tensor.shape[2] == 3:
        return tensor.permute(2, 0, 1)
    if tensor.shape[0] == 3:
        return tensor
    raise ValueError(f"expected a uint8 image (H, W, 3) or (3, H, W), got shape {tuple(tensor.shape)}")


def pad_square(crop: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Pad ``crop`` ``(3, h, w)`` to ``(3, s, s)``, s = max(h, w), centred (extra pixel right/bottom), with ``fill``
    ``(3,)``."""
    _, h, w = crop.shape
    side = max(h, w)
    out = fill.view(3, 1, 1).expand(3, side, side).clone()
    top, left = (side - h) // 2, (side - w) // 2
    out[:, top : top + h, left : left + w] = crop
    return out


def make_crops(
    image: np.ndarray | torch.Tensor,
    masks: np.ndarray | torch.Tensor,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    margins: Sequence[float] = PAPER_MARGINS,
    fill: Sequence[float] | None = None,
    antialias: bool = False,
) -> torch.Tensor:
    """All crops of all masks of one image.

    Args:
        image: uint8 RGB ``(H, W, 3)`` or ``(3, H, W)`` (``(3, H, 3)`` is read as channels-last).
        masks: ``(K, H, W)`` bool, no empty mask.
        size: output side S (the captioner's input size).
        mean, std: the model's normalisation statistics (0–1 scale).
        margins: box factors; entry 0 is the masked crop, the others plain context crops.
        fill: raw RGB 0–255 fill for the masked background and the padding; ``None`` = :func:`default_fill`.
        antialias: antialiased resize (off, as the official code).

    Returns:
        ``(T, K, 3, S, S)`` float32, normalised with ``mean``/``std``; T = ``len(margins)``.
    """
    chw = _to_chw(image)
    masks_t = masks.bool() if isinstance(masks, torch.Tensor) else torch.from_numpy(np.array(masks, dtype=bool))
    _, height, width = chw.shape
    if masks_t.ndim != 3 or tuple(masks_t.shape[1:]) != (height, width):
        raise ValueError(f"masks must be (K, {height}, {width}) for this image, got {tuple(masks_t.shape)}")
    if not margins or any(f < 1.0 for f in margins):
        raise ValueError(f"margins must be a non-empty list of factors >= 1, got {list(margins)}")
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    fill_raw = torch.tensor(default_fill(mean, std) if fill is None else fill, dtype=torch.float32).view(3, 1, 1)
    fill_norm = ((fill_raw / 255.0 - mean_t) / std_t).view(3)
    normalised = (chw.float() / 255.0 - mean_t) / std_t
    out = torch.empty(len(margins), len(masks_t), 3, size, size)
    boxes = mask_boxes(masks_t) if len(masks_t) else torch.zeros(0, 4, dtype=torch.long)
    for k, box in enumerate(boxes.tolist()):
        for t, factor in enumerate(margins):
            top, left, bottom, right = crop_window(box, factor, height, width)
            crop = normalised[:, top:bottom, left:right]
            if t == 0:
                inside = masks_t[k, top:bottom, left:right]
                crop = torch.where(inside, crop, fill_norm.view(3, 1, 1))
            square = pad_square(crop, fill_norm)
            out[t, k] = F.interpolate(
                square[None], size=(size, size), mode="bilinear", align_corners=False, antialias=antialias
            )[0]
    return out
