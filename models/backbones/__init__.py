"""Vision-language backbones by name (open_clip CLIP/CoCa, timm CNN + open_clip text tower)."""

from .base import BackboneOutput, VisionLanguageBackbone, VisualEncoder, stage_ends
from .registry import (
    BACKBONES,
    create_backbone,
    list_backbones,
    register_backbone,
)
from .text import TextEncoder

__all__ = [
    "BACKBONES",
    "BackboneOutput",
    "TextEncoder",
    "VisionLanguageBackbone",
    "VisualEncoder",
    "create_backbone",
    "list_backbones",
    "register_backbone",
    "stage_ends",
]
