"""ETRIS's Bridger: a small adapter that exchanges information between the frozen visual and text encoders.

After each of the three stages the visual map is zoomed to a ``d``-channel map on the C4 grid, the text tokens are
projected to ``d``, both are mixed with the previous stage's bridge inputs (LayerNorm of the sum, from stage 2 on),
each attends to the other (ResNet-style: a post-norm transformer decoder layer; ViT-style: a gated
cross-attention), and the results are zoomed back and returned as residuals for the encoder streams. Padding tokens
are attended (no mask), as in ETRIS.

The zoom layers have ETRIS's module types, so they initialise as ETRIS's do (docs/models.md §2.3): ETRIS builds
them for the ResNet strides — zoom in: Conv2d, Conv2d, ConvTranspose2d; zoom out: ConvTranspose2d,
ConvTranspose2d, Conv2d — and keeps those types where a zoom does not resample (every ViT zoom, the ResNet's
stage-2 zoom out), as 1×1 ConvTranspose2d. Kaiming-normal with ``fan_out`` then draws a 1×1 ConvTranspose2d
``in → out`` with std ``sqrt(2 / in)``, a 1×1 Conv2d with ``sqrt(2 / out)``: 3.5× (768 vs 64 channels) to 4× (1024
vs 64) apart, so the layer type, not only the map it computes, fixes the initial scale of the injected residuals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from .alignment_neck import GatedCrossAttention
from .blocks import resample_conv

BridgeCarry = tuple[torch.Tensor, torch.Tensor] | None


class Bridger(nn.Module):
    """Bridges for three stages.

    Args:
        visual_channels, visual_strides: the visual stream's channels/stride after each stage.
        text_width: width of the text stream.
        kind: ``"conv"`` (ResNet/timm: plain resampling convs, transformer-decoder interactors) or ``"vit"``
            (1×1 conv + BN + ReLU zooms, gated cross-attention interactors).
        dim: bridge width ``d`` (ETRIS ``ladder_dim`` 64).
        nhead: attention heads (ETRIS: 4 for ResNets, 8 for ViTs).
        dropout: dropout of the ResNet-style interactors.
    """

    def __init__(
        self,
        visual_channels: Sequence[int],
        visual_strides: Sequence[int],
        text_width: int,
        kind: Literal["conv", "vit"],
        dim: int = 64,
        nhead: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        grid = visual_strides[1]
        vit = kind == "vit"
        stages = list(zip(visual_channels, visual_strides))
        self.zoom_in = nn.ModuleList(
            [resample_conv(c, dim, s, grid, norm=vit, transpose_same=i == 2) for i, (c, s) in enumerate(stages)]
        )
        self.zoom_out = nn.ModuleList(
            [resample_conv(dim, c, grid, s, norm=vit, transpose_same=i < 2) for i, (c, s) in enumerate(stages)]
        )
        self.text_in = nn.ModuleList([nn.Linear(text_width, dim) for _ in visual_channels])
        self.text_out = nn.ModuleList([nn.Linear(dim, text_width) for _ in visual_channels])
        self.interact_v = nn.ModuleList([self._interactor(kind, dim, nhead, dropout) for _ in visual_channels])
        self.interact_t = nn.ModuleList([self._interactor(kind, dim, nhead, dropout) for _ in visual_channels])
        self.ln_v = nn.ModuleList([nn.LayerNorm(dim) for _ in visual_channels[1:]])
        self.ln_t = nn.ModuleList([nn.LayerNorm(dim) for _ in visual_channels[1:]])
        self.kind = kind
        self.reset_parameters()

    @staticmethod
    def _interactor(kind: str, dim: int, nhead: int, dropout: float) -> nn.Module:
        if kind == "vit":
            return GatedCrossAttention(dim, nhead)
        return nn.TransformerDecoderLayer(dim, nhead, dim_feedforward=2 * dim, dropout=dropout, batch_first=True)

    def reset_parameters(self) -> None:
        """ETRIS init: Linear N(0, 0.02) with zero bias (MHA ``out_proj`` included), convs Kaiming-normal
        (fan_out, ReLU); MHA ``in_proj`` keeps PyTorch's default."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(
        self, stage: int, visual: torch.Tensor, text: torch.Tensor, carry: BridgeCarry = None
    ) -> tuple[torch.Tensor, torch.Tensor, BridgeCarry]:
        """One bridge: ``visual`` ``(B, C_s, H_s, W_s)``, ``text`` ``(B, L, Dt)`` → residuals of the same shapes,
        and the carry for the next stage."""
        v = self.zoom_in[stage](visual)
        batch, dim, height, width = v.shape
        v = v.flatten(2).transpose(1, 2)
        t = self.text_in[stage](text)
        if stage > 0:
            if carry is None:
                raise ValueError(f"Bridger stage {stage} needs the carry of stage {stage - 1}")
            v = self.ln_v[stage - 1](v + carry[0])
            t = self.ln_t[stage - 1](t + carry[1])
        v_out = self.interact_v[stage](v, t)
        t_out = self.interact_t[stage](t, v)
        v_out = self.zoom_out[stage](v_out.transpose(1, 2).reshape(batch, dim, height, width))
        return v_out, self.text_out[stage](t_out), (v, t)


class BridgerRun:
    """One forward pass of a :class:`Bridger` as the backbone's ``fusion`` callable (holds the stage carry)."""

    def __init__(self, bridger: Bridger) -> None:
        self.bridger = bridger
        self.carry: BridgeCarry = None

    def __call__(self, stage: int, visual: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v_out, t_out, self.carry = self.bridger(stage, visual, text, self.carry)
        return v_out, t_out
