"""Fixed sinusoidal positional encodings of the CRIS/ETRIS decoder (added to queries and keys only)."""

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
