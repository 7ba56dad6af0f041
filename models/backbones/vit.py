"""open_clip's VisionTransformer (CLIP ViT-B/16, CoCa's attention-pooled ViT) as three visual stages.

The blocks are split into three evenly spaced stages (ViT-B/16: blocks 1–4, 5–8, 9–12). ``C3``/``C4`` are the patch
tokens after the first two stages (raw residual stream, ``width`` channels). ``C5`` is ``ln_post`` on the patch
tokens times ``proj`` (ETRIS) when the ViT pools a class token; a ViT with an attentional pooler (CoCa) has its
``ln_post``/``proj`` sized for the pooled queries, so there ``C5`` is the raw last-block patch tokens and the
pooler is dropped. All three maps are at the patch stride.

The positional embedding is resized once at construction to the grid of ``input_size`` (ETRIS: 14×14 → 26×26 for
416 px; CLS row kept), and again at forward time, from that parameter, when an input has another grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import GridEmbeddingCache, VisualEncoder, resize_grid_embedding, stage_ends


@dataclass
class TokenGrid:
    """A ViT stream: ``tokens`` ``(B, 1 + h*w, C)`` (class token first) on an ``(h, w)`` patch grid."""

    tokens: torch.Tensor
    size: tuple[int, int]


class ViTVisual(VisualEncoder):
    """Stage view of an open_clip ``VisionTransformer``."""

    kind = "vit"

    def __init__(self, vit: nn.Module, input_size: int) -> None:
        super().__init__()
        self.net = vit
        self.patch = int(vit.patch_size[0])
        if input_size % self.patch:
            raise ValueError(f"input_size {input_size} is not a multiple of the ViT patch size {self.patch}")
        grid = input_size // self.patch
        pos = vit.positional_embedding.detach()
        resized = torch.cat([pos[:1], resize_grid_embedding(pos[1:], (grid, grid))])
        vit.positional_embedding = nn.Parameter(resized, requires_grad=vit.positional_embedding.requires_grad)
        self.grid = grid
        width = vit.conv1.out_channels
        self.pooled_head = vit.attn_pool is None
        if not self.pooled_head:
            vit.attn_pool = None
            vit.attn_pool_contrastive = None
            vit.ln_post = None
            vit.proj = None
        out_dim = vit.proj.shape[1] if self.pooled_head and vit.proj is not None else width
        self.block_ends = stage_ends(len(vit.transformer.resblocks))
        self.stage_channels = (width, width, width)
        self.stage_strides = (self.patch,) * 3
        self.feature_channels = (width, width, out_dim)
        self.feature_strides = (self.patch,) * 3
        self._pos_cache = GridEmbeddingCache()

    def _positional(self, size: tuple[int, int]) -> torch.Tensor:
        pos = self.net.positional_embedding
        if size == (self.grid, self.grid):
            return pos
        return torch.cat([pos[:1], self._pos_cache.get(pos[1:], size)])

    def stem(self, image: torch.Tensor) -> TokenGrid:
        vit = self.net
        x = vit.conv1(image.to(vit.conv1.weight.dtype))
        size = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        cls = vit.class_embedding.view(1, 1, -1).expand(x.shape[0], 1, -1).to(x.dtype)
        x = torch.cat([cls, x], dim=1) + self._positional(size).to(x.dtype)
        return TokenGrid(vit.ln_pre(x), size)

    def stage(self, stream: TokenGrid, index: int) -> TokenGrid:
        start = 0 if index == 0 else self.block_ends[index - 1] + 1
        stop = len(self.net.transformer.resblocks) if index == 2 else self.block_ends[index] + 1
        x = stream.tokens
        batch_first = getattr(self.net.transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1)
        for block in self.net.transformer.resblocks[start:stop]:
            x = block(x)
        return TokenGrid(x if batch_first else x.transpose(0, 1), stream.size)

    def stage_map(self, stream: TokenGrid) -> torch.Tensor:
        return self._to_map(stream.tokens[:, 1:], stream.size)

    @staticmethod
    def _to_map(tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *size)

    def inject(self, stream: TokenGrid, residual: torch.Tensor) -> TokenGrid:
        tokens = stream.tokens
        patches = tokens[:, 1:] + residual.flatten(2).transpose(1, 2)
        return TokenGrid(torch.cat([tokens[:, :1], patches], dim=1), stream.size)

    def features(self, streams: list[TokenGrid]) -> list[torch.Tensor]:
        last = streams[2].tokens[:, 1:]
        if self.pooled_head:
            last = self.net.ln_post(last)
            if self.net.proj is not None:
                last = last @ self.net.proj
        return [self.stage_map(streams[0]), self.stage_map(streams[1]), self._to_map(last, streams[2].size)]
