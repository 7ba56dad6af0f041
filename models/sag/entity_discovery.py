"""SaG's entity discovery module ("shatter", Φ): patch features → K entity slots and their attention maps
(docs/baselines.md §1.3, item 3).

- Inputs: ``Linear(C → D)`` of the ViT patch tokens plus the normalised 2-D sine encoding; the sum is both keys and
  values of the slot attention.
- Entity slots: ``Kg`` learned Gaussians (mean μ_g, log-variance logσ²_g ∈ R^D), each sampled ``Ks`` times:
  ``K = Kg · Ks`` slots ``μ_g + exp(½ logσ²_g) · ε``; slot ``k`` comes from Gaussian ``k // Ks``.
- ``T`` weight-tied iterations, each an aggregation block (slot cross-attention with the softmax over the **slots**,
  each slot's weights renormalised over the pixels, residual update, feed-forward) followed by an interaction
  block (self-attention among the ``Ks`` slots of each Gaussian, feed-forward).
- Output: ``Linear(D → D)`` then LayerNorm.

``A_slot`` is the softmax-over-slots weights of the last iteration before the renormalisation, averaged over the
heads: ``(B, K, N)``, each pixel column summing to 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..positional import normalized_sine_2d
from .attention import CrossAttention, FeedForward, SelfAttention

SlotNoise = Literal["sample", "fixed", "mean"]
"""How slots are drawn: ``sample`` = fresh ε ~ N(0, I) at every call (SaG's training and evaluation); ``fixed`` = one
ε drawn once from ``noise_seed`` and shared by every image (deterministic, same distribution); ``mean`` = ε = 0
(the Gaussians' means only)."""


@dataclass
class EntityDiscoveryOutput:
    """Attributes:
    slots: ``(B, K, D)`` entity slots after the output Linear + LayerNorm.
    attention: ``A_slot`` ``(B, K, N)``, last iteration, head-averaged, softmax over the slots (sums to 1 over K).
    """

    slots: torch.Tensor
    attention: torch.Tensor


class EntitySlots(nn.Module):
    """``Kg`` learned diagonal Gaussians sampled ``Ks`` times each → ``(B, Kg·Ks, D)`` initial slots.

    Initialisation as SaG's: means and log-variances uniform in ``±sqrt(6 / ((Kg + 1) · D))`` (Xavier-uniform of a
    ``(1, Kg, D)`` tensor), the log-variance shifted by ``log(1 / D)`` so that a sample's noise has norm ≈ 1.
    """

    def __init__(self, num_gaussians: int, samples: int, dim: int, noise_seed: int = 0) -> None:
        super().__init__()
        if num_gaussians < 1 or samples < 1:
            raise ValueError(f"need at least one Gaussian and one sample, got {num_gaussians} x {samples}")
        bound = math.sqrt(6.0 / ((num_gaussians + 1) * dim))
        self.mean = nn.Parameter(torch.empty(num_gaussians, dim).uniform_(-bound, bound))
        self.log_var = nn.Parameter(torch.empty(num_gaussians, dim).uniform_(-bound, bound) + math.log(1.0 / dim))
        self.num_gaussians, self.samples, self.dim = num_gaussians, samples, dim
        self.noise_seed = noise_seed

    @property
    def num_slots(self) -> int:
        return self.num_gaussians * self.samples

    def fixed_noise(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The ``(K, D)`` noise of ``noise_seed`` (drawn on the CPU, so it is the same on every device)."""
        generator = torch.Generator().manual_seed(self.noise_seed)
        return torch.randn(self.num_slots, self.dim, generator=generator).to(device=device, dtype=dtype)

    def forward(self, batch: int, noise: SlotNoise = "sample") -> torch.Tensor:
        """``(batch, K, D)`` slots drawn as ``noise`` says (:data:`SlotNoise`)."""
        mean = self.mean.repeat_interleave(self.samples, dim=0)
        std = (0.5 * self.log_var).exp().repeat_interleave(self.samples, dim=0)
        if noise == "sample":
            eps = torch.randn(batch, self.num_slots, self.dim, device=mean.device, dtype=mean.dtype)
        elif noise == "fixed":
            eps = self.fixed_noise(mean.device, mean.dtype).expand(batch, -1, -1)
        elif noise == "mean":
            return mean.expand(batch, -1, -1)
        else:
            raise ValueError(f"slot noise must be 'sample', 'fixed' or 'mean', got {noise!r}")
        return mean + std * eps


class SlotAttention(nn.Module):
    """The aggregation block's cross-attention: slots ``(B, K, D)`` over inputs ``(B, N, D)``.

    Logits ``(B, H, K, N)`` are normalised with a softmax over the slot axis (the slots compete for each pixel);
    each slot's weights are then divided by their sum over the pixels (+ ``eps``) and average the values.
    """

    def __init__(self, dim: int, heads: int = 4, head_dim: int = 256, dropout: float = 0.1, eps: float = 1e-7):
        super().__init__()
        self.attn = CrossAttention(dim, heads=heads, head_dim=head_dim, dropout=dropout)
        self.eps = eps

    def forward(
        self, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Update ``(B, K, D)`` (before the residual) and the softmax-over-slots weights ``(B, H, K, N)``."""
        weights = self.attn.logits(self.attn.queries(slots), keys).softmax(dim=2)
        renormalised = weights / (weights.sum(dim=-1, keepdim=True) + self.eps)
        return self.attn.attend(renormalised, values), weights


class EntityDiscovery(nn.Module):
    """Φ: ViT patch tokens ``(B, N, C)`` on a ``grid`` → :class:`EntityDiscoveryOutput`.

    Args:
        input_dim: ViT width ``C``.
        dim: slot width ``D`` (512).
        grid: the patch grid ``(h, w)``, ``N = h · w``.
        num_gaussians, samples: ``Kg`` and ``Ks`` (18 × 2 in the paper, 12 × 3 in the released scripts).
        iterations: ``T`` weight-tied iterations (6).
        heads, head_dim: slot attention (4 × 256).
        interaction_heads, interaction_head_dim: the within-group self-attention (4 × 128).
        ff_mult, dropout: the feed-forward layers (×4) and the dropout of every layer (0.1).
        noise_seed: seed of the ``fixed`` slot noise.
    """

    def __init__(
        self,
        input_dim: int,
        dim: int = 512,
        grid: tuple[int, int] = (24, 24),
        num_gaussians: int = 18,
        samples: int = 2,
        iterations: int = 6,
        heads: int = 4,
        head_dim: int = 256,
        interaction_heads: int = 4,
        interaction_head_dim: int = 128,
        ff_mult: int = 4,
        dropout: float = 0.1,
        noise_seed: int = 0,
    ) -> None:
        super().__init__()
        if iterations < 1:
            raise ValueError(f"entity discovery needs at least one iteration, got {iterations}")
        self.grid = grid
        self.iterations = iterations
        self.input_proj = nn.Linear(input_dim, dim)
        self.register_buffer("position", normalized_sine_2d(dim, *grid), persistent=False)
        self.slots = EntitySlots(num_gaussians, samples, dim, noise_seed)
        self.slot_attention = SlotAttention(dim, heads, head_dim, dropout)
        self.slot_ff = FeedForward(dim, ff_mult, dropout)
        self.interaction = SelfAttention(dim, interaction_heads, interaction_head_dim, dropout)
        self.interaction_ff = FeedForward(dim, ff_mult, dropout)
        self.out_proj = nn.Linear(dim, dim)
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor, noise: SlotNoise = "sample") -> EntityDiscoveryOutput:
        """``features`` ``(B, N, C)`` → slots ``(B, K, D)`` and ``A_slot`` ``(B, K, N)``."""
        batch, n, _ = features.shape
        if n != self.position.shape[0]:
            raise ValueError(f"expected {self.position.shape[0]} patch tokens for grid {self.grid}, got {n}")
        inputs = self.input_proj(features) + self.position.to(features.dtype)
        # The inputs do not change between the weight-tied iterations, so their keys and values are computed once.
        keys, values = self.slot_attention.attn.keys_values(inputs)
        slots = self.slots(batch, noise).to(inputs.dtype)
        weights = keys.new_empty(0)
        for _ in range(self.iterations):
            update, weights = self.slot_attention(slots, keys, values)
            slots = slots + update
            slots = slots + self.slot_ff(slots)
            slots = self.interact(slots)
        return EntityDiscoveryOutput(self.out_norm(self.out_proj(slots)), weights.mean(dim=1))

    def interact(self, slots: torch.Tensor) -> torch.Tensor:
        """The interaction block: self-attention and feed-forward (with residuals) among the ``Ks`` slots drawn from
        each Gaussian, ``(B, K, D)`` → ``(B, K, D)``; slots of different Gaussians do not see each other."""
        batch, num_slots, dim = slots.shape
        grouped = slots.reshape(batch * self.slots.num_gaussians, self.slots.samples, dim)
        grouped = grouped + self.interaction(grouped)
        grouped = grouped + self.interaction_ff(grouped)
        return grouped.reshape(batch, num_slots, dim)
