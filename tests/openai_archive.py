"""Weights files as users have them, at tiny size: OpenAI's TorchScript CLIP archives and plain state dicts.

OpenAI distributes CLIP (``RN50.pt``, ``RN101.pt``, ``ViT-B-16.pt``) as TorchScript archives of a QuickGELU model
with fp16 weights whose state dict also holds ``input_resolution``, ``context_length`` and ``vocab_size``.
:func:`save_openai_archive` writes a tiny open_clip CLIP in that format with ``torch.jit``; :func:`save_state_dict`
writes the same weights (rounded through fp16, as the archive stores them) as a ``torch.save`` state dict.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn


def fp16_rounded(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose float weights went through fp16 (what an OpenAI archive stores)."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in [*out.parameters(), *out.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return out


def save_openai_archive(model: nn.Module, path: Path) -> Path:
    """Write the open_clip CLIP ``model`` (QuickGELU architecture) as an OpenAI-style TorchScript archive."""
    traced_source = copy.deepcopy(model).eval()
    visual = traced_source.visual
    size = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
    for key, value in (("input_resolution", size), ("context_length", 77), ("vocab_size", 49408)):
        if hasattr(traced_source, key):
            delattr(traced_source, key)
        traced_source.register_buffer(key, torch.tensor(value))
    traced_source.output_dict = False
    image = torch.zeros(1, 3, size, size)
    text = torch.zeros(1, 77, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        archive = torch.jit.trace(traced_source, (image, text), check_trace=False).half()
        archive.save(str(path))
    return path


def save_state_dict(model: nn.Module, path: Path) -> Path:
    """Write ``model``'s fp16-rounded weights as a plain ``torch.save`` state dict."""
    torch.save(fp16_rounded(model).state_dict(), path)
    return path


def tiny_weight_files(root: Path) -> dict[str, tuple[Path, Path]]:
    """Per tiny architecture (``tiny-RN``, ``tiny-ViT``): an OpenAI-style TorchScript archive and an open_clip state
    dict of the same QuickGELU weights, written below ``root``."""
    from ris.open_clip_models import create_open_clip

    out = {}
    for arch in ("tiny-RN", "tiny-ViT"):
        torch.manual_seed(0)
        model = create_open_clip(f"{arch}-quickgelu").model
        out[arch] = save_openai_archive(model, root / f"{arch}.pt"), save_state_dict(model, root / f"{arch}-sd.pt")
    return out
