"""Official CRIS.pytorch and ETRIS checkpoints → :class:`ris.models.CRIS` / :class:`ris.models.ETRIS` weights.

The official training scripts save ``torch.save({'epoch', 'cur_iou', 'best_iou', 'prec', 'state_dict',
'optimizer', 'scheduler'})`` of a DDP-wrapped model, so the ``state_dict`` keys start with ``module.``. Their key
names differ from ours only by prefix renames (docs/models.md §1.6, §2.6):

| official | ours |
|---|---|
| ``backbone.visual.*`` | ``backbone.visual.net.*`` |
| ``backbone.{transformer, token_embedding, positional_embedding, ln_final, text_projection}`` | ``backbone.text.*`` |
| ``neck.coordconv.0.conv1.*`` / ``neck.coordconv.1.*`` | ``neck.coordconv.conv1.*`` / ``neck.coordconv.conv2.*`` |
| ``proj.*`` | ``projector.*`` |
| ETRIS ``bridger.linear1.N`` / ``linear2.N`` | ``bridger.text_in.N`` / ``text_out.N`` |
| ETRIS ``bridger.fusion_{v,t}.N`` (ViT: ``….multihead_attn``) | ``bridger.interact_{v,t}.N`` (ViT: ``….attn``) |
| ETRIS (ResNet) ``bridger.zoom_{in,out}.N.weight`` | ``bridger.zoom_{in,out}.N.0.weight`` |
| ETRIS ``neck.f{3,4,5}_proj.*`` | ``neck.projections.{0,1,2}.*`` |
| ETRIS ``neck.fusion{3,4,5}.multihead_attn.*`` | ``neck.fusions.{0,1,2}.attn.*`` |

The Bridger's layers have the official module types (``ris.models.bridger``), so its weights copy as they are. The
one official ``ConvTranspose2d`` that is a ``Conv2d`` here is ETRIS-ViT's 1×1 ``neck.f5_proj.0`` (the same map):
its weight is transposed, ``(in, out, 1, 1)`` → ``(out, in, 1, 1)``. CLIP's ``logit_scale`` is unused by both
models and has no counterpart.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

DDP_PREFIX = "module."
UNUSED_KEYS = ("backbone.logit_scale",)
OFFICIAL_CONV_TRANSPOSE = {
    False: ("bridger.zoom_in.2", "bridger.zoom_out.0", "bridger.zoom_out.1", "neck.f5_proj.0"),
    True: ("bridger.zoom_in.2.0", "bridger.zoom_out.0.0", "bridger.zoom_out.1.0", "neck.f5_proj.0"),
}
"""Modules that are ``ConvTranspose2d`` in the official ETRIS, by ``vit`` (a ViT's zooms are conv-BN-ReLU
sequences)."""

_TEXT = "transformer|token_embedding|positional_embedding|ln_final|text_projection"
Rule = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]


@functools.cache
def _rules(vit: bool) -> list[Rule]:
    """The renames, applied in order (each rewrites a key prefix the later ones do not match)."""
    level = {"3": "0", "4": "1", "5": "2"}
    vit_rules = [(r"^bridger\.fusion_([vt])\.(\d+)\.multihead_attn\.", r"bridger.interact_\1.\2.attn.")] if vit else []
    rules: list[tuple[str, str | Callable[[re.Match[str]], str]]] = [
        *vit_rules,
        (r"^backbone\.visual\.", "backbone.visual.net."),
        (rf"^backbone\.({_TEXT})", r"backbone.text.\1"),
        (r"^neck\.coordconv\.0\.conv1\.", "neck.coordconv.conv1."),
        (r"^neck\.coordconv\.1\.", "neck.coordconv.conv2."),
        (r"^proj\.", "projector."),
        (r"^bridger\.linear1\.", "bridger.text_in."),
        (r"^bridger\.linear2\.", "bridger.text_out."),
        (r"^bridger\.fusion_([vt])\.", r"bridger.interact_\1."),
        (r"^bridger\.zoom_(in|out)\.(\d+)\.weight$", r"bridger.zoom_\1.\2.0.weight"),
        (r"^neck\.fusion([345])\.multihead_attn\.", lambda m: f"neck.fusions.{level[m.group(1)]}.attn."),
        (r"^neck\.f([345])_proj\.", lambda m: f"neck.projections.{level[m.group(1)]}."),
    ]
    return [(re.compile(pattern), target) for pattern, target in rules]


def strip_ddp_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without the ``module.`` prefix of a DDP-wrapped model (unchanged when no key has it)."""
    if state and all(k.startswith(DDP_PREFIX) for k in state):
        return {k[len(DDP_PREFIX):]: v for k, v in state.items()}
    return state


