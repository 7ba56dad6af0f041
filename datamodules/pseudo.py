"""Train any RIS model on Pseudo-RIS pseudo-labels: cached shards, or raw images generated on the fly.

:class:`PseudoRISDataModule` reads a shard folder written by ``ris generate`` (:mod:`ris.pseudo.shards`). Each
training sample is one mask of one image with **one caption drawn anew every time it is read** (method.md §7.2,
:mod:`ris.pseudo.caption_choice`): uniformly among the captions with DoS > ``tau``; if none passes, by
``fallback`` (``any``: among all captions, the official behaviour; ``best``: the highest DoS); for single-mask images
among the top half by score. Empty captions are never drawn and masks whose captions are all empty are left out
(counted in ``dropped_records``). Samples are built like the RefCOCO training samples: the model's network input,
soft mask, tokens from the model's tokenizer (``word_length``).

Modes:

- **cached** (default): ``shards`` holds a finished generation (``manifest.json``).
- **on the fly**: with ``generate_config`` (a ``ris generate`` YAML), a missing or incomplete ``shards`` folder is
  generated first, in ``prepare_data`` on global rank 0, by running ``python -m ris generate --config
  <generate_config> --output.dir <shards> <generate_args...>`` as a child process (it resumes an interrupted
  generation). So ``ris fit --config configs/<model>_pseudo_<images>.yaml`` goes from raw images to a trained model
  in one command. Under multi-GPU training the other ranks wait at Lightning's barrier during generation (mind the
  distributed timeout); for large image sets run ``ris generate`` on all GPUs first.

Readers: the map-style reader (default) indexes record offsets and works with Lightning's ``DistributedSampler``;
``streaming: true`` uses :class:`ris.pseudo.shards.StreamingShardRecords` (shards split over ranks and workers, equal
sample counts per rank), e.g. for shards on object storage (any fsspec URL).

Evaluation sets come from ground-truth datasets (``val_sets`` / ``test_sets`` of
:class:`~ris.datamodules.base.RISDataModule`).
"""

from __future__ import annotations

import io
import logging
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ris.batch import RISSample, collate
from ris.contracts import InputSpec, LabelSource
from ris.letterbox import letterbox_mask, network_input
from ris.pseudo.caption_choice import Fallback, choose_caption, eligible_captions
from ris.pseudo.distinctiveness import DEFAULT_TAU
from ris.pseudo.records import PseudoRecord
from ris.pseudo.shards import MANIFEST, ShardRecords, ShardSet, StreamingShardRecords
from ris.tokenizer import Tokenizer, tokenize

from .base import RISDataModule
from .referring_dataset import read_rgb

log = logging.getLogger(__name__)


class PseudoSampleBuilder:
    """Turns a :class:`PseudoRecord` into a training :class:`RISSample` (one freshly drawn caption)."""

    def __init__(
        self,
        image_root: str,
        tokenizer: Tokenizer,
        input_spec: InputSpec,
        word_length: int,
        tau: float,
        fallback: Fallback,
        dataset: str,
    ) -> None:
        self.image_root = image_root
        self.tokenizer = tokenizer
        self.input_spec = input_spec
        self.word_length = word_length
        self.tau = tau
        self.fallback: Fallback = fallback
        self.dataset = dataset

    def usable(self, record: PseudoRecord) -> bool:
        """Whether the record has a caption to draw (not all empty)."""
        return bool(eligible_captions(record, self.tau, self.fallback))

    def image(self, record: PseudoRecord) -> torch.Tensor:
        """The record's image as ``(3, H, W)`` uint8 (embedded bytes or ``image_root / image``)."""
        data = record.decode_image_bytes()
        if data is None:
            image = read_rgb(Path(self.image_root) / record.image, f"record {record.sample_id}")
        else:
            with Image.open(io.BytesIO(data)) as pil:
                image = torch.from_numpy(np.array(pil.convert("RGB"))).permute(2, 0, 1)
        if tuple(image.shape[1:]) != (record.height, record.width):
            raise ValueError(
                f"record {record.sample_id}: image {record.image} is {image.shape[1]}x{image.shape[2]} (HxW), the "
                f"record's mask is {record.height}x{record.width}"
            )
        return image

    def __call__(self, record: PseudoRecord) -> RISSample:
        rng = random.Random(int(torch.randint(0, 2**62, ()).item()))
        index = choose_caption(record, self.tau, rng, self.fallback)
        if index is None:
            raise ValueError(f"record {record.sample_id}: every caption is empty")
        text = record.captions[index].strip()
        image = self.image(record)
        pixels, matrix = network_input(image, self.input_spec)
        mask = torch.from_numpy(record.decode_mask())
        return RISSample(
            image=pixels,
            mask=letterbox_mask(mask, matrix, self.input_spec.size),
            text=text,
            tokens=tokenize(self.tokenizer, [text], self.word_length)[0],
            orig_size=(record.height, record.width),
            affine=matrix,
            dataset=self.dataset,
            split="train",
            sample_id=record.sample_id,
            sent_id=index,
        )


