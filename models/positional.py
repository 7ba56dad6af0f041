"""Fixed sinusoidal positional encodings: the CRIS/ETRIS decoder's (added to queries and keys only) and SaG's
normalised DETR-style grid encoding (added to the slot inputs)."""

from __future__ import annotations

import math

import torch


def sine_1d(dim: int, length: int, device: torch.device | None = None) -> torch.Tensor:
    """``(length, dim)``: sin on even, cos on odd channels, frequencies ``exp(-ln(10000) 2i / dim)``."""
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return pe


def sine_2d(dim: int, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """``(height * width, dim)`` row-major: channels ``[0, dim/2)`` encode the column x, ``[dim/2, dim)`` the row y,
    each as :func:`sine_1d` over integer pixel indices with ``dim / 2`` channels."""
    if dim % 4:
        raise ValueError(f"2D sine encoding needs a channel count divisible by 4, got {dim}")
    half = dim // 2
    pe_x = sine_1d(half, width, device)  # (W, half)
    pe_y = sine_1d(half, height, device)  # (H, half)
    return torch.cat(
        [pe_x[None, :, :].expand(height, width, half), pe_y[:, None, :].expand(height, width, half)], dim=-1
    ).reshape(height * width, dim)


def normalized_sine_2d(
    dim: int, height: int, width: int, temperature: float = 10000.0, device: torch.device | None = None
) -> torch.Tensor:
    """DETR's normalised 2-D sine encoding (SaG's slot inputs, docs/baselines.md §1.3), ``(height * width, dim)``
    row-major.

    Row index ``y`` and column index ``x`` count from 1 and are scaled to ``(0, 2π]`` by the grid side; each axis
    gets ``dim / 2`` channels, alternating ``sin`` and ``cos`` of ``pos / temperature^(2⌊i/2⌋ / (dim/2))``.
    Channels ``[0, dim/2)`` encode the row, ``[dim/2, dim)`` the column.
    """
    if dim % 4:
        raise ValueError(f"2D sine encoding needs a channel count divisible by 4, got {dim}")
    half = dim // 2
    index = torch.arange(half, dtype=torch.float32, device=device)
    freq = temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / half)
    even = (index % 2 == 0)[None, :]

    def axis(length: int) -> torch.Tensor:
        pos = torch.arange(1, length + 1, dtype=torch.float32, device=device) / (length + 1e-6) * (2 * math.pi)
        angles = pos[:, None] / freq
        return torch.where(even, angles.sin(), angles.cos())  # (length, half)

    rows, cols = axis(height), axis(width)
    return torch.cat(
        [rows[:, None, :].expand(height, width, half), cols[None, :, :].expand(height, width, half)], dim=-1
    ).reshape(height * width, dim)
