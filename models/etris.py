"""ETRIS (ICCV 2023): frozen CLIP encoders bridged by a trainable Bridger, a Hierarchical Alignment neck and the
CRIS decoder (FFN 512) and projector.

Every backbone parameter is frozen except those named ``positional_embedding`` (text, visual/attention-pool). On
ResNets the CRIS ``attnpool.connect`` branch stays at its random initialisation, frozen, as in ETRIS; BatchNorm
running statistics of the frozen backbone keep updating in training mode, as in ETRIS. Defaults are the paper's
ViT-B/16 model and recipe (Adam 1e-4 for every trainable parameter, ×0.1 from epoch 35 of 50).
"""

from __future__ import annotations

from typing import Any

import torch

from .alignment_neck import HierarchicalAlignmentNeck
from .backbones import create_backbone
from .base import RISModel
from .bridger import Bridger, BridgerRun
from .decoder import VisionLanguageDecoder
from .lr_schedule import ParamGroup
from .projector import Projector


class ETRIS(RISModel):
    """ETRIS: ``(B, 3, S, S)`` image + ``(B, L)`` tokens → ``(B, 1, S/4, S/4)`` logits.

    Args:
        backbone, pretrained, text_backbone, text_pretrained, input_size: as :class:`ris.models.CRIS`.
        bridge_dim: the Bridger width (ETRIS ``ladder_dim`` 64).
        bridge_heads: Bridger attention heads; ``None`` = 4 for convolutional backbones, 8 for ViTs (ETRIS).
        bridge_dropout: dropout of the convolutional-backbone Bridger interactors.
        neck_dim, neck_heads: the HA neck width (= decoder width) and gating heads.
        num_layers, nhead, dim_ffn, dropout: the decoder ("GA"; FFN 512).
        kernel_size: the projector's dynamic kernel size.
        **kwargs: the training recipe, see :class:`ris.models.base.RISModel` (every trainable parameter, the
            Bridger included, is in the ``head`` group at ``lr``, as in ETRIS; ``backbone_lr_mult`` has nothing to
            act on because CLIP is frozen).
    """

    def __init__(
        self,
        backbone: str = "ViT-B-16",
        pretrained: str | None = "openai",
        text_backbone: str = "RN50",
        text_pretrained: str | None = "openai",
        input_size: int = 416,
        bridge_dim: int = 64,
        bridge_heads: int | None = None,
        bridge_dropout: float = 0.1,
        neck_dim: int = 512,
        neck_heads: int = 8,
        num_layers: int = 3,
        nhead: int = 8,
        dim_ffn: int = 512,
        dropout: float = 0.1,
        kernel_size: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.input_size = input_size
        self.backbone = create_backbone(
            backbone, pretrained, input_size=input_size, text_backbone=text_backbone, text_pretrained=text_pretrained
        )
        for name, param in self.backbone.named_parameters():
            param.requires_grad_("positional_embedding" in name)
        visual = self.backbone.visual
        heads = bridge_heads or (8 if visual.kind == "vit" else 4)
        self.bridger = Bridger(
            visual.stage_channels,
            visual.stage_strides,
            self.backbone.word_dim,
            visual.kind,
            bridge_dim,
            heads,
            bridge_dropout,
        )
        state_dim = self.backbone.state_dim
        self.neck = HierarchicalAlignmentNeck(
            visual.feature_channels, visual.feature_strides, neck_dim, state_dim, neck_heads
        )
        self.decoder = VisionLanguageDecoder(num_layers, neck_dim, nhead, dim_ffn, dropout, self.backbone.word_dim)
        self.projector = Projector(state_dim, neck_dim // 2, kernel_size)

    def forward(self, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``image`` ``(B, 3, S, S)``, ``tokens`` ``(B, L)`` → logits ``(B, 1, S/4, S/4)``."""
        out = self.backbone(image, tokens, fusion=BridgerRun(self.bridger))
        fq = self.neck(out.features, out.state)
        fq = self.decoder(fq, out.words, out.pad_mask)
        return self.projector(fq, out.state)

    def param_groups(self) -> list[ParamGroup]:
        """One ``head`` group at ``lr``: the Bridger, the trainable backbone embeddings, neck, decoder, projector
        (ETRIS's two groups both run at ``lr``, ``lr_multi`` 1, docs/models.md §2.7)."""
        head = [
            *self.bridger.parameters(),
            *(p for p in self.backbone.parameters() if p.requires_grad),
            *self.neck.parameters(),
            *self.decoder.parameters(),
            *self.projector.parameters(),
        ]
        return [ParamGroup("head", head)]
