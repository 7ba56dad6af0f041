"""ETRIS's Hierarchical Alignment neck: each level projected to the C4 grid, gated by the sentence, then fused.

With one key token the attention weight is always 1, so the per-level "InteractorT" fusion reduces to channel-wise
gating by ``out_proj(v_proj(sentence))`` (its q/k projections receive zero gradients).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import CoordConv, conv_bn_relu, resample_conv


class GatedCrossAttention(nn.Module):
    """ETRIS's "InteractorT": ``query ⊙ MHA(query, memory, memory)`` (no norm, no FFN); batch-first tokens."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """``query`` ``(B, N, C)``, ``memory`` ``(B, M, C)`` → ``(B, N, C)``."""
        return query * self.attn(query, memory, memory, need_weights=False)[0]


class HierarchicalAlignmentNeck(nn.Module):
    """``[C3, C4, C5]`` at ``in_strides`` + sentence → ``(B, out_dim, H4, W4)`` at C4's stride."""

    def __init__(
        self,
        in_channels: Sequence[int] = (512, 1024, 1024),
        in_strides: Sequence[int] = (8, 16, 32),
        out_dim: int = 512,
        state_dim: int = 1024,
        nhead: int = 8,
    ) -> None:
        super().__init__()
        grid = in_strides[1]
        self.txt_proj = nn.Linear(state_dim, out_dim)
        self.projections = nn.ModuleList(
            [resample_conv(c, out_dim, s, grid, norm=True) for c, s in zip(in_channels, in_strides)]
        )
        self.fusions = nn.ModuleList([GatedCrossAttention(out_dim, nhead) for _ in in_channels])
        self.aggr = conv_bn_relu(3 * out_dim, out_dim, 1)
        self.coordconv = CoordConv(out_dim)

    def forward(self, features: Sequence[torch.Tensor], state: torch.Tensor) -> torch.Tensor:
        sentence = self.txt_proj(state)[:, None, :]
        levels = []
        for feature, project, fuse in zip(features, self.projections, self.fusions):
            f = project(feature)
            batch, channels, height, width = f.shape
            tokens = fuse(f.flatten(2).transpose(1, 2), sentence)
            levels.append(tokens.transpose(1, 2).reshape(batch, channels, height, width))
        return self.coordconv(self.aggr(torch.cat(levels, dim=1)))
