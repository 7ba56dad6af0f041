"""SaG's visual backbone: a timm ViT whose final-norm patch tokens feed the entity discovery module
(docs/baselines.md §1.3, item 1).

The ViT is built for the model's square input, so its positional grid is resized to the input's patch grid when
weights are loaded (timm's own resampling, bicubic). The classifier head is not built: SaG never uses it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..backbones.timm_visual import create_timm_model


class ViTPatchEncoder(nn.Module):
    """A timm ViT as ``(B, 3, S, S)`` image → ``(B, N, C)`` patch tokens after the final LayerNorm (prefix tokens
    such as CLS dropped), ``N = (S / patch)²`` in row-major order.

    Args:
        name: a timm ViT architecture (``vit_small_patch16_384``).
        pretrained: ``"timm"`` (timm's weights for ``name``), a local checkpoint file, or ``None`` (random).
        input_size: the square input side ``S``; must be a multiple of the patch size.
        drop_path_rate: stochastic depth of the blocks (0.1 in SaG).
        overrides: extra timm constructor arguments (``embed_dim``, ``depth``, ``num_heads``, ``patch_size`` …)
            for small variants of the same architecture.
        flag: the option that sets ``pretrained`` (named in loading errors).
    """

    def __init__(
        self,
        name: str = "vit_small_patch16_384",
        pretrained: str | None = "timm",
        input_size: int = 384,
        drop_path_rate: float = 0.1,
        overrides: dict[str, Any] | None = None,
        flag: str = "--model.vit_pretrained",
    ) -> None:
        super().__init__()
        net = create_timm_model(
            name,
            pretrained,
            flag=flag,
            num_classes=0,
            img_size=input_size,
            drop_path_rate=drop_path_rate,
            **(overrides or {}),
        )
        if not hasattr(net, "forward_features") or not hasattr(net, "patch_embed"):
            raise TypeError(f"timm model {name!r} is a {type(net).__name__}, not a ViT with patch tokens")
        grid = tuple(int(g) for g in net.patch_embed.grid_size)
        if grid[0] * net.patch_embed.patch_size[0] != input_size:
            raise ValueError(
                f"input_size {input_size} is not a multiple of {name!r}'s patch size {net.patch_embed.patch_size[0]}"
            )
        self.net = net
        self.grid: tuple[int, int] = (grid[0], grid[1])
        self.width: int = int(net.embed_dim)
        self.num_prefix_tokens: int = int(getattr(net, "num_prefix_tokens", 1))
        cfg = getattr(net, "pretrained_cfg", {}) or {}
        self.mean: tuple[float, float, float] = tuple(cfg.get("mean", (0.5, 0.5, 0.5)))
        self.std: tuple[float, float, float] = tuple(cfg.get("std", (0.5, 0.5, 0.5)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` ``(B, 3, S, S)`` → patch tokens ``(B, N, C)``."""
        return self.net.forward_features(image)[:, self.num_prefix_tokens :]
