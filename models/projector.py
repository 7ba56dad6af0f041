"""CRIS's projector: upsample the decoder map ×4 and convolve it with a per-sample 3×3 kernel from the sentence."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import conv_bn_relu


class Projector(nn.Module):
    """``(B, 2c, h, w)`` visual map + ``(B, Ds)`` sentence → ``(B, 1, 4h, 4w)`` logits (``c = in_dim``)."""

    def __init__(self, state_dim: int = 1024, in_dim: int = 256, kernel_size: int = 3) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.kernel_size = kernel_size
        self.vis = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            conv_bn_relu(in_dim * 2, in_dim * 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            conv_bn_relu(in_dim * 2, in_dim, 3, padding=1),
            nn.Conv2d(in_dim, in_dim, 1),
        )
        self.txt = nn.Linear(state_dim, in_dim * kernel_size * kernel_size + 1)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        x = self.vis(x)
        batch, channels, height, width = x.shape
        params = self.txt(state)
        weight = params[:, :-1].reshape(batch, channels, self.kernel_size, self.kernel_size)
        bias = params[:, -1]
        out = F.conv2d(
            x.reshape(1, batch * channels, height, width), weight, bias, padding=self.kernel_size // 2, groups=batch
        )
        return out.transpose(0, 1)
