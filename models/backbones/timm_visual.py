"""Any timm CNN with ``features_only`` as three visual stages (the features at strides 8, 16 and 32).

The ``FeatureListNet`` timm builds is a sequence of modules; the modules are split into three segments that end at
the feature taps, so a fusion can act between them. ``C3, C4, C5`` are the raw tap outputs.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models._features import FeatureListNet
from torch import nn

from .base import VisualEncoder

STRIDES = (8, 16, 32)


def create_timm_model(name: str, pretrained: str | None, flag: str = "--model.pretrained", **kwargs) -> nn.Module:
    """A timm model with weights: ``None`` = random, ``"timm"`` = timm's default weights for ``name`` (downloaded
    from the Hugging Face hub, or read from its cache), anything else = a local checkpoint file (a timm state dict
    ``.pth``/``.bin``/``.safetensors``, or a big_vision ``.npz``; classifier and positional grid are adapted by timm
    as for its own weights).

    ``flag`` names the option that sets ``pretrained`` in the error raised when timm's weights cannot be had.
    """
    if pretrained is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    if pretrained == "timm":
        try:
            return timm.create_model(name, pretrained=True, **kwargs)
        except OSError as err:  # huggingface_hub's offline / not-found errors are OSErrors
            raise FileNotFoundError(
                f"timm weights for {name!r} are not in the local cache and cannot be downloaded ({type(err).__name__});"
                f" pass a local checkpoint file with {flag} PATH (or null for random weights)"
            ) from None
    if not Path(pretrained).is_file():
        raise FileNotFoundError(
            f"timm checkpoint file not found: {pretrained} (set by {flag} for {name!r}; use 'timm' for timm's "
            "own weights or null for random ones)"
        )
    # A state-dict file loads as a state dict even where timm's own weights are an .npz read by a custom loader
    # (the augreg ViTs); an .npz file keeps that loader.
    overlay = {"file": pretrained, **({} if pretrained.endswith(".npz") else {"custom_load": False})}
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)


class TimmVisual(VisualEncoder):
    """Stage view of ``timm.create_model(name, features_only=True)`` at strides 8, 16, 32.

    Attributes:
        mean, std: the normalisation of timm's pretrained configuration for ``name`` (e.g. ImageNet's), which the
            model then declares for its input.
    """

    kind = "conv"

    def __init__(self, name: str, pretrained: str | None = None) -> None:
        super().__init__()
        net = create_timm_model(name, pretrained, features_only=True)
        if not isinstance(net, FeatureListNet):
            raise TypeError(
                f"timm model {name!r} builds a {type(net).__name__}; only FeatureListNet backbones "
                "(sequential CNNs such as ResNets and ConvNeXts) can be split into stages"
            )
        reductions = net.feature_info.reduction()
        missing = [s for s in STRIDES if s not in reductions]
        if missing:
            raise ValueError(f"timm model {name!r} has feature strides {reductions}; strides {missing} are missing")
        indices = [max(i for i, r in enumerate(reductions) if r == s) for s in STRIDES]
        self.net = net
        taps = [list(net.return_layers)[i] for i in indices]
        names = list(net.keys())
        bounds = [names.index(t) + 1 for t in taps]
        self.segments = [names[a:b] for a, b in zip([0, *bounds[:-1]], bounds)]
        all_channels = net.feature_info.channels()
        channels = tuple(all_channels[i] for i in indices)
        self.stage_channels = channels
        self.stage_strides = STRIDES
        self.feature_channels = channels
        self.feature_strides = STRIDES
        config = net.pretrained_cfg
        self.mean = tuple(float(v) for v in config.get("mean", IMAGENET_DEFAULT_MEAN))
        self.std = tuple(float(v) for v in config.get("std", IMAGENET_DEFAULT_STD))

    def stem(self, image: torch.Tensor) -> torch.Tensor:
        return image

    def stage(self, stream: torch.Tensor, index: int) -> torch.Tensor:
        for name in self.segments[index]:
            stream = self.net[name](stream)
        return stream

    def stage_map(self, stream: torch.Tensor) -> torch.Tensor:
        return stream

    def inject(self, stream: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return stream + residual

    def features(self, streams: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(streams)