def is_official_state_dict(state: dict[str, Any]) -> bool:
    """Whether ``state`` uses the official CRIS/ETRIS key names (``module.``-prefixed or not)."""
    keys = strip_ddp_prefix(state).keys()
    return any(k.startswith(("backbone.transformer.", "proj.")) for k in keys) and not any(
        k.startswith(("backbone.text.", "projector.")) for k in keys)


def official_is_vit(state: dict[str, Any]) -> bool:
    return any(k.startswith("backbone.visual.transformer.") for k in state)


def official_name(key: str, vit: bool) -> str | None:
    """Our name of official key ``key`` (``None`` for the unused ``logit_scale``)."""
    if key in UNUSED_KEYS:
        return None
    for pattern, target in _rules(vit):
        key = pattern.sub(target, key)
    return key


@dataclass
class MappingReport:
    """How an official state dict landed on a model.

    Attributes:
        mapped: our keys filled from the official state dict.
        transposed: our keys filled with a transposed official ``ConvTranspose2d`` weight.
        unused: official keys with no counterpart by design (``logit_scale``).
        unmapped: official keys whose renamed key does not exist in the model, or whose shape does not fit
            (``(official key, our key, official shape, our shape)``).
        missing: our keys that no official key filled.
    """

    mapped: list[str] = field(default_factory=list)
    transposed: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    unmapped: list[tuple[str, str, tuple[int, ...], tuple[int, ...] | None]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unmapped and not self.missing

    def describe(self, limit: int = 8) -> str:
        """A short text: counts, then the first unmapped and missing keys."""
        lines = [f"{len(self.mapped)} keys mapped ({len(self.transposed)} transposed), {len(self.unused)} unused "
                 f"({', '.join(self.unused) or '-'}), {len(self.unmapped)} unmapped, {len(self.missing)} missing"]
        for official, ours, shape, our_shape in self.unmapped[:limit]:
            where = "no such key" if our_shape is None else f"shape {tuple(our_shape)}"
            lines.append(f"  unmapped {official} {tuple(shape)} -> {ours} ({where})")
        lines += [f"  missing {key}" for key in self.missing[:limit]]
        return "\n".join(lines)


def _official_module(key: str) -> str:
    return key.rsplit(".", 1)[0]


def map_official_state_dict(
    state: dict[str, torch.Tensor], model: nn.Module
) -> tuple[dict[str, torch.Tensor], MappingReport]:
    """Our state dict for ``model`` from an official one (``module.`` prefix allowed) and the report."""
    state = strip_ddp_prefix(state)
    vit = official_is_vit(state)
    ours = model.state_dict()
    modules = dict(model.named_modules())
    out: dict[str, torch.Tensor] = {}
    report = MappingReport()
    for key, tensor in state.items():
        name = official_name(key, vit)
        if name is None:
            report.unused.append(key)
            continue
        target = ours.get(name)
        value = tensor
        if (_official_module(key) in OFFICIAL_CONV_TRANSPOSE[vit] and key.endswith(".weight")
                and isinstance(modules.get(_official_module(name)), nn.Conv2d) and tensor.dim() == 4):
            value = tensor.transpose(0, 1)
            report.transposed.append(name)
        if target is None or tuple(target.shape) != tuple(value.shape):
            report.unmapped.append((key, name, tuple(tensor.shape), None if target is None else tuple(target.shape)))
            continue
        out[name] = value.to(target.dtype).contiguous()
        report.mapped.append(name)
    report.missing = [k for k in ours if k not in out]
    return out, report


def _blocks(state: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)\.")
    return len({int(m.group(1)) for k in state if (m := pattern.match(k))})


def infer_model(state: dict[str, torch.Tensor], backbone: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(class name, init arguments)`` of the model an official state dict was trained as.

    The backbone (``RN50``, ``RN101`` or ``ViT-B-16``; ``backbone`` overrides it) comes from the visual tower's
    depth, width and patch size, the head widths from the tensor shapes, a ViT's input size from its positional
    grid (ResNets: 416, the official configs'); attention head counts keep the defaults (the official configs' 8
    and the Bridger's 4 / 8). ``pretrained`` is ``None``: every weight comes from the checkpoint.
    """
    state = strip_ddp_prefix(state)
    etris = any(k.startswith("bridger.") for k in state)
    if official_is_vit(state):
        conv = state["backbone.visual.conv1.weight"]
        layers = _blocks(state, "backbone.visual.transformer.resblocks.")
        if backbone is None and (conv.shape[0], conv.shape[-1], layers) != (768, 16, 12):
            raise ValueError(f"unknown official ViT backbone: width {conv.shape[0]}, patch {conv.shape[-1]}, "
                             f"{layers} layers (known: ViT-B-16; name another with --backbone)")
        grid = math.isqrt(state["backbone.visual.positional_embedding"].shape[0] - 1)
        backbone, input_size = backbone or "ViT-B-16", grid * conv.shape[-1]
    else:
        depth = tuple(_blocks(state, f"backbone.visual.layer{i}.") for i in range(1, 5))
        names = {(3, 4, 6, 3): "RN50", (3, 4, 23, 3): "RN101"}
        if backbone is None and depth not in names:
            raise ValueError(f"unknown official ResNet backbone with blocks {depth} (known: RN50, RN101; name "
                             "another with --backbone)")
        backbone, input_size = backbone or names[depth], 416
    in_dim = state["proj.vis.4.weight"].shape[0]
    args: dict[str, Any] = {
        "backbone": backbone,
        "pretrained": None,
        "text_pretrained": None,
        "input_size": input_size,
        "num_layers": _blocks(state, "decoder.layers."),
        "dim_ffn": int(state["decoder.layers.0.ffn.0.weight"].shape[0]),
        "kernel_size": math.isqrt((state["proj.txt.weight"].shape[0] - 1) // in_dim),
    }
    if etris:
        args |= {"bridge_dim": int(state["bridger.linear1.0.weight"].shape[0]),
                 "neck_dim": int(state["neck.txt_proj.weight"].shape[0])}
        return "ETRIS", args
    args["fpn_out"] = [int(state[f"neck.{name}.0.weight"].shape[0]) for name in ("f3_v_proj", "f2_v_proj", "f1_v_proj")]
    return "CRIS", args


def read_checkpoint(path: str | Path, unsafe: bool = False) -> dict[str, Any]:
    """A checkpoint file's top-level object, loaded with ``weights_only=True`` unless ``unsafe`` (full pickle:
    only for files you trust); the error names the file and the way out."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not unsafe)
    except Exception as err:  # noqa: BLE001 - torch raises several types for non-checkpoint files
        if not unsafe and "weights_only" in str(err).lower():
            raise ValueError(
                f"{path}: holds objects beyond tensors and plain containers, so it is not loaded with "
                "weights_only=True; if you trust the file, import it with `ris import-checkpoint --unsafe-load`"
            ) from err
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a checkpoint dict, got {type(ckpt).__name__}")
    return ckpt


def checkpoint_state_dict(ckpt: dict[str, Any], path: str | Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` entry of a checkpoint dict (or the dict itself when it is one)."""
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a 'state_dict' of tensors (or a state dict)")
    return state
