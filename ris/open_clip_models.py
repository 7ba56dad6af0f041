"""Loading open_clip models (CLIP and CoCa) by name, pretrained tag, local checkpoint file or local folder.

Every foundation-model path of the framework goes through :func:`create_open_clip`:

- ``create_open_clip("RN50", pretrained="openai")``: an open_clip name and pretrained tag (downloads on first use,
  so only where the machine has internet);
- ``create_open_clip("coca_ViT-L-14", pretrained="/ckpt/coca.pt")``: a local checkpoint file for that architecture;
- ``create_open_clip("local-dir:/models/synthetic-coca")``: a folder written by :func:`save_local_dir`
  (``open_clip_config.json`` + weights, plus ``vocab.json`` when the model uses a word-level vocabulary).

The framework's own small architectures (``tiny-RN``, ``tiny-ViT``, ``tiny-coca``: same classes as the real
models, tiny widths, for tests) live in ``ris/model_configs`` and are registered with open_clip on import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from torch import nn

from ris.tokenizer import OpenCLIPTokenizer, Tokenizer, WordTokenizer

CONFIG_DIR = Path(__file__).parent / "model_configs"
VOCAB_FILE = "vocab.json"
open_clip.add_model_config(CONFIG_DIR)


@dataclass
class OpenCLIPModel:
    """An open_clip model with the tokenizer it was trained with and its input geometry."""

    model: nn.Module
    tokenizer: Tokenizer
    name: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


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


def create_open_clip(
    model_name: str,
    pretrained: str | None = None,
    tokenizer: str | Tokenizer | None = None,
    device: str | torch.device = "cpu",
) -> OpenCLIPModel:
    """Build an open_clip model and its tokenizer.

    Args:
        model_name: an open_clip architecture name (``RN50``, ``ViT-B-16``, ``coca_ViT-L-14``, ``tiny-coca``) or
            ``local-dir:PATH``.
        pretrained: an open_clip pretrained tag or a path to a local checkpoint file; ``None`` = random weights.
        tokenizer: ``None`` (the folder's ``vocab.json`` if there is one, else open_clip's tokenizer for the
            name), a path to a word vocabulary JSON, or a tokenizer object. A word vocabulary resizes the text
            tower to its size.
    """
    folder = _local_dir(model_name)
    if tokenizer is None and folder is not None and (folder / VOCAB_FILE).is_file():
        tokenizer = str(folder / VOCAB_FILE)
    if isinstance(tokenizer, (str, Path)):
        tokenizer = WordTokenizer.load(tokenizer)
    if pretrained is not None and not Path(pretrained).is_file() and ("/" in pretrained or pretrained.endswith(".pt")):
        raise FileNotFoundError(f"pretrained checkpoint file not found: {pretrained}")
    cfg = model_config(model_name)
    overrides: dict[str, Any] = {}
    if tokenizer is not None and tokenizer.vocab_size != cfg["text_cfg"].get("vocab_size", 49408):
        overrides = _vocab_overrides(cfg, tokenizer.vocab_size)
    model = open_clip.create_model(model_name, pretrained=pretrained, device=device, **overrides)
    decoder = getattr(model, "text_decoder", None)
    if decoder is not None and pretrained is None and folder is None:
        # open_clip leaves the CoCa decoder's vocabulary projection as uninitialised memory (torch.empty) unless
        # weights are loaded (and its own init_parameters() fails); initialise it as open_clip intends:
        # N(0, width^-1/2).
        nn.init.normal_(decoder.text_projection, std=decoder.text_projection.shape[0] ** -0.5)
    model.eval()
    if tokenizer is None:
        tokenizer = OpenCLIPTokenizer(model_name)
    visual = model.visual
    size = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
    return OpenCLIPModel(
        model=model,
        tokenizer=tokenizer,
        name=model_name,
        image_size=int(size),
        mean=tuple(getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN),
        std=tuple(getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD),
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
