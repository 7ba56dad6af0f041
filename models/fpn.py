"""CRIS's text-gated FPN neck: ``[C3, C4, C5]`` + sentence → one ``(B, fpn_out[1], H4, W4)`` map at ``C4``'s grid.

C5 is gated element-wise by the projected sentence, merged top-down into C4 and C3 (C3 pooled to C4's grid), the
three levels are fused at C4's grid and a CoordConv head follows. Resizing goes by the target size, so feature
pyramids with equal strides (ViT) pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import CoordConv, conv_bn_relu


def _up_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    if x.shape[-2:] == ref.shape[-2:]:
        return x
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class TextGatedFPN(nn.Module):
    """The CRIS neck. ``in_channels`` = channels of C3, C4, C5; ``out_channels`` = CRIS's ``fpn_out``."""

    def __init__(
        self,
        in_channels: Sequence[int] = (512, 1024, 1024),
        out_channels: Sequence[int] = (256, 512, 1024),
        state_dim: int = 1024,
    ) -> None:
        super().__init__()
        c3, c4, c5 = in_channels
        o3, o4, o5 = out_channels
        self.txt_proj = nn.Sequential(nn.Linear(state_dim, o5, bias=False), nn.BatchNorm1d(o5), nn.ReLU(inplace=True))
        self.f1_v_proj = conv_bn_relu(c5, o5, 1)
        self.norm_layer = nn.Sequential(nn.BatchNorm2d(o5), nn.ReLU(inplace=True))
        self.f2_v_proj = conv_bn_relu(c4, o4, 3, padding=1)
        self.f2_cat = conv_bn_relu(o5 + o4, o4, 1)
        self.f3_v_proj = conv_bn_relu(c3, o3, 3, padding=1)
        self.f3_cat = conv_bn_relu(o3 + o4, o4, 1)
        self.f4_proj5 = conv_bn_relu(o5, o4, 3, padding=1)
        self.f4_proj4 = conv_bn_relu(o4, o4, 3, padding=1)
        self.f4_proj3 = conv_bn_relu(o4, o4, 3, padding=1)
        self.aggr = conv_bn_relu(3 * o4, o4, 1)
        self.coordconv = CoordConv(o4)

    def forward(self, features: Sequence[torch.Tensor], state: torch.Tensor) -> torch.Tensor:
        """``features`` ``[C3, C4, C5]``, ``state`` ``(B, Ds)`` → ``(B, fpn_out[1], H4, W4)``."""
        v3, v4, v5 = features
        gate = self.txt_proj(state)[:, :, None, None]
        f5 = self.norm_layer(self.f1_v_proj(v5) * gate)
        f4 = self.f2_v_proj(v4)
        f4 = self.f2_cat(torch.cat([f4, _up_to(f5, f4)], dim=1))
        f3 = F.adaptive_avg_pool2d(self.f3_v_proj(v3), f4.shape[-2:])
        f3 = self.f3_cat(torch.cat([f3, f4], dim=1))
        fq5 = _up_to(self.f4_proj5(f5), f4)
        fq = self.aggr(torch.cat([self.f4_proj3(f3), self.f4_proj4(f4), fq5], dim=1))
        return self.coordconv(fq)
