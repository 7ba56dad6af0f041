"""The synthetic referring world: procedural scenes, ground-truth expressions, web-like captions, and a writer that
emits the real RefCOCO (``refer``) and PhraseCut formats (specification: ``docs/synthetic_world.md``).

Names are imported on first use, so ``ris synth`` (which needs neither torch nor the tokenizers) starts quickly.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Expression": "expressions",
    "referring_expressions": "expressions",
    "web_captions": "expressions",
    "Scene": "scene",
    "SceneObject": "scene",
    "make_scene": "scene",
    "world_tokenizer": "vocabulary",
    "WorldPaths": "world",
    "WorldSettings": "world",
    "iter_scenes": "world",
    "read_attributes": "world",
    "read_settings": "world",
    "write_world": "world",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