class PseudoRISDataset(Dataset):
    """Map-style training samples over a :class:`ShardRecords` index."""

    def __init__(self, records: ShardRecords, build: PseudoSampleBuilder) -> None:
        self.records = records
        self.build = build

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> RISSample:
        return self.build(self.records[index])


class StreamingPseudoRISDataset(IterableDataset):
    """Streaming training samples over :class:`StreamingShardRecords`."""

    def __init__(self, records: StreamingShardRecords, build: PseudoSampleBuilder) -> None:
        self.records = records
        self.build = build

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[RISSample]:
        for record in self.records:
            yield self.build(record)


class PseudoRISDataModule(RISDataModule):
    """Pseudo-label training data from shards (see the module docstring).

    Args:
        shards: the shard folder (local path or fsspec URL) written by ``ris generate``.
        image_root: root of the records' relative image paths (default: the manifest's).
        tau: DoS threshold of the caption draw (strict, default ``DEFAULT_TAU`` = 1.3).
        fallback: caption draw when no caption passes τ: ``any`` or ``best``.
        generate_config: a ``ris generate`` config; enables generating missing shards (on-the-fly mode).
        generate_args: extra ``ris generate`` arguments (e.g. ``["--trainer.accelerator", "cpu"]``).
        streaming: stream shards (split by rank and worker) instead of the map-style index.
        shuffle_buffer: records in the streaming shuffle window.
        seed: seed of the streaming shard shuffle.
        name: dataset label of the training samples.
        **kwargs: see :class:`~ris.datamodules.base.RISDataModule` (``val_sets``, ``test_sets``, ``input_size``,
            ``word_length``, ``batch_size``, ...).
    """

    labels: LabelSource = "pseudo"

    def __init__(
        self,
        shards: str = "pseudo_labels",
        image_root: str | None = None,
        tau: float = DEFAULT_TAU,
        fallback: Fallback = "any",
        generate_config: str | None = None,
        generate_args: list[str] | None = None,
        streaming: bool = False,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        name: str = "pseudo",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if fallback not in ("any", "best"):
            raise ValueError(f"fallback must be 'any' or 'best', got {fallback!r}")
        self.shards = shards
        self.image_root = image_root
        self.tau = tau
        self.fallback: Fallback = fallback
        self.generate_config = generate_config
        self.generate_args = list(generate_args or [])
        self.streaming = streaming
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.name = name
        self.dropped_records = 0
        self.prepare_data_per_node = False

    def generation_needed(self) -> bool:
        """True when the shard folder has no ``manifest.json`` or it marks the generation as incomplete."""
        fs, path = fsspec.core.url_to_fs(self.shards)
        manifest = f"{path.rstrip('/')}/{MANIFEST}"
        if not fs.exists(manifest):
            return True
        return not ShardSet(self.shards).manifest.get("complete", True)

    def generate_command(self) -> list[str]:
        """The child-process command that generates the shards."""
        if self.generate_config is None:
            raise ValueError("no generate_config: cannot generate shards")
        return [sys.executable, "-m", "ris", "generate", "--config", self.generate_config, "--output.dir",
                self.shards, *self.generate_args]

    def prepare_data(self) -> None:
        """On-the-fly mode: generate the shards when they are missing or incomplete."""
        if not self.generation_needed():
            return
        if self.generate_config is None:
            raise FileNotFoundError(
                f"{self.shards}: no finished pseudo-label shards ({MANIFEST} missing or incomplete); run "
                f"`ris generate --config ... --output.dir {self.shards}` or set data.generate_config"
            )
        command = self.generate_command()
        log.info("generating pseudo-labels: %s", " ".join(command))
        result = subprocess.run(command, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"pseudo-label generation failed (exit code {result.returncode}): {' '.join(command)}")

    def build_train_dataset(self, tokenizer: Tokenizer, spec: InputSpec) -> Dataset:
        shards = ShardSet(self.shards, self.image_root)
        build = PseudoSampleBuilder(shards.image_root, tokenizer, spec, self.word_length, self.tau, self.fallback,
                                    self.name)
        if self.streaming:
            records = StreamingShardRecords(shards, self.num_workers, shuffle=True, seed=self.seed,
                                            buffer_size=self.shuffle_buffer, keep=build.usable)
            return StreamingPseudoRISDataset(records, build)
        index = ShardRecords(shards, keep=build.usable)
        self.dropped_records = index.dropped
        if self.dropped_records:
            log.warning("%s: %d records without a usable caption left out", self.shards, self.dropped_records)
        if len(index) == 0:
            raise ValueError(f"{self.shards}: no record with a usable caption")
        return PseudoRISDataset(index, build)

    def train_dataloader(self) -> DataLoader:
        if not isinstance(self.train_dataset, IterableDataset):
            return super().train_dataloader()
        return DataLoader(
            self.train_dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
        )
