"""SaG's binarisation (docs/baselines.md §1.6): a patch-grid relevance map → a bool mask at the original image
resolution.

The map is resampled bilinearly at every original pixel through the batch's affine (original pixel → network
input coordinates; pixel centres at integers, as :mod:`ris.letterbox`), then min–max normalised over the image and
thresholded (``≥ 0.5``). For SaG's squash geometry this is a plain bilinear resize of the grid to ``(H, W)``
(``align_corners=False``), as the official evaluation does; a letterbox affine is inverted as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def grid_to_original(grid_map: torch.Tensor, affine: torch.Tensor, orig_size: tuple[int, int], input_size: int):
    """Resample ``grid_map`` ``(h, w)`` (covering the ``input_size``² input) at the pixels of the original image.

    ``affine`` ``(2, 3)`` maps original ``(x, y)`` to input coordinates. Returns ``(H, W)`` float32.
    """
    height, width = orig_size
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    matrix = affine.detach().to(torch.float64).cpu()
    u = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
    v = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
    # Input pixel centre u sits at edge coordinate u + 0.5; the grid covers [0, input_size) (align_corners=False).
    grid = torch.stack([(u + 0.5) / input_size * 2 - 1, (v + 0.5) / input_size * 2 - 1], dim=-1)
    sampled = F.grid_sample(
        grid_map.detach().float().cpu()[None, None],
        grid.float()[None],
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    return sampled[0, 0]


def min_max_threshold(prob: torch.Tensor, threshold: float = 0.5, eps: float = 1e-9) -> torch.Tensor:
    """``(prob - min) / (max - min + eps) >= threshold`` over the whole map."""
    low, high = prob.min(), prob.max()
    return (prob - low) / (high - low + eps) >= threshold


def relevance_to_masks(
    maps: torch.Tensor,
    affine: torch.Tensor,
    orig_sizes: torch.Tensor | Sequence[tuple[int, int]],
    input_size: int,
    threshold: float = 0.5,
) -> list[torch.Tensor]:
    """``maps`` ``(B, h, w)`` → ``B`` bool masks ``(H_i, W_i)`` at original resolution (CPU)."""
    masks = []
    for b in range(maps.shape[0]):
        h, w = (int(v) for v in orig_sizes[b])
        masks.append(min_max_threshold(grid_to_original(maps[b], affine[b], (h, w), input_size), threshold))
    return masks
