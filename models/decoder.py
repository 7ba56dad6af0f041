"""The CRIS vision-language transformer decoder (ETRIS's "Global Alignment" is the same with FFN 512).

Visual tokens (the neck's ``(B, C, H, W)`` map flattened) attend to themselves and then to the word features;
each sub-layer is pre-norm with an extra LayerNorm on its output; fixed sine encodings are added to queries and
keys only; the padding mask is used in the cross-attention only.
"""

from __future__ import annotations

import torch
from torch import nn

from .positional import sine_1d, sine_2d


class DecoderLayer(nn.Module):
    """Self-attention, cross-attention to words, FFN (Linear → ReLU → Dropout → LayerNorm → Linear)."""

    def __init__(self, d_model: int, nhead: int, dim_ffn: int, dropout: float, word_dim: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, kdim=word_dim, vdim=word_dim)
        self.self_attn_norm = nn.LayerNorm(d_model)
        self.cross_attn_norm = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, dim_ffn),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.LayerNorm(dim_ffn),
            nn.Linear(dim_ffn, d_model),
        )
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(
        self,
        vis: torch.Tensor,
        words: torch.Tensor,
        vis_pos: torch.Tensor,
        word_pos: torch.Tensor,
        pad_mask: torch.Tensor,
    ) -> torch.Tensor:
        """``vis`` ``(N, B, C)``, ``words`` ``(L, B, Dw)``, positions ``(N, 1, C)`` / ``(L, 1, Dw)``, ``pad_mask``
        ``(B, L)`` → ``(N, B, C)``."""
        x = self.norm1(vis)
        q = k = x + vis_pos
        vis = vis + self.dropout1(self.self_attn_norm(self.self_attn(q, k, value=x, need_weights=False)[0]))
        x = self.norm2(vis)
        x = self.multihead_attn(
            query=x + vis_pos, key=words + word_pos, value=words, key_padding_mask=pad_mask, need_weights=False
        )[0]
        vis = vis + self.dropout2(self.cross_attn_norm(x))
        return vis + self.dropout3(self.ffn(self.norm3(vis)))


class VisionLanguageDecoder(nn.Module):
    """``num_layers`` :class:`DecoderLayer` plus a final LayerNorm; ``(B, C, H, W)`` in, ``(B, C, H, W)`` out."""

    def __init__(
        self,
        num_layers: int = 3,
        d_model: int = 512,
        nhead: int = 8,
        dim_ffn: int = 2048,
        dropout: float = 0.1,
        word_dim: int = 512,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [DecoderLayer(d_model, nhead, dim_ffn, dropout, word_dim) for _ in range(num_layers)]
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, vis: torch.Tensor, words: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """``vis`` ``(B, C, H, W)``, ``words`` ``(B, L, Dw)``, ``pad_mask`` ``(B, L)`` bool → ``(B, C, H, W)``."""
        batch, channels, height, width = vis.shape
        vis_pos = sine_2d(channels, height, width, vis.device).to(vis.dtype)[:, None, :]
        word_pos = sine_1d(words.shape[-1], words.shape[1], vis.device).to(words.dtype)[:, None, :]
        x = vis.flatten(2).permute(2, 0, 1)
        txt = words.transpose(0, 1)
        for layer in self.layers:
            x = layer(x, txt, vis_pos, word_pos, pad_mask)
        return self.norm(x).permute(1, 2, 0).reshape(batch, channels, height, width)
