"""Loading open_clip models (CLIP and CoCa) by name, pretrained tag, local weights file or local folder.

Every foundation-model path of the framework (RIS backbones, the generator's captioner and scorer, Global-Local
CLIP) goes through :func:`create_open_clip`:

- ``create_open_clip("RN50", pretrained="openai")``: an open_clip name and pretrained tag. The tag's cached copy is
  used without touching the network; a download is tried only where the hub is reachable, and a tag that is
  neither cached nor downloadable fails at once with a :class:`~ris.checkpoints.WeightsUnavailableError` that names
  the weights and the setting for a local file (no hub retries);
- ``create_open_clip("RN50", pretrained="/ckpt/RN50.pt")``: a local weights file, read by
  :func:`ris.checkpoints.read_state_dict`: OpenAI's own TorchScript archives (``RN50.pt``, ``RN101.pt``,
  ``ViT-B-16.pt``), open_clip/OpenAI state dicts, training checkpoints, safetensors; a file of another kind or
  architecture raises one :class:`~ris.checkpoints.CheckpointError`;
- ``create_open_clip("local-dir:/models/synthetic-coca")``: a folder written by :func:`save_local_dir`
  (``open_clip_config.json`` + weights, plus ``vocab.json`` when the model uses a word-level vocabulary).

One rule decides the activation of every path (:func:`needs_quick_gelu`): OpenAI weights (the ``openai`` tag, an
OpenAI TorchScript archive) run with QuickGELU, as they were trained and as CRIS runs them; a ``-quickgelu`` name
forces it for any file. The built model records the activation and the weights format (:class:`OpenCLIPModel`).

The framework's own small architectures (``tiny-RN``, ``tiny-ViT``, ``tiny-coca`` and their ``-quickgelu``
variants: same classes as the real models, tiny widths, for tests) live in ``ris/model_configs`` and are
registered with open_clip on import.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import open_clip
import torch
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
from open_clip.model import convert_to_custom_text_state_dict
from open_clip.transformer import QuickGELU
from torch import nn

from ris.checkpoints import TORCHSCRIPT_EXTRAS, WeightsUnavailableError, load_weights, read_state_dict, sniff
from ris.tokenizer import OpenCLIPTokenizer, Tokenizer, WordTokenizer

CONFIG_DIR = Path(__file__).parent / "model_configs"
VOCAB_FILE = "vocab.json"
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
ACCEPTED = "an OpenAI TorchScript archive such as RN50.pt, or an open_clip/OpenAI state dict of this architecture"
open_clip.add_model_config(CONFIG_DIR)


@dataclass
class OpenCLIPModel:
    """An open_clip model with the tokenizer it was trained with, its input geometry and how it was loaded.

    Attributes:
        activation: the text/ViT MLP activation, ``"QuickGELU"`` or ``"GELU"`` (:func:`needs_quick_gelu`).
        weights_format: ``torchscript``, ``state_dict``, ``safetensors`` (a weights file), ``local-dir`` or
            ``None`` (random weights).
    """

    model: nn.Module
    tokenizer: Tokenizer
    name: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    activation: str = "GELU"
    weights_format: str | None = None


def _local_dir(model_name: str) -> Path | None:
    return Path(model_name.split(":", 1)[1]) if model_name.startswith("local-dir:") else None


def model_config(model_name: str) -> dict[str, Any]:
    """The architecture config of a registered name or a ``local-dir:`` folder."""
    folder = _local_dir(model_name)
    if folder is not None:
        path = folder / "open_clip_config.json"
        try:
            return json.loads(path.read_text())["model_cfg"]
        except (OSError, KeyError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: expected an open_clip config with a 'model_cfg' entry ({err})") from err
    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        raise ValueError(f"unknown open_clip model {model_name!r}; known: {', '.join(open_clip.list_models())}")
    return cfg


def _vocab_overrides(cfg: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """Config overrides that size the text tower (and CoCa decoder) for ``vocab_size``."""
    out = {"text_cfg": {**cfg["text_cfg"], "vocab_size": vocab_size}}
    if "multimodal_cfg" in cfg:
        out["multimodal_cfg"] = {**cfg["multimodal_cfg"], "vocab_size": vocab_size}
    return out


def is_weights_path(pretrained: str) -> bool:
    """Whether a ``pretrained`` value names a file (it exists, or it looks like a path) rather than a tag."""
    return Path(pretrained).is_file() or "/" in pretrained or "\\" in pretrained or pretrained.endswith(WEIGHT_SUFFIXES)


def needs_quick_gelu(cfg: dict[str, Any], tag_cfg: dict[str, Any] | None, weights_format: str | None) -> bool:
    """The one rule for the activation of every OpenAI-weight path (docs/models.md §0.1, docs/method.md §6.1).

    QuickGELU when the architecture says so (a ``-quickgelu`` name), when the pretrained tag's weights were trained
    with it (``openai`` and a few others), or when the weights file is a TorchScript archive (how OpenAI distributes
    CLIP); otherwise the architecture's own activation (GELU). open_clip itself only warns about a mismatched tag and
    says nothing for a local file.
    """
    return bool(cfg.get("quick_gelu") or (tag_cfg or {}).get("quick_gelu") or weights_format == "torchscript")


def planned_activation(model_name: str, pretrained: str | None) -> str:
    """The activation :func:`create_open_clip` will choose for ``model_name`` + ``pretrained``, without building or
    downloading anything (for provenance written before the models are built)."""
    cfg = model_config(model_name)
    tag_cfg, weights_format = None, None
    if pretrained is not None and _local_dir(model_name) is None:
        if is_weights_path(pretrained):
            path = Path(pretrained)
            weights_format = "torchscript" if path.is_file() and sniff(path) == "torchscript" else "state_dict"
        else:
            tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    return "QuickGELU" if needs_quick_gelu(cfg, tag_cfg, weights_format) else "GELU"


def activation_name(model: nn.Module) -> str:
    """``"QuickGELU"`` when any module of ``model`` is open_clip's QuickGELU, else ``"GELU"``."""
    return "QuickGELU" if any(isinstance(m, QuickGELU) for m in model.modules()) else "GELU"


