"""Foundation-model weight files as users have them: recognised, read, checked, and explained when they are wrong.

Every checkpoint file of the framework (CLIP/CoCa weights, SAM checkpoints) is read by :func:`read_state_dict`:

- **TorchScript archives** (how OpenAI distributes CLIP: ``RN50.pt``, ``RN101.pt``, ``ViT-B-16.pt``, the files CRIS
  and ETRIS tell users to download) are opened with ``torch.jit.load`` and their state dict is taken (fp16 weights
  are cast to float32, as CRIS does, docs/models.md §1.1);
- **state-dict files** (``torch.save``, loaded with ``weights_only=True``) and **safetensors** files; a dict wrapping
  the weights under ``state_dict`` or ``model`` (training checkpoints) is unwrapped and a DDP ``module.`` prefix is
  stripped.

Anything else (an empty file, an HTML page saved instead of the weights, random bytes, a pickle that
``weights_only`` loading refuses) raises one :class:`CheckpointError` naming the file, what was found and what is
accepted. :func:`load_weights` loads a state dict into a model strictly and, on a mismatch, says which kind of model
the file holds (:func:`describe_state_dict`: SAM, CLIP, CoCa, detectron2, a Lightning checkpoint, …).

A pretrained *tag* that is neither cached nor downloadable (no network) raises :class:`WeightsUnavailableError`,
which names the weights and the setting that takes a local file (:mod:`ris.open_clip_models`).
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import nn

WeightsFormat = Literal["torchscript", "state_dict", "safetensors"]

TORCHSCRIPT_EXTRAS = ("input_resolution", "context_length", "vocab_size")
"""Entries of OpenAI's TorchScript state dicts that are not weights."""

LAYOUTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("a SAM checkpoint", ("image_encoder.", "prompt_encoder.", "mask_decoder.")),
    ("a CoCa checkpoint", ("text_decoder.", "visual.", "text.")),
    ("a CLIP checkpoint", ("visual.", "token_embedding.", "ln_final.")),
    ("a CLIP checkpoint with a custom text tower", ("visual.", "text.")),
    ("a detectron2 (e.g. CutLER) checkpoint", ("backbone.", "roi_heads.")),
    ("a RIS model of this framework", ("backbone.", "neck.")),
)
"""Key prefixes that identify a model type, most specific first (:func:`describe_state_dict`)."""


class CheckpointError(ValueError):
    """A weights file that cannot be used; the message names the file, what was found and what is accepted."""


class WeightsUnavailableError(CheckpointError):
    """Pretrained weights named by a tag that are neither cached nor downloadable here (e.g. no network)."""


def _is_html(head: bytes) -> bool:
    text = head.lstrip().lower()
    return text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body"))


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len < size and head[8:9] == b"{"


def sniff(path: Path) -> str:
    """What the file ``path`` looks like: ``torchscript``, ``torch_zip`` (``torch.save``), ``pickle`` (legacy
    ``torch.save``), ``safetensors``, ``html``, ``empty`` or ``unknown``."""
    size = path.stat().st_size
    if size == 0:
        return "empty"
    with open(path, "rb") as handle:
        head = handle.read(64)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return "unknown"
        if any(n.endswith("constants.pkl") for n in names):
            return "torchscript"
        return "torch_zip" if any(n.endswith("data.pkl") for n in names) else "unknown"
    if head[:1] == b"\x80":
        return "pickle"
    if _is_safetensors(head, size):
        return "safetensors"
    if _is_html(head):
        return "html"
    return "unknown"


FOUND = {
    "empty": "an empty file",
    "html": "an HTML page (a failed or redirected download?)",
    "unknown": "no PyTorch, TorchScript or safetensors content (random or truncated bytes?)",
}


def _unwrap(obj: object) -> object:
    """The weights inside a training checkpoint: ``obj['state_dict']`` / ``obj['model']`` (repeatedly)."""
    while isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    return obj


def read_state_dict(path: str | Path, what: str, accepted: str) -> tuple[dict[str, torch.Tensor], WeightsFormat]:
    """The float32 state dict in the weights file ``path`` and the file's format (see the module docstring).

    Args:
        path: the file.
        what: what the file should be, for messages (``"CLIP weights"``).
        accepted: what is accepted, for messages (``"an OpenAI TorchScript archive or an open_clip state dict"``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is not a weights file, or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    kind = sniff(path)
    if kind in FOUND:
        raise CheckpointError(f"{path}: expected {what} ({accepted}), found {FOUND[kind]}")
    fmt: WeightsFormat
    try:
        if kind == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; OpenAI's files need it
                obj: object = torch.jit.load(str(path), map_location="cpu").state_dict()
            fmt = "torchscript"
        elif kind == "safetensors":
            from safetensors.torch import load_file

            obj, fmt = load_file(str(path)), "safetensors"
        else:
            obj, fmt = torch.load(path, map_location="cpu", weights_only=True), "state_dict"
    except Exception as err:  # any reader failure means a bad file; reported with its cause
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: expected {what} ({accepted}), found a {kind.replace('_', ' ')} file that cannot be read "
            f"as weights ({type(err).__name__}: {first[:200]})"
        ) from None
    state = _unwrap(obj)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected {what} ({accepted}), found a {type(state).__name__}, not a state dict")
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: expected {what} ({accepted}), found a dict without tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, fmt


def layout_of(state: Mapping[str, torch.Tensor]) -> tuple[str, tuple[str, ...]] | None:
    """The first entry of :data:`LAYOUTS` whose key prefixes all occur in ``state``, else ``None``."""
    for name, prefixes in LAYOUTS:
        if all(any(k.startswith(p) for k in state) for p in prefixes):
            return name, prefixes
    return None


def describe_state_dict(state: Mapping[str, torch.Tensor]) -> str:
    """A short description of what model ``state`` belongs to, from its key prefixes (``"a SAM checkpoint (4 tensors:
    image_encoder.*, mask_decoder.*)"``)."""
    keys = list(state)
    layout = layout_of(state)
    if layout is not None:
        return f"{layout[0]} ({len(keys)} tensors: {', '.join(p + '*' for p in layout[1])})"
    tops = list(dict.fromkeys(k.split(".", 1)[0] for k in keys))
    return f"a state dict of {len(keys)} tensors with top-level keys {', '.join(tops[:5])}" + (
        ", …" if len(tops) > 5 else ""
    )


def _examples(keys: Iterable[str], limit: int = 3) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_weights(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    path: str | Path,
    what: str,
    accepted: str,
    ignore: Iterable[str] = (),
) -> None:
    """Load ``state`` into ``model`` strictly (keys in ``ignore`` may be extra); a mismatch raises one
    :class:`CheckpointError` naming the file, what it holds and what was expected."""
    expected = model.state_dict()
    ignore = set(ignore)
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected) - ignore
    shapes = {k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)}
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_examples(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_examples(unexpected)})")
        if shapes:
            key = sorted(shapes)[0]
            parts.append(
                f"{len(shapes)} shape mismatches ({key}: file {tuple(state[key].shape)}, model "
                f"{tuple(expected[key].shape)})"
            )
        raise CheckpointError(
            f"{path}: expected {what} ({accepted}), found {describe_state_dict(state)}: {'; '.join(parts)}"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=True)
