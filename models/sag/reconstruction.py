"""SaG's slot reconstruction decoder (auxiliary loss only; docs/baselines.md §1.3, item 4): a spatial-broadcast MLP.

Each slot is copied to every cell of the patch grid, a learned 2-D positional embedding is added (``D / 2``
channels for the column, ``D / 2`` for the row), and an MLP (``D → D → D → D → C + 1``, ReLU between) gives a
``C``-dim feature and one alpha logit per slot and cell. A softmax of the alphas over the slots mixes the slot
features into the reconstruction ``(B, N, C)`` of the ViT tokens.
"""

from __future__ import annotations

import torch
from torch import nn


class BroadcastDecoder(nn.Module):
    """Slots ``(B, K, D)`` → reconstruction ``(B, N, C)`` and mixing weights ``(B, K, N)`` (softmax over K).

    Args:
        dim: slot width ``D`` (even).
        feature_dim: reconstructed feature width ``C`` (the ViT width).
        grid: the patch grid ``(h, w)``; the positional tables have ``w`` and ``h`` rows.
        layers: MLP depth (4).
    """

    def __init__(self, dim: int, feature_dim: int, grid: tuple[int, int], layers: int = 4) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"the decoder's positional embedding needs an even slot width, got {dim}")
        if layers < 1:
            raise ValueError(f"the decoder MLP needs at least one layer, got {layers}")
        self.grid = grid
        self.col_embed = nn.Parameter(torch.rand(grid[1], dim // 2))
        self.row_embed = nn.Parameter(torch.rand(grid[0], dim // 2))
        blocks: list[nn.Module] = []
        for _ in range(layers - 1):
            blocks += [nn.Linear(dim, dim), nn.ReLU()]
        self.mlp = nn.Sequential(*blocks, nn.Linear(dim, feature_dim + 1))

    def position(self) -> torch.Tensor:
        """``(N, D)`` row-major: ``[col_embed[x], row_embed[y]]`` at cell ``(y, x)``."""
        h, w = self.grid
        cols = self.col_embed[None, :, :].expand(h, w, -1)
        rows = self.row_embed[:, None, :].expand(h, w, -1)
        return torch.cat([cols, rows], dim=-1).reshape(h * w, -1)

    def forward(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        decoded = self.mlp(slots[:, :, None, :] + self.position().to(slots.dtype))  # (B, K, N, C + 1)
        features, alpha = decoded[..., :-1], decoded[..., -1].softmax(dim=1)
        return torch.einsum("bknc,bkn->bnc", features, alpha), alpha
