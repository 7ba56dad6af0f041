"""CRIS (CVPR 2022): CLIP backbone, text-gated FPN, vision-language decoder and a dynamic-kernel projector.

Defaults are the paper's RN50 model and recipe: 416 px input, every backbone parameter fine-tuned, Adam with lr
1e-4 for neck/decoder/projector and every ``positional_embedding``, 1e-5 for the rest of CLIP, ×0.1 from epoch 35
of 50. Widths are arguments so that tiny test models use the same classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .backbones import create_backbone
from .base import RISModel
from .decoder import VisionLanguageDecoder
from .fpn import TextGatedFPN
from .lr_schedule import ParamGroup
from .projector import Projector


class CRIS(RISModel):
    """CRIS: ``(B, 3, S, S)`` image + ``(B, L)`` tokens → ``(B, 1, S/4, S/4)`` logits.

    Args:
        backbone: a backbone name (:mod:`ris.models.backbones.registry`): ``RN50``, ``RN101``, ``ViT-B-16``,
            ``local-dir:PATH``, ``timm:resnet50``, ...
        pretrained: the backbone weights (open_clip tag such as ``openai``, a checkpoint file, or ``None`` for
            random weights).
        text_backbone, text_pretrained: the open_clip text tower paired with a ``timm:`` backbone.
        input_size: the square input size (sizes a ViT's positional grid).
        fpn_out: the FPN widths (CRIS ``fpn_out``); the decoder width is ``fpn_out[1]``.
        num_layers, nhead, dim_ffn, dropout: the decoder.
        kernel_size: the projector's dynamic kernel size.
        **kwargs: the training recipe, see :class:`ris.models.base.RISModel` (``lr``, ``backbone_lr_mult``,
            ``optimizer``, ``lr_schedule``, ``milestones``, ``threshold``, ``init_from``, ...).
    """

    def __init__(
        self,
        backbone: str = "RN50",
        pretrained: str | None = "openai",
        text_backbone: str = "RN50",
        text_pretrained: str | None = "openai",
        input_size: int = 416,
        fpn_out: Sequence[int] = (256, 512, 1024),
        num_layers: int = 3,
        nhead: int = 8,
        dim_ffn: int = 2048,
        dropout: float = 0.1,
        kernel_size: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.input_size = input_size
        self.backbone = create_backbone(
            backbone, pretrained, input_size=input_size, text_backbone=text_backbone, text_pretrained=text_pretrained
        )
        state_dim = self.backbone.state_dim
        width = fpn_out[1]
        self.neck = TextGatedFPN(self.backbone.visual.feature_channels, fpn_out, state_dim)
        self.decoder = VisionLanguageDecoder(num_layers, width, nhead, dim_ffn, dropout, self.backbone.word_dim)
        self.projector = Projector(state_dim, width // 2, kernel_size)

    def forward(self, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``image`` ``(B, 3, S, S)``, ``tokens`` ``(B, L)`` → logits ``(B, 1, S/4, S/4)``."""
        out = self.backbone(image, tokens)
        fq = self.neck(out.features, out.state)
        fq = self.decoder(fq, out.words, out.pad_mask)
        return self.projector(fq, out.state)

    def param_groups(self) -> list[ParamGroup]:
        """Head: neck, decoder, projector and every ``positional_embedding``; backbone: the rest of the backbone."""
        head = [*self.neck.parameters(), *self.decoder.parameters(), *self.projector.parameters()]
        backbone = []
        for name, param in self.backbone.named_parameters():
            (head if "positional_embedding" in name else backbone).append(param)
        return [ParamGroup("head", head), ParamGroup("backbone", backbone, self.backbone_lr_mult)]