def cached_tag_file(
    tag_cfg: dict[str, Any], hf_cache: str | Path | None = None, url_cache: str | Path | None = None
) -> Path | None:
    """The local copy of a pretrained tag's weights, if open_clip's download would find one (no network).

    Looks in the Hugging Face hub cache (``hf_cache``, default the hub's) for the tag's ``hf_hub`` file (and its
    safetensors alternative) and in open_clip's URL cache (``url_cache``, default ``~/.cache/clip``) for its ``url``.
    """
    if tag_cfg.get("file"):
        return Path(tag_cfg["file"]) if Path(tag_cfg["file"]).is_file() else None
    hub = tag_cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(hub)
        names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
        for name in names:
            found = try_to_load_from_cache(repo, name, cache_dir=hf_cache)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    url = tag_cfg.get("url", "")
    if url:
        path = Path(url_cache or os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if path.is_file():
            return path
    return None


def _offline_reason(tag_cfg: dict[str, Any]) -> str | None:
    """Why a download cannot work here (``HF_HUB_OFFLINE`` set, the host unreachable within 3 s), else ``None``."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname if tag_cfg.get("hf_hub") else (
        urlparse(tag_cfg.get("url", "")).hostname
    )
    if not host:
        return "the tag has no download location"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as err:
        return f"{host} is unreachable: {err}"
    return None


def fetch_tag_weights(model_name: str, tag: str, tag_cfg: dict[str, Any], setting: str) -> Path:
    """The weights file of pretrained tag ``tag``: the cached copy, else a download; raises
    :class:`~ris.checkpoints.WeightsUnavailableError` at once (no retries) when neither is possible."""
    cached = cached_tag_file(tag_cfg)
    if cached is not None:
        return cached
    reason = _offline_reason(tag_cfg)
    if reason is None:
        try:
            return Path(open_clip.download_pretrained(tag_cfg))
        except Exception as err:  # any hub/URL failure: one short message instead of the hub's traceback
            reason = f"download failed: {type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
    raise WeightsUnavailableError(
        f"{model_name} weights {tag!r} are not cached here and cannot be downloaded ({reason}); pass a local "
        f"checkpoint file with --model.{setting} PATH (e.g. OpenAI's {model_name.removesuffix('-quickgelu')}.pt or an "
        "open_clip .bin/.safetensors file)"
    )


def _massage(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip's own conversions of older checkpoint layouts: a CLIP-style text tower loaded into a custom-text
    model (CoCa) and a scalar/1-d ``logit_scale``."""
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    scale = getattr(model, "logit_scale", None)
    if isinstance(scale, torch.Tensor) and "logit_scale" in state and state["logit_scale"].ndim != scale.ndim:
        state["logit_scale"] = state["logit_scale"].reshape(scale.shape)
    return state


class _RandomInitFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


@contextmanager
def _without_random_init_warning(active: bool) -> Iterator[None]:
    """Silence open_clip's "initialized randomly" warning while building a model whose weights are loaded next."""
    handler_filter = _RandomInitFilter()
    root = logging.getLogger()
    if active:
        root.addFilter(handler_filter)
    try:
        yield
    finally:
        root.removeFilter(handler_filter)


def create_open_clip(
    model_name: str,
    pretrained: str | None = None,
    tokenizer: str | Tokenizer | None = None,
    device: str | torch.device = "cpu",
    setting: str = "pretrained",
) -> OpenCLIPModel:
    """Build an open_clip model and its tokenizer.

    Args:
        model_name: an open_clip architecture name (``RN50``, ``ViT-B-16``, ``coca_ViT-L-14``, ``tiny-coca``) or
            ``local-dir:PATH``.
        pretrained: an open_clip pretrained tag (the cached copy is used; downloaded only where there is a network)
            or a path to a local weights file: an OpenAI TorchScript archive (``RN50.pt``), an open_clip/OpenAI
            state dict, a training checkpoint or a safetensors file; ``None`` = random weights.
        tokenizer: ``None`` (the folder's ``vocab.json`` if there is one, else open_clip's tokenizer for the
            name), a path to a word vocabulary JSON, or a tokenizer object. A word vocabulary resizes the text
            tower to its size.
        setting: the caller's config key for ``pretrained`` (named in the errors, e.g. ``scorer_pretrained``).

    The activation follows :func:`needs_quick_gelu`. Errors: ``FileNotFoundError`` (a missing file),
    :class:`~ris.checkpoints.CheckpointError` (a file that is not weights of this architecture),
    :class:`~ris.checkpoints.WeightsUnavailableError` (a tag neither cached nor downloadable).
    """
    folder = _local_dir(model_name)
    if tokenizer is None and folder is not None and (folder / VOCAB_FILE).is_file():
        tokenizer = str(folder / VOCAB_FILE)
    if isinstance(tokenizer, (str, Path)):
        tokenizer = WordTokenizer.load(tokenizer)
    cfg = model_config(model_name)
    tag_cfg: dict[str, Any] | None = None
    state: dict[str, torch.Tensor] | None = None
    weights_format: str | None = "local-dir" if folder is not None else None
    weights_file: Path | None = None
    if pretrained is not None and folder is None:
        if is_weights_path(pretrained):
            weights_file = Path(pretrained)
            if not weights_file.is_file():
                raise FileNotFoundError(f"pretrained checkpoint file not found: {pretrained} (--model.{setting})")
        else:
            tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
            if not tag_cfg:
                known = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
                raise ValueError(
                    f"--model.{setting}: {pretrained!r} is neither a file nor a pretrained tag of {model_name} "
                    f"(tags: {known})"
                )
            weights_file = fetch_tag_weights(model_name, pretrained, tag_cfg, setting)
        state, weights_format = read_state_dict(weights_file, f"{model_name} weights", ACCEPTED)
    overrides: dict[str, Any] = {}
    if tokenizer is not None and tokenizer.vocab_size != cfg["text_cfg"].get("vocab_size", 49408):
        overrides = _vocab_overrides(cfg, tokenizer.vocab_size)
    quick_gelu = needs_quick_gelu(cfg, tag_cfg, weights_format)
    with _without_random_init_warning(state is not None):
        model = open_clip.create_model(model_name, pretrained=None, force_quick_gelu=quick_gelu, **overrides)
    if state is not None and weights_file is not None:
        persistent = set(model.state_dict())
        transient = {name for name, _ in model.named_buffers() if name not in persistent}
        load_weights(model, _massage(model, state), weights_file, f"{model_name} weights", ACCEPTED,
                     ignore=(*TORCHSCRIPT_EXTRAS, *transient))
    decoder = getattr(model, "text_decoder", None)
    if decoder is not None and state is None and folder is None:
        # open_clip leaves the CoCa decoder's vocabulary projection as uninitialised memory (torch.empty) unless
        # weights are loaded (and its own init_parameters() fails); initialise it as open_clip intends:
        # N(0, width^-1/2).
        nn.init.normal_(decoder.text_projection, std=decoder.text_projection.shape[0] ** -0.5)
    if next(model.parameters()).device.type != "meta":  # full-size shapes built without memory stay on meta
        model.to(device)
    model.eval()
    if tokenizer is None:
        tokenizer = OpenCLIPTokenizer(model_name)
    visual = model.visual
    size = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
    stats = tag_cfg or {}
    return OpenCLIPModel(
        model=model,
        tokenizer=tokenizer,
        name=model_name,
        image_size=int(size),
        mean=tuple(stats.get("mean") or getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN),
        std=tuple(stats.get("std") or getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD),
        activation=activation_name(model),
        weights_format=weights_format,
    )


def save_local_dir(folder: str | Path, model_name: str, model: nn.Module, tokenizer: Tokenizer | None = None) -> Path:
    """Write ``model`` (architecture ``model_name``) as a ``local-dir:`` folder loadable by :func:`create_open_clip`.

    Files are written to a temporary folder and renamed into place, so a reader never sees a partial folder.
    """
    folder = Path(folder)
    cfg = model_config(model_name)
    if isinstance(tokenizer, WordTokenizer):
        cfg = {**cfg, **_vocab_overrides(cfg, tokenizer.vocab_size)}
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}, indent=1))
    torch.save(model.state_dict(), tmp / "open_clip_pytorch_model.bin")
    if isinstance(tokenizer, WordTokenizer):
        tokenizer.save(tmp / VOCAB_FILE)
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        folder.rename(old)
        tmp.rename(folder)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        tmp.rename(folder)
    return folder
