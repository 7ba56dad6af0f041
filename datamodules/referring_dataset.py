"""The dataset shared by every referring format: items (an image region and its expressions) → :class:`RISSample`.

Format readers (:mod:`ris.formats.refer`, :mod:`ris.formats.phrasecut`) produce
:class:`~ris.formats.items.ReferringItem` lists; this module turns them into samples with the CRIS letterbox:

- **train** (``gt_mask=None``): ``train_unit="ref"`` gives one sample per item (region) per epoch with one random
  expression (the CRIS convention); ``train_unit="sentence"`` gives one sample per expression.
- **evaluation**: one sample per expression, with the bool ground truth at original resolution.

``sample_id`` is the item's id (RefCOCO ``ref_id``, PhraseCut ``task_id``); ``(sample_id, sent_id)`` identifies an
evaluation sample (the sentences of a ref share its ``ref_id``).

The image becomes the model's network input (:class:`ris.contracts.InputSpec`: the CRIS letterbox, or a plain
resize); the mask goes through the same matrix with linear interpolation (soft at the edges), and the matrix travels
in the sample so predictions are scored at original resolution.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ris.batch import RISSample
from ris.contracts import InputSpec
from ris.formats.errors import BadSampleError
from ris.formats.files import load_rgb
from ris.formats.items import ReferringItem
from ris.letterbox import letterbox_mask, network_input
from ris.tokenizer import Tokenizer, tokenize

TrainUnit = Literal["ref", "sentence"]


def read_rgb(path: Path, sample: str) -> torch.Tensor:
    """Read an image file as a ``(3, H, W)`` uint8 RGB tensor (grayscale, palette and RGBA are converted)."""
    try:
        rgb = load_rgb(path)
    except FileNotFoundError as err:
        raise BadSampleError(str(path), sample, "image file not found") from err
    except ValueError as err:
        raise BadSampleError(str(path), sample, f"unreadable or truncated image ({err.__cause__})") from err
    return torch.from_numpy(rgb).permute(2, 0, 1)


def load_image_and_mask(item: ReferringItem) -> tuple[torch.Tensor, np.ndarray]:
    """The item's ``(3, H, W)`` uint8 image and ``(H, W)`` bool mask; raises :class:`BadSampleError` on bad input."""
    image = read_rgb(item.image_path, item.name)
    height, width = image.shape[1:]
    if item.expected_size is not None and tuple(item.expected_size) != (height, width):
        declared = "x".join(str(v) for v in item.expected_size)
        raise BadSampleError(
            str(item.image_path), item.name, f"image is {height}x{width} (HxW) but {item.source} declares {declared}"
        )
    mask = item.region.rasterise(height, width)
    if not mask.any():
        raise BadSampleError(item.source, item.name, "the annotation rasterises to an empty mask")
    return image, mask


def verify_items(items: list[ReferringItem]) -> tuple[list[ReferringItem], list[tuple[BadSampleError, int]]]:
    """Load every image once and every mask, keeping the items that load (used before skipping bad samples)."""
    good, errors = [], []
    broken_images: dict[Path, BadSampleError] = {}
    for item in items:
        if item.image_path in broken_images:
            failure = broken_images[item.image_path]
            errors.append((BadSampleError(failure.source, item.name, failure.reason), len(item.sentences)))
            continue
        try:
            load_image_and_mask(item)
        except BadSampleError as err:
            if err.source == str(item.image_path):
                broken_images[item.image_path] = err
            errors.append((err, len(item.sentences)))
            continue
        good.append(item)
    return good, errors


def merge_regions(items: list[ReferringItem]) -> list[ReferringItem]:
    """Merge items with the same ``region_key`` (their expressions are pooled; the first item's ids are kept)."""
    merged: dict[Hashable, ReferringItem] = {}
    for item in items:
        key = item.region_key if item.region_key is not None else id(item)
        if key in merged:
            merged[key].sentences.extend(item.sentences)
        else:
            merged[key] = replace(item, sentences=list(item.sentences))
    return list(merged.values())


class ReferringDataset(Dataset):
    """Samples of one set (``dataset``/``split``) from :class:`ReferringItem` records (see the module docstring)."""

    def __init__(
        self,
        items: list[ReferringItem],
        *,
        dataset: str,
        split: str,
        tokenizer: Tokenizer,
        input_spec: InputSpec,
        word_length: int,
        train: bool,
        train_unit: TrainUnit = "ref",
    ) -> None:
        if train_unit not in ("ref", "sentence"):
            raise ValueError(f"train_unit must be 'ref' or 'sentence', got {train_unit!r}")
        self.items = items
        self.dataset, self.split = dataset, split
        self.tokenizer = tokenizer
        self.input_spec, self.word_length = input_spec, word_length
        self.train = train
        per_item = train and train_unit == "ref"
        self.index: list[tuple[int, int | None]] = [
            (i, None) if per_item else (i, k)
            for i, item in enumerate(items)
            for k in ([None] if per_item else range(len(item.sentences)))
        ]

    def __len__(self) -> int:
        return len(self.index)

    @property
    def image_ids(self) -> list[int]:
        """Sorted unique image ids of the set."""
        return sorted({item.image_id for item in self.items})

    def __getitem__(self, index: int) -> RISSample:
        item_index, sent_index = self.index[index]
        item = self.items[item_index]
        if sent_index is None:
            sent_index = int(torch.randint(len(item.sentences), (1,)).item())
        sentence = item.sentences[sent_index]
        image, mask = load_image_and_mask(item)
        pixels, matrix = network_input(image, self.input_spec)
        gt = torch.from_numpy(mask)
        return RISSample(
            image=pixels,
            mask=letterbox_mask(gt, matrix, self.input_spec.size),
            text=sentence.text,
            tokens=tokenize(self.tokenizer, [sentence.text], self.word_length)[0],
            orig_size=(int(image.shape[1]), int(image.shape[2])),
            affine=matrix,
            gt_mask=None if self.train else gt,
            dataset=self.dataset,
            split=self.split,
            sample_id=item.sample_id,
            sent_id=sentence.sent_id,
            image_id=str(item.image_id),
        )
