"""The attention and feed-forward layers SaG's modules are made of (docs/baselines.md §1.3).

Every layer is pre-LayerNorm with a residual around it, as in SaG: ``x + f(LN(x))``. Query, key and value
projections have no bias; the output projection has one, followed by dropout.
"""

from __future__ import annotations

import torch
from torch import nn


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(..., T, H * d)`` → ``(..., H, T, d)``."""
    *lead, length, inner = x.shape
    return x.reshape(*lead, length, heads, inner // heads).transpose(-3, -2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(..., H, T, d)`` → ``(..., T, H * d)``."""
    *lead, heads, length, dim = x.shape
    return x.transpose(-3, -2).reshape(*lead, length, heads * dim)


class FeedForward(nn.Module):
    """Pre-LN feed-forward ``LN → Linear(D, mult·D) → GELU → Dropout → Linear(mult·D, D)``, without the residual."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.net = nn.Sequential(
            nn.Linear(dim, dim * mult), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim * mult, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(x))


class CrossAttention(nn.Module):
    """Pre-LN multi-head attention of queries over a context; the normalisation of the logits is the caller's
    choice (:meth:`logits` + :meth:`attend`), so one layer serves softmax-over-keys and slot attention.

    Args:
        dim: query width.
        context_dim: context width (default ``dim``).
        heads, head_dim: ``heads × head_dim`` inner width; logits are scaled by ``head_dim ** -0.5``.
        dropout: after the output projection.
        norm_context: apply a LayerNorm to the context (cross-attention) or not (self-attention, whose context is
            the already normalised query).
    """

    def __init__(
        self,
        dim: int,
        context_dim: int | None = None,
        heads: int = 4,
        head_dim: int = 64,
        dropout: float = 0.1,
        norm_context: bool = True,
    ) -> None:
        super().__init__()
        context_dim = context_dim or dim
        inner = heads * head_dim
        self.heads = heads
        self.scale = head_dim**-0.5
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim) if norm_context else None
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``context`` ``(B, M, Dc)`` → keys and values ``(B, H, M, d)``."""
        if self.norm_context is not None:
            context = self.norm_context(context)
        return split_heads(self.to_k(context), self.heads), split_heads(self.to_v(context), self.heads)

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(..., T, D)`` → queries ``(..., H, T, d)``."""
        return split_heads(self.to_q(self.norm(x)), self.heads)

    def logits(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """``(B, H, T, d)`` × ``(B, H, M, d)`` → scaled logits ``(B, H, T, M)``."""
        return torch.einsum("bhtd,bhmd->bhtm", queries, keys) * self.scale

    def attend(self, weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Weighted values ``(B, H, T, M)`` × ``(B, H, M, d)`` → output projection ``(B, T, D)``."""
        return self.to_out(merge_heads(torch.einsum("bhtm,bhmd->bhtd", weights, values)))


class SelfAttention(nn.Module):
    """Pre-LN multi-head self-attention (softmax over keys), without the residual: ``(B, T, D)`` → ``(B, T, D)``."""

    def __init__(self, dim: int, heads: int = 4, head_dim: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.attn = CrossAttention(dim, heads=heads, head_dim=head_dim, dropout=dropout, norm_context=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keys, values = self.attn.keys_values(self.attn.norm(x))
        return self.attn.attend(self.attn.logits(self.attn.queries(x), keys).softmax(dim=-1), values)
