"""The vision-language backbone contract: three visual stages, a text tower, and an optional fusion between them.

A backbone turns an image ``(B, 3, S, S)`` and token ids ``(B, L)`` into a :class:`BackboneOutput`: three visual
feature maps (``C3, C4, C5``), word features ``(B, L, Dw)``, a sentence feature ``(B, Ds)`` and the padding mask.

The visual encoder advances a *stream* through three stages; after each stage the text tower has run up to its
matching block. A ``fusion`` callable (ETRIS's Bridger) may read both streams there and add residuals to them, so one
code path serves CRIS (no fusion) and ETRIS (fusion after every stage).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ris.contracts import CLIP_MEAN, CLIP_STD
from ris.tokenizer import Tokenizer

from .text import TextEncoder

Fusion = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``fusion(stage, visual_map (B, C, H, W), text_tokens (B, L, Dt)) -> (visual_residual, text_residual)``."""


@dataclass
class BackboneOutput:
    """What a backbone hands to the neck and decoder.

    Attributes:
        features: ``[C3, C4, C5]``, each ``(B, C_i, H_i, W_i)``.
        words: ``(B, L, Dw)`` word features (final text norm, not projected).
        state: ``(B, Ds)`` sentence feature (projected).
        pad_mask: ``(B, L)`` bool, True at padding tokens.
    """

    features: list[torch.Tensor]
    words: torch.Tensor
    state: torch.Tensor
    pad_mask: torch.Tensor


def stage_ends(num_blocks: int, stages: int = 3) -> list[int]:
    """0-based indices of the blocks that end each of ``stages`` evenly spaced stages (12 blocks → 3, 7, 11).

    Fewer blocks than stages repeat an index (2 blocks → 0, 0, 1): two stages then end at the same block.
    """
    if num_blocks < 1:
        raise ValueError(f"a transformer needs at least one block, got {num_blocks}")
    return [max(0, round(num_blocks * (s + 1) / stages) - 1) for s in range(stages)]


def resize_grid_embedding(grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubically resize a square grid of embeddings ``(g*g, C)`` to ``(h*w, C)`` (align_corners=False)."""
    side = round(grid.shape[0] ** 0.5)
    if side * side != grid.shape[0]:
        raise ValueError(f"positional embedding with {grid.shape[0]} rows is not a square grid")
    if (side, side) == tuple(size):
        return grid
    maps = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    maps = F.interpolate(maps.float(), size=size, mode="bicubic", align_corners=False).to(grid.dtype)
    return maps.permute(0, 2, 3, 1).reshape(size[0] * size[1], -1)


class GridEmbeddingCache:
    """Resized copies of a positional-embedding grid, reused while the parameter is unchanged and no gradient is
    needed (evaluation, or a frozen embedding); recomputed otherwise so training gradients stay correct."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._value: torch.Tensor | None = None

    def get(self, grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if torch.is_grad_enabled() and grid.requires_grad:
            return resize_grid_embedding(grid, size)
        key = (tuple(size), grid.data_ptr(), grid._version, grid.device, grid.dtype)
        if key != self._key:
            self._key, self._value = key, resize_grid_embedding(grid.detach(), size)
        return self._value


class VisualEncoder(nn.Module, ABC):
    """Three visual stages over a stream (a feature map, or tokens for a ViT).

    Attributes:
        kind: ``"conv"`` (feature maps at strides 8/16/32) or ``"vit"`` (tokens, one stride); selects the Bridger
            variant.
        stage_channels, stage_strides: channels and stride of :meth:`stage_map` after each stage.
        feature_channels, feature_strides: channels and stride of ``C3, C4, C5``.
    """

    kind: Literal["conv", "vit"]
    stage_channels: tuple[int, int, int]
    stage_strides: tuple[int, int, int]
    feature_channels: tuple[int, int, int]
    feature_strides: tuple[int, int, int]

    @abstractmethod
    def stem(self, image: torch.Tensor) -> Any:
        """Start the stream from ``image`` ``(B, 3, H, W)``."""

    @abstractmethod
    def stage(self, stream: Any, index: int) -> Any:
        """Advance the stream through stage ``index`` (0, 1, 2)."""

    @abstractmethod
    def stage_map(self, stream: Any) -> torch.Tensor:
        """The stream as a ``(B, C, H, W)`` map (what a fusion reads)."""

    @abstractmethod
    def inject(self, stream: Any, residual: torch.Tensor) -> Any:
        """Add a ``(B, C, H, W)`` residual to the stream (out of place)."""

    @abstractmethod
    def features(self, streams: list[Any]) -> list[torch.Tensor]:
        """``[C3, C4, C5]`` from the streams after each stage."""


class VisionLanguageBackbone(nn.Module):
    """A visual encoder, a text tower and the tokenizer the text tower was trained with.

    Attributes:
        visual: the :class:`VisualEncoder`.
        text: the :class:`TextEncoder`.
        tokenizer: the :class:`ris.tokenizer.Tokenizer` producing the ids this backbone reads.
        mean, std: the pixel normalisation the visual weights were trained with (CLIP's, or e.g. ImageNet's for a
            timm CNN); the model declares it in its :class:`ris.contracts.InputSpec`.
        text_stage_ends: index of the text block that ends each of the three stages.
    """

    def __init__(
        self,
        visual: VisualEncoder,
        text: TextEncoder,
        tokenizer: Tokenizer,
        name: str = "",
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
    ) -> None:
        super().__init__()
        self.visual = visual
        self.text = text
        self.tokenizer = tokenizer
        self.name = name
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.text_stage_ends = stage_ends(text.num_blocks)

    @property
    def word_dim(self) -> int:
        return self.text.width

    @property
    def state_dim(self) -> int:
        return self.text.output_dim

    def forward(self, image: torch.Tensor, tokens: torch.Tensor, fusion: Fusion | None = None) -> BackboneOutput:
        """Encode ``image`` ``(B, 3, H, W)`` and ``tokens`` ``(B, L)``; ``fusion`` runs after each stage."""
        pad_mask = tokens == self.tokenizer.pad_id
        text, attn_mask = self.text.embed(tokens, self.tokenizer.pad_id)
        stream = self.visual.stem(image)
        streams = []
        done = 0
        for index, end in enumerate(self.text_stage_ends):
            stream = self.visual.stage(stream, index)
            text = self.text.run_blocks(text, attn_mask, done, end + 1)
            done = end + 1
            if fusion is not None:
                visual_residual, text_residual = fusion(
                    index, self.visual.stage_map(stream), self.text.token_view(text, tokens.shape[1])
                )
                stream = self.visual.inject(stream, visual_residual)
                text = self.text.inject(text, text_residual)
            streams.append(stream)
        text = self.text.run_blocks(text, attn_mask, done, self.text.num_blocks)
        words, state = self.text.finish(text, tokens, self.tokenizer)
        return BackboneOutput(self.visual.features(streams), words, state, pad_mask)
