"""SaG's modality fusion module ("gather", Ψ; docs/baselines.md §1.3, item 5): one pre-LN transformer layer in
which the sentence embedding attends over an image's slots.

The sentence embedding ``t`` is the single query; the ``K`` slots are keys and values; the softmax runs over the
slots, and its head average is ``A_fuse`` (one relevance weight per slot, summing to 1). A residual, a pre-LN
feed-forward with a residual, and an L2 normalisation give the cross-modal embedding ``z(i, t)``. Each text attends
on its own (no attention between texts).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import CrossAttention, FeedForward


@dataclass
class FusionOutput:
    """Attributes:
    fused: unit-norm ``z``: ``(B_img, B_txt, D)`` for all pairs, ``(B, D)`` for matched pairs.
    attention: ``A_fuse``: ``(B_img, B_txt, K)`` or ``(B, K)``, head-averaged, summing to 1 over the slots.
    """

    fused: torch.Tensor
    attention: torch.Tensor


class ModalityFusion(nn.Module):
    """Ψ. Args: ``dim`` (512), ``heads`` × ``head_dim`` (4 × 256), ``ff_mult`` (×4), ``dropout`` after the
    attention's output projection (0.1; SaG's fusion feed-forward has none)."""

    def __init__(self, dim: int = 512, heads: int = 4, head_dim: int = 256, ff_mult: int = 4, dropout: float = 0.1):
        super().__init__()
        self.attn = CrossAttention(dim, heads=heads, head_dim=head_dim, dropout=dropout)
        self.ff = FeedForward(dim, ff_mult, dropout=0.0)

    def _fuse(self, text: torch.Tensor, slots: torch.Tensor) -> FusionOutput:
        """``text`` ``(B_img, T, D)`` queries over ``slots`` ``(B_img, K, D)``."""
        keys, values = self.attn.keys_values(slots)
        weights = self.attn.logits(self.attn.queries(text), keys).softmax(dim=-1)  # (B_img, H, T, K)
        x = text + self.attn.attend(weights, values)
        x = x + self.ff(x)
        return FusionOutput(F.normalize(x, dim=-1), weights.mean(dim=1))

    def forward(self, text: torch.Tensor, slots: torch.Tensor, all_pairs: bool = True) -> FusionOutput:
        """``text`` ``(B_txt, D)``, ``slots`` ``(B_img, K, D)``.

        ``all_pairs``: fuse every text with every image → ``(B_img, B_txt, ·)`` (training, C³ loss); otherwise text
        ``b`` with image ``b`` only (``B_txt = B_img``) → ``(B, ·)`` (inference).
        """
        if all_pairs:
            return self._fuse(text[None].expand(slots.shape[0], -1, -1), slots)
        if text.shape[0] != slots.shape[0]:
            raise ValueError(f"matched fusion needs one text per image, got {text.shape[0]} and {slots.shape[0]}")
        out = self._fuse(text[:, None, :], slots)
        return FusionOutput(out.fused[:, 0], out.attention[:, 0])
