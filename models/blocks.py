"""Small convolutional building blocks shared by the necks, projector and Bridger."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, padding: int = 0) -> nn.Sequential:
    """CRIS's "CBR": Conv2d (no bias) + BatchNorm2d + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)
    )


def resample_conv(
    in_ch: int, out_ch: int, in_stride: int, out_stride: int, norm: bool = False, transpose_same: bool = False
) -> nn.Sequential:
    """A bias-free conv that maps a stride-``in_stride`` map to stride ``out_stride`` (ratio 1, 2^k or 1/2^k).

    Down (``out_stride > in_stride``): Conv2d with kernel = stride = ratio; same: 1×1 Conv2d, or 1×1
    ConvTranspose2d with ``transpose_same`` (the same map, but its weight is stored ``(in, out, 1, 1)`` and
    initialised by that layout); up: ConvTranspose2d with kernel = stride = 1 / ratio. ``norm`` appends
    BatchNorm2d + ReLU.
    """
    if out_stride == in_stride and transpose_same:
        layers: list[nn.Module] = [nn.ConvTranspose2d(in_ch, out_ch, 1, 1, bias=False)]
    elif out_stride >= in_stride:
        factor = out_stride // in_stride
        if factor * in_stride != out_stride:
            raise ValueError(f"cannot resample stride {in_stride} to {out_stride}: not an integer ratio")
        layers = [nn.Conv2d(in_ch, out_ch, factor, factor, bias=False)]
    else:
        factor = in_stride // out_stride
        if factor * out_stride != in_stride:
            raise ValueError(f"cannot resample stride {in_stride} to {out_stride}: not an integer ratio")
        layers = [nn.ConvTranspose2d(in_ch, out_ch, factor, factor, bias=False)]
    if norm:
        layers += [nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def coord_channels(x: torch.Tensor) -> torch.Tensor:
    """Append CoordConv's x and y channels (``linspace(-1, 1)`` over W and H) to ``x`` ``(B, C, H, W)``."""
    batch, _, height, width = x.shape
    xs = (
        torch.linspace(-1, 1, width, device=x.device, dtype=x.dtype)
        .view(1, 1, 1, width)
        .expand(batch, 1, height, width)
    )
    ys = (
        torch.linspace(-1, 1, height, device=x.device, dtype=x.dtype)
        .view(1, 1, height, 1)
        .expand(batch, 1, height, width)
    )
    return torch.cat([x, xs, ys], dim=1)


class CoordConv(nn.Module):
    """CoordConv head of both necks: CBR3×3(C+2 → C) on the input plus coordinates, then CBR3×3(C → C)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(channels + 2, channels, 3, padding=1)
        self.conv2 = conv_bn_relu(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(coord_channels(x)))
