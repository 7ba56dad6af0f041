"""Image → network input geometry: the CRIS letterbox, SaG's plain resize ("squash"), and their exact inverse.

Coordinates are pixel indices (pixel centres at integers, as OpenCV's ``warpAffine``). Both geometries are described
by a ``(2, 3)`` matrix ``M`` that maps original pixel coordinates ``(x, y)`` to network-input coordinates
``M @ (x, y, 1)``; batches carry ``M`` so predictions can be warped back to the original resolution whatever the
geometry (docs/data.md §4). :func:`network_input` builds a model's input from its :class:`ris.contracts.InputSpec`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ris.contracts import CLIP_MEAN, CLIP_STD, InputSpec

__all__ = [
    "CLIP_MEAN", "CLIP_STD", "input_matrix", "invert_affine", "letterbox_mask", "letterbox_matrix", "network_input",
    "squash_matrix", "unletterbox", "warp_affine",
]


def letterbox_matrix(height: int, width: int, size: int) -> torch.Tensor:
    """``(2, 3)`` float64 matrix mapping original ``(x, y)`` to the centred, scaled position in a ``size``² input.

    Scale ``s = min(size / h, size / w)``; offsets ``((size - w s) / 2, (size - h s) / 2)`` as floats, as CRIS does.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    s = min(size / height, size / width)
    return torch.tensor(
        [[s, 0.0, (size - width * s) / 2], [0.0, s, (size - height * s) / 2]], dtype=torch.float64
    )


def squash_matrix(height: int, width: int, size: int) -> torch.Tensor:
    """``(2, 3)`` float64 matrix of a plain resize of ``height × width`` to ``size × size`` (aspect not kept).

    Pixel areas map onto pixel areas (``align_corners=False``): ``x' = (x + 0.5) · size / w − 0.5``.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    sx, sy = size / width, size / height
    return torch.tensor([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]], dtype=torch.float64)


def input_matrix(height: int, width: int, spec: InputSpec) -> torch.Tensor:
    """The original → input matrix of ``spec``'s geometry."""
    if spec.resize == "squash":
        return squash_matrix(height, width, spec.size)
    return letterbox_matrix(height, width, spec.size)


def invert_affine(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of a ``(..., 2, 3)`` affine matrix."""
    full = torch.cat([matrix, torch.tensor([[0.0, 0.0, 1.0]], dtype=matrix.dtype).expand(*matrix.shape[:-2], 1, 3)], -2)
    return torch.linalg.inv(full)[..., :2, :]


def warp_affine(
    src: torch.Tensor,
    matrix: torch.Tensor,
    out_size: tuple[int, int],
    mode: str = "bilinear",
    fill: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """Warp ``src`` ``(C, H, W)`` float by ``matrix`` (source → destination pixel coordinates) to ``(C, *out_size)``.

    Each destination pixel ``p`` samples the source at ``M⁻¹ p``; points outside the source get ``fill`` (a scalar
    or a ``(C,)`` tensor). ``mode`` is ``"nearest"``, ``"bilinear"`` or ``"bicubic"``.
    """
    c, h, w = src.shape
    oh, ow = out_size
    inv = invert_affine(matrix.to(torch.float64))
    ys, xs = torch.meshgrid(
        torch.arange(oh, dtype=torch.float64), torch.arange(ow, dtype=torch.float64), indexing="ij"
    )
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    gx = 2 * sx / max(w - 1, 1) - 1 if w > 1 else torch.zeros_like(sx)
    gy = 2 * sy / max(h - 1, 1) - 1 if h > 1 else torch.zeros_like(sy)
    grid = torch.stack([gx, gy], dim=-1).to(src.dtype)[None]
    fill_t = torch.as_tensor(fill, dtype=src.dtype).reshape(-1, 1, 1).expand(c, 1, 1)
    # Warp (src - fill) with zero padding, then add fill back: outside pixels become exactly ``fill``.
    out = F.grid_sample((src - fill_t)[None], grid, mode=mode, padding_mode="zeros", align_corners=True)[0]
    inside = (sx > -0.5) & (sx < w - 0.5) & (sy > -0.5) & (sy < h - 0.5)
    if mode == "nearest":
        return torch.where(inside.to(src.device)[None], out + fill_t, fill_t.expand_as(out))
    return out + fill_t


def network_input(image: torch.Tensor, spec: InputSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``(3, H, W)`` uint8 RGB image as the ``(3, S, S)`` float input ``spec`` describes, and its ``(2, 3)`` matrix.

    ``letterbox``: CRIS's bicubic affine warp (border = the mean colour, exactly 0 after normalisation);
    ``squash``: an antialiased bilinear resize to ``S × S``. Both are then normalised with ``spec.mean`` /
    ``spec.std``.
    """
    _, h, w = image.shape
    matrix = input_matrix(h, w, spec)
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    src = image.float() / 255.0
    if spec.resize == "squash":
        size = (spec.size, spec.size)
        resized = F.interpolate(src[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    else:
        resized = warp_affine(src, matrix, (spec.size, spec.size), mode="bicubic", fill=mean.view(3))
    return (resized.clamp(0, 1) - mean) / std, matrix


def letterbox_mask(mask: torch.Tensor, matrix: torch.Tensor, size: int) -> torch.Tensor:
    """Warp a ``(H, W)`` binary mask with the image's input ``matrix`` (letterbox or squash) → soft
    ``(1, size, size)`` float in [0, 1].

    Linear interpolation, border 0: the target is anti-aliased at the edges, as in CRIS training.
    """
    return warp_affine(mask.float()[None], matrix, (size, size), mode="bilinear").clamp(0, 1)


def unletterbox(
    prob: torch.Tensor, matrix: torch.Tensor, orig_size: tuple[int, int], mode: str = "bicubic"
) -> torch.Tensor:
    """Map an input-resolution map ``(C, S, S)`` back to the original ``(C, H, W)`` with the inverse of ``matrix``."""
    return warp_affine(prob, invert_affine(matrix.to(torch.float64)), orig_size, mode=mode, fill=0.0)
