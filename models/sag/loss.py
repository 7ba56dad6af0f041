"""SaG's training objective from text alone (docs/baselines.md §1.4, §1.5): the C³ InfoNCE loss, the slot
reconstruction loss, the loss warm-up and the learning-rate factor that follows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def c3_loss(text: torch.Tensor, fused: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Contrastive cycle-consistency (C³) loss, text → image direction.

    ``text`` ``(B, D)``: the sentence embeddings ``t_j`` (unnormalised); ``fused`` ``(B_img, B_txt, D)``: ``z(i, t_j)``
    for every image ``i`` and text ``j``. Score ``s(j, i) = ⟨stopgrad(t_j), z(i, t_j)⟩ / temperature``; cross-entropy
    over the images with the paired image ``i = j`` as the positive. The stop-gradient covers ``t_j`` in its role
    as the target only; it still receives gradient through ``fused``, where it was the fusion query.
    """
    if fused.shape[0] != fused.shape[1] or fused.shape[1] != text.shape[0]:
        raise ValueError(f"C3 loss needs B x B fused vectors for B texts, got {tuple(fused.shape)} and {text.shape[0]}")
    scores = torch.einsum("jd,ijd->ji", text.detach(), fused) / temperature
    return F.cross_entropy(scores.float(), torch.arange(text.shape[0], device=text.device))


def reconstruction_loss(reconstruction: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """MSE between the decoder output and the **detached** ViT patch tokens, both ``(B, N, C)``."""
    return F.mse_loss(reconstruction.float(), features.detach().float())


@dataclass(frozen=True)
class WarmupCosine:
    """SaG's schedule by 0-based optimizer step ``s`` (its iteration ``i = s + 1``).

    - :meth:`loss_factor`: the loss is multiplied by ``i / warmup`` while ``i < warmup``, then by 1;
    - :meth:`lr_factor`: the learning rate is constant until the warm-up ends, then follows a cosine over
      ``total`` steps (``CosineAnnealingLR(T_max = total)`` stepped once per iteration from iteration ``warmup``
      on, as SaG; with ``total`` = all iterations it does not reach 0 by the end).
    """

    warmup: int = 5000
    total: int = 1

    def loss_factor(self, step: int) -> float:
        iteration = step + 1
        return iteration / self.warmup if iteration < self.warmup else 1.0

    def lr_factor(self, step: int) -> float:
        stepped = max(0, step + 1 - max(self.warmup, 1))
        return 0.5 * (1.0 + math.cos(math.pi * min(stepped, self.total) / max(self.total, 1)))

    def __call__(self, step: int) -> float:
        """:meth:`lr_factor` (a ``LambdaLR`` factor whose settings are saved with the scheduler's state)."""
        return self.lr_factor(step)
