"""Backbones by name: one string in a config selects the vision-language backbone.

Names:

- an open_clip architecture or folder (``RN50``, ``RN101``, ``ViT-B-16``, ``tiny-RN``, ``tiny-ViT``, ``tiny-coca``,
  ``local-dir:PATH``), optionally written ``open_clip:NAME``; ``pretrained`` is an open_clip tag (``openai``) or a
  local checkpoint file. The visual tower decides the stage layout (ModifiedResNet or VisionTransformer);
- ``timm:NAME`` (``timm:resnet50``): a timm CNN as the visual side, paired with the text tower of the open_clip
  model ``text_backbone`` (weights ``text_pretrained``); ``pretrained`` is ``None``, ``"timm"`` or a file.

Families register with :func:`register_backbone`; :func:`create_backbone` dispatches on the ``family:`` prefix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import open_clip
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer

from ris.open_clip_models import create_open_clip, model_config

from .base import VisionLanguageBackbone
from .resnet import ResNetVisual
from .text import TextEncoder
from .timm_visual import TimmVisual
from .vit import ViTVisual

log = logging.getLogger(__name__)

Builder = Callable[..., VisionLanguageBackbone]
BACKBONES: dict[str, Builder] = {}
DEFAULT_FAMILY = "open_clip"


def register_backbone(family: str) -> Callable[[Builder], Builder]:
    """Register a builder ``f(name, pretrained, *, input_size, text_backbone, text_pretrained)`` for ``family:NAME``."""

    def decorate(builder: Builder) -> Builder:
        BACKBONES[family] = builder
        return builder

    return decorate


def list_backbones() -> list[str]:
    """The registered family prefixes."""
    return sorted(BACKBONES)


def split_name(name: str) -> tuple[str, str]:
    """``"timm:resnet50"`` → ``("timm", "resnet50")``; names without a registered prefix are open_clip names."""
    family, sep, rest = name.partition(":")
    if sep and family in BACKBONES:
        return family, rest
    return DEFAULT_FAMILY, name


def create_backbone(
    name: str,
    pretrained: str | None = None,
    *,
    input_size: int = 416,
    text_backbone: str = "RN50",
    text_pretrained: str | None = None,
) -> VisionLanguageBackbone:
    """Build the backbone ``name`` (see the module docstring) for square inputs of ``input_size``."""
    family, rest = split_name(name)
    return BACKBONES[family](
        rest, pretrained, input_size=input_size, text_backbone=text_backbone, text_pretrained=text_pretrained
    )


def faithful_open_clip_name(name: str, pretrained: str | None) -> str:
    """The architecture name that matches a pretrained tag's activation.

    open_clip's plain ``RN50``/``ViT-B-16`` configs use GELU, while the ``openai`` weights were trained with
    QuickGELU (CRIS runs them with QuickGELU); open_clip only warns about the mismatch. This returns the
    ``-quickgelu`` variant in that case and ``name`` otherwise.
    """
    if pretrained is None or name.startswith("local-dir:"):
        return name
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not tag_cfg or not tag_cfg.get("quick_gelu") or model_config(name).get("quick_gelu"):
        return name
    variant = f"{name}-quickgelu"
    if open_clip.get_model_config(variant) is None:
        raise ValueError(f"pretrained tag {pretrained!r} of {name!r} needs QuickGELU but {variant!r} is not known")
    return variant


def _text_encoder(model) -> TextEncoder:
    return TextEncoder(model.text if hasattr(model, "text") else model)


@register_backbone("open_clip")
def build_open_clip(
    name: str, pretrained: str | None, *, input_size: int, text_backbone: str, text_pretrained: str | None
) -> VisionLanguageBackbone:
    """An open_clip CLIP/CoCa: ModifiedResNet → :class:`ResNetVisual`, VisionTransformer → :class:`ViTVisual`."""
    arch = faithful_open_clip_name(name, pretrained)
    if arch != name:
        log.info("using %s for %s weights %r (QuickGELU)", arch, name, pretrained)
    built = create_open_clip(arch, pretrained=pretrained)
    model = built.model
    if isinstance(model.visual, ModifiedResNet):
        visual = ResNetVisual(model.visual)
    elif isinstance(model.visual, VisionTransformer):
        visual = ViTVisual(model.visual, input_size)
    else:
        raise TypeError(
            f"open_clip model {name!r} has a {type(model.visual).__name__} visual tower; supported: "
            "ModifiedResNet (RN50/RN101) and VisionTransformer (ViT-B-16, CoCa)"
        )
    backbone = VisionLanguageBackbone(
        visual, _text_encoder(model), built.tokenizer, name=name, mean=built.mean, std=built.std
    )
    return backbone.train()


@register_backbone("timm")
def build_timm(
    name: str, pretrained: str | None, *, input_size: int, text_backbone: str, text_pretrained: str | None
) -> VisionLanguageBackbone:
    """A timm CNN (``features_only``) with the text tower of the open_clip model ``text_backbone``."""
    arch = faithful_open_clip_name(text_backbone, text_pretrained)
    text = create_open_clip(arch, pretrained=text_pretrained)
    visual = TimmVisual(name, pretrained)
    backbone = VisionLanguageBackbone(
        visual, _text_encoder(text.model), text.tokenizer, name=f"timm:{name}", mean=visual.mean, std=visual.std
    )
    return backbone.train()
