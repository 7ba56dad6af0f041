"""Tiny models, images and annotations for the generation pipeline tests (``tests/test_pseudo_generate*.py``).

Everything uses the real classes through the real loading paths: tiny SAM / CoCa / CLIP with random weights are
saved to files and loaded back by ``ris generate`` (``--model.*_pretrained FILE``, a SAM checkpoint file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ris.open_clip_models import create_open_clip
from ris.pseudo.masks import build_tiny_sam
from ris.pseudo.records import mask_to_rle
from ris.tokenizer import WordTokenizer

WORDS = [
    "a", "the", "red", "blue", "green", "big", "small", "circle", "square", "star", "shape", "left", "right", "striped"
]
SHORT_DECODING = ["--model.decoding.seq_len", "6", "--model.decoding.top_k", "[5]", "--model.decoding.top_p", "[0.5]"]
# the fast setting of most tests: 2 samplers (no beam) on 2 crop types (masked, 1.2 context)
FAST = ["--model.decoding.beam", "false", "--model.margins", "[1.0, 1.2]"]


@dataclass(frozen=True)
class TinyZoo:
    """Files of the tiny models: a word vocabulary, CoCa and CLIP state dicts, a SAM state dict."""

    vocab: Path
    coca: Path
    clip: Path
    sam: Path


def make_zoo(root: Path, seed: int = 0) -> TinyZoo:
    """Build tiny-coca and tiny-RN (word vocabulary) and the tiny SAM with random weights and save them."""
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vocab = WordTokenizer(WORDS)
    zoo = TinyZoo(root / "vocab.json", root / "coca.pt", root / "clip.pt", root / "sam.pt")
    vocab.save(zoo.vocab)
    torch.save(create_open_clip("tiny-coca", tokenizer=vocab).model.state_dict(), zoo.coca)
    torch.save(create_open_clip("tiny-RN", tokenizer=vocab).model.state_dict(), zoo.clip)
    torch.save(build_tiny_sam().state_dict(), zoo.sam)
    return zoo


def box_mask(height: int, width: int, top: int, left: int, bottom: int, right: int) -> np.ndarray:
    """``(H, W)`` bool mask of the rows ``top:bottom`` and columns ``left:right``."""
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


@dataclass
class ImageSpec:
    """One test image: file name, PIL mode, size and its GT instance masks."""

    name: str
    masks: list[np.ndarray]
    mode: str = "RGB"
    size: tuple[int, int] = (40, 56)
    corrupt: bool = False


def write_images(folder: Path, specs: list[ImageSpec], seed: int = 0) -> Path:
    """Write the images (random noise in ``mode``; garbage bytes when ``corrupt``) and a refer-style
    ``instances.json`` with one RLE annotation per mask; returns the annotation file."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for index, spec in enumerate(specs):
        height, width = spec.size
        path = folder / f"{spec.name}.png"
        if spec.corrupt:
            path.write_bytes(b"this is not a png")
        else:
            channels = {"L": 1, "RGB": 3, "RGBA": 4}[spec.mode]
            pixels = rng.integers(0, 255, (height, width, channels), dtype=np.uint8)
            Image.fromarray(pixels[..., 0] if channels == 1 else pixels, spec.mode).save(path)
        images.append({"id": index, "file_name": path.name, "height": height, "width": width})
        for mask in spec.masks:
            annotations.append({"id": len(annotations) + 1, "image_id": index, "segmentation": mask_to_rle(mask)})
    # the GT source looks images up by id or file name; ImageFolder ids are the file stems
    for image in images:
        image["file_name"] = Path(image["file_name"]).stem
    out = folder.parent / "instances.json"
    out.write_text(json.dumps({"images": images, "annotations": annotations}))
    return out


def three_boxes(height: int = 40, width: int = 56) -> list[np.ndarray]:
    return [box_mask(height, width, 5 * k, 8 * k, 5 * k + 10, 8 * k + 12) for k in range(3)]


def gt_args(zoo: TinyZoo, images: Path, annotations: Path, out: Path, *extra: str) -> list[str]:
    """``ris generate`` arguments: GT masks, tiny CoCa captioner and tiny CLIP scorer loaded from files."""
    masks = {"class_path": "ris.pseudo.masks.GroundTruthMaskSource", "init_args": {"annotations": str(annotations)}}
    return [
        "--model.masks", json.dumps(masks),
        *model_args(zoo),
        "--data.source",
        json.dumps({"class_path": "ris.pseudo.images.ImageFolder", "init_args": {"root": str(images)}}),
        "--output.dir", str(out),
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.enable_progress_bar", "false",
        *FAST,
        *extra,
    ]


def model_args(zoo: TinyZoo) -> list[str]:
    return [
        "--model.captioner", "tiny-coca",
        "--model.captioner_pretrained", str(zoo.coca),
        "--model.captioner_tokenizer", str(zoo.vocab),
        "--model.scorer", "tiny-RN",
        "--model.scorer_pretrained", str(zoo.clip),
        "--model.scorer_tokenizer", str(zoo.vocab),
        *SHORT_DECODING,
    ]


def shard_lines(out: Path) -> list[dict]:
    """Every record line of every shard file in ``out``, parsed, sorted by sample id."""
    records = [json.loads(line) for path in sorted(out.glob("shard-*.jsonl")) for line in path.read_text().splitlines()]
    return sorted(records, key=lambda r: r["sample_id"])
