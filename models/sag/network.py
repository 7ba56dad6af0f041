"""The SaG network as plain torch (docs/baselines.md §1.3): ViT → entity discovery (Φ) → fusion with the sentence
embedding (Ψ), plus the reconstruction decoder, with every attention map the method reads returned explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .entity_discovery import EntityDiscovery, SlotNoise
from .fusion import ModalityFusion
from .reconstruction import BroadcastDecoder
from .text import SentenceEncoder
from .visual import ViTPatchEncoder


@dataclass
class SaGOutput:
    """One forward pass.

    Attributes:
        text: ``(B, D)`` sentence embeddings ``t`` (unnormalised).
        features: ``(B, N, C)`` ViT patch tokens (the reconstruction target).
        slots: ``(B, K, D)`` entity slots.
        slot_attention: ``A_slot`` ``(B, K, N)``: last iteration, head-averaged, softmax over the slots, before the
            per-slot renormalisation (sums to 1 over ``K`` at every patch).
        fused: ``z``: ``(B_img, B_txt, D)`` for all pairs, ``(B, D)`` for matched pairs (unit norm).
        fusion_attention: ``A_fuse``: ``(B_img, B_txt, K)`` or ``(B, K)`` (sums to 1 over ``K``).
        reconstruction: ``(B, N, C)`` decoded features, or ``None`` when not requested.
        grid: the patch grid ``(h, w)``.
    """

    text: torch.Tensor
    features: torch.Tensor
    slots: torch.Tensor
    slot_attention: torch.Tensor
    fused: torch.Tensor
    fusion_attention: torch.Tensor
    reconstruction: torch.Tensor | None
    grid: tuple[int, int]

    def relevance(self) -> torch.Tensor:
        """``Σ_k A_fuse[k] · A_slot[k]`` for matched pairs → ``(B, h, w)`` (the map SaG thresholds)."""
        if self.fusion_attention.dim() != 2:
            raise ValueError("relevance maps need matched pairs (all_pairs=False)")
        relevance = torch.einsum("bk,bkn->bn", self.fusion_attention, self.slot_attention)
        return relevance.reshape(-1, *self.grid)


class SaGNet(nn.Module):
    """ViT + sentence encoder + Φ + Ψ + reconstruction decoder.

    Args:
        visual: the :class:`ViTPatchEncoder`.
        text: a :class:`SentenceEncoder` whose ``dim`` equals ``dim``.
        dim: slot / embedding width ``D`` (512).
        num_gaussians, samples: ``Kg × Ks`` entity slots (18 × 2).
        iterations: weight-tied iterations ``T`` (6).
        slot_heads, slot_head_dim: slot attention (4 × 256).
        interaction_heads, interaction_head_dim: the within-group self-attention (4 × 128).
        fusion_heads, fusion_head_dim: Ψ's attention (4 × 256).
        ff_mult: width factor of every feed-forward (4).
        dropout: of every attention output and of Φ's feed-forwards (0.1).
        decoder_layers: depth of the reconstruction MLP (4).
        noise_seed: seed of the ``fixed`` slot noise.
    """

    def __init__(
        self,
        visual: ViTPatchEncoder,
        text: SentenceEncoder,
        dim: int = 512,
        num_gaussians: int = 18,
        samples: int = 2,
        iterations: int = 6,
        slot_heads: int = 4,
        slot_head_dim: int = 256,
        interaction_heads: int = 4,
        interaction_head_dim: int = 128,
        fusion_heads: int = 4,
        fusion_head_dim: int = 256,
        ff_mult: int = 4,
        dropout: float = 0.1,
        decoder_layers: int = 4,
        noise_seed: int = 0,
    ) -> None:
        super().__init__()
        if text.dim != dim:
            raise ValueError(f"the text encoder gives {text.dim}-dim sentence embeddings, the slots are {dim}-dim")
        self.visual = visual
        self.text = text
        self.entity_discovery = EntityDiscovery(
            visual.width,
            dim,
            visual.grid,
            num_gaussians,
            samples,
            iterations,
            slot_heads,
            slot_head_dim,
            interaction_heads,
            interaction_head_dim,
            ff_mult,
            dropout,
            noise_seed,
        )
        self.decoder = BroadcastDecoder(dim, visual.width, visual.grid, decoder_layers)
        self.fusion = ModalityFusion(dim, fusion_heads, fusion_head_dim, ff_mult, dropout)

    def forward(
        self,
        image: torch.Tensor,
        tokens: torch.Tensor,
        all_pairs: bool = False,
        reconstruct: bool = False,
        noise: SlotNoise = "sample",
    ) -> SaGOutput:
        """``image`` ``(B, 3, S, S)``, ``tokens`` ``(B, L)`` → :class:`SaGOutput`.

        ``all_pairs`` fuses every text with every image (training); ``reconstruct`` runs the decoder; ``noise``
        selects how the slots are drawn (:data:`ris.models.sag.entity_discovery.SlotNoise`).
        """
        features = self.visual(image)
        text = self.text(tokens)
        discovered = self.entity_discovery(features, noise)
        fusion = self.fusion(text, discovered.slots, all_pairs=all_pairs)
        reconstruction = self.decoder(discovered.slots)[0] if reconstruct else None
        return SaGOutput(
            text=text,
            features=features,
            slots=discovered.slots,
            slot_attention=discovered.attention,
            fused=fusion.fused,
            fusion_attention=fusion.attention,
            reconstruction=reconstruction,
            grid=self.visual.grid,
        )
