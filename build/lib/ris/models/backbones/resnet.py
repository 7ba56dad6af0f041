"""open_clip's ModifiedResNet (CLIP RN50/RN101) as three visual stages with CRIS's dense attention pool.

Stages: stem + ``layer1`` + ``layer2`` (stride 8), ``layer3`` (16), ``layer4`` (32). ``C3``/``C4`` are the
``layer2``/``layer3`` outputs; ``C5`` is the attention pool applied densely to ``layer4`` (CRIS §1.1): the CLS
token is dropped, the positional grid is resized bicubically to the feature size on every forward, all ``H*W``
tokens attend to each other with CLIP's q/k/v/c projections, and a new residual branch ``attnpool.connect``
(1×1 conv, no bias, + BN; random init) is added before a ReLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import GridEmbeddingCache, VisualEncoder


class ResNetVisual(VisualEncoder):
    """Stage view of an open_clip ``ModifiedResNet``; the stream is a ``(B, C, H, W)`` map."""

    kind = "conv"

    def __init__(self, resnet: nn.Module) -> None:
        super().__init__()
        self.net = resnet
        pool = resnet.attnpool
        in_dim = pool.k_proj.in_features
        out_dim = pool.c_proj.out_features
        pool.connect = nn.Sequential(nn.Conv2d(in_dim, out_dim, 1, bias=False), nn.BatchNorm2d(out_dim))
        layer_channels = tuple(layer[-1].conv3.out_channels for layer in (resnet.layer2, resnet.layer3, resnet.layer4))
        self.stage_channels = layer_channels
        self.stage_strides = (8, 16, 32)
        self.feature_channels = (layer_channels[0], layer_channels[1], out_dim)
        self.feature_strides = (8, 16, 32)
        self._pos_cache = GridEmbeddingCache()

    def stem(self, image: torch.Tensor) -> torch.Tensor:
        return self.net.stem(image.to(self.net.conv1.weight.dtype))

    def stage(self, stream: torch.Tensor, index: int) -> torch.Tensor:
        if index == 0:
            return self.net.layer2(self.net.layer1(stream))
        return (self.net.layer3, self.net.layer4)[index - 1](stream)

    def stage_map(self, stream: torch.Tensor) -> torch.Tensor:
        return stream

    def inject(self, stream: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return stream + residual

    def dense_attention_pool(self, x: torch.Tensor) -> torch.Tensor:
        """CRIS's dense attention pool: ``(B, 2048, H, W)`` → ``(B, embed_dim, H, W)``."""
        pool = self.net.attnpool
        batch, channels, height, width = x.shape
        residual = pool.connect(x)
        tokens = x.flatten(2).permute(2, 0, 1)  # (HW, B, C)
        pos = self._pos_cache.get(pool.positional_embedding[1:], (height, width))
        tokens = tokens + pos[:, None, :].to(tokens.dtype)
        out, _ = F.multi_head_attention_forward(
            query=tokens,
            key=tokens,
            value=tokens,
            embed_dim_to_check=channels,
            num_heads=pool.num_heads,
            q_proj_weight=pool.q_proj.weight,
            k_proj_weight=pool.k_proj.weight,
            v_proj_weight=pool.v_proj.weight,
            in_proj_weight=None,
            in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
            bias_k=None,
            bias_v=None,
            add_zero_attn=False,
            dropout_p=0.0,
            out_proj_weight=pool.c_proj.weight,
            out_proj_bias=pool.c_proj.bias,
            use_separate_proj_weight=True,
            training=self.training,
            need_weights=False,
        )
        out = out.permute(1, 2, 0).reshape(batch, -1, height, width)
        return F.relu(out + residual)

    def features(self, streams: list[torch.Tensor]) -> list[torch.Tensor]:
        return [streams[0], streams[1], self.dense_attention_pool(streams[2])]
