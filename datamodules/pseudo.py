"""Train any RIS model on Pseudo-RIS pseudo-labels: cached shards, or raw images generated on the fly.

:class:`PseudoRISDataModule` reads a shard folder written by ``ris generate`` (:mod:`ris.pseudo.shards`). Each
training sample is one mask of one image with **one caption drawn anew every time it is read** (docs/method.md §7.2,
:mod:`ris.pseudo.caption_choice`): uniformly among the captions with DoS > ``tau``; if none passes, by
``fallback`` (``any``: among all captions, the official behaviour; ``best``: the highest DoS); for single-mask images
among the top half by score. Empty captions are never drawn and masks whose captions are all empty are left out
(counted in ``dropped_records``). A bad record line (not JSON, a ``null`` caption, mismatched lists) is a bad sample
naming its file and line: under ``on_bad_sample: raise`` (default) it stops the setup, under ``skip`` it is left
out and reported like every other skipped sample. Samples are built like the RefCOCO training samples: the model's
network input, soft mask, tokens from the model's tokenizer (``word_length``).

Modes:

- **cached** (default): ``shards`` holds a finished generation (``manifest.json``).
- **on the fly**: with ``generate_config`` (a ``ris generate`` YAML), a missing or incomplete ``shards`` folder is
  generated first, in ``prepare_data`` on global rank 0, by running ``python -m ris generate --config
  <generate_config> --output.dir <shards> <generate_args...>`` as a child process (it resumes an interrupted
  generation). So ``ris fit --config configs/<model>_pseudo_<images>.yaml`` goes from raw images to a trained model
  in one command. Under multi-GPU training the other ranks wait at Lightning's barrier during generation (mind the
  distributed timeout); for large image sets run ``ris generate`` on all GPUs first.

Start-up verifies the shards against the manifest (sha256, size, line count; reads every shard once, without
parsing records; ``verify_shards: false`` skips it) and refuses to train on missing or damaged shards —
``damaged_shards: skip`` trains without them and logs which (``skipped_shards``) — then opens the record index
(:mod:`ris.pseudo.shards.index`, cached as ``index.npz`` beside the shards; built once, with a progress bar, when
missing or stale). Record counts come from the files, never from a manifest.

Readers: the map-style reader (default) reads records by offset and works with Lightning's ``DistributedSampler``;
``streaming: true`` uses :class:`ris.pseudo.shards.StreamingShardRecords` (shards split over ranks and workers, equal
sample counts per rank), e.g. for shards on object storage (any fsspec URL); ``litdata: DIR`` trains from the
LitData copy written by ``ris optimize`` (:mod:`ris.pseudo.shards.litdata_copy`: ``StreamingDataset`` and
``StreamingDataLoader``, local or ``s3://``/``gs://``, chunks split over ranks and workers by LitData, mid-epoch
resume through Lightning checkpoints); the JSON Lines shards are then read only to write a missing copy.

Evaluation sets come from ground-truth datasets (``val_sets`` / ``test_sets`` of
:class:`~ris.datamodules.base.RISDataModule`).
"""

from __future__ import annotations

import logging
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import fsspec
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ris.batch import RISSample, collate
from ris.contracts import InputSpec, LabelSource
from ris.formats.errors import BadSampleError
from ris.letterbox import letterbox_mask, network_input
from ris.pseudo.caption_choice import Fallback, choose_caption
from ris.pseudo.distinctiveness import DEFAULT_TAU
from ris.pseudo.records import PseudoRecord
from ris.pseudo.shards import MANIFEST, ShardIndex, ShardRecords, ShardSet, StreamingShardRecords
from ris.pseudo.shards.litdata_copy import (
    METADATA,
    epoch_loader,
    litdata_dataset,
    litdata_ready,
    optimize_shards,
    read_metadata,
)
from ris.tokenizer import Tokenizer, tokenize

from .bad_samples import handle, report
from .base import RISDataModule

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

    def image(self, record: PseudoRecord) -> torch.Tensor:
        """The record's image as ``(3, H, W)`` uint8 (embedded bytes or ``image_root / image``,
        :meth:`PseudoRecord.load_image`); a missing, undecodable or resized image raises a
        :class:`~ris.formats.errors.BadSampleError` naming the file and the record."""
        try:
            pixels = record.load_image(self.image_root)
        except (FileNotFoundError, ValueError) as err:
            path, sample = Path(self.image_root) / record.image, f"record {record.sample_id}"
            reason = str(err).removeprefix(f"{sample}: ").removeprefix(f"{path} ({sample}): ")
            raise BadSampleError(str(path), sample, reason) from err
        return torch.from_numpy(pixels).permute(2, 0, 1)

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
        damaged_shards: what to do with missing or damaged shards: ``error`` (refuse to train, the default) or
            ``skip`` (train on the others; they are logged and listed in ``skipped_shards``).
        verify_shards: check every shard's sha256, size and line count at start-up (reads each shard once).
        litdata: a LitData copy written by ``ris optimize`` (local folder, ``s3://…``, ``gs://…``) to train from
            instead of ``shards``; ``image_root`` defaults to the one it records. When it does not exist yet,
            ``prepare_data`` writes it from ``shards`` (generating those first with ``generate_config``).
        litdata_cache: LitData's local chunk cache for remote copies (default: LitData's).
        litdata_options: more ``litdata.StreamingDataset`` arguments (``storage_options``, ``max_cache_size``, ...).
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
        damaged_shards: Literal["error", "skip"] = "error",
        verify_shards: bool = True,
        litdata: str | None = None,
        litdata_cache: str | None = None,
        litdata_options: dict[str, Any] | None = None,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        name: str = "pseudo",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if fallback not in ("any", "best"):
            raise ValueError(f"fallback must be 'any' or 'best', got {fallback!r}")
        if damaged_shards not in ("error", "skip"):
            raise ValueError(f"damaged_shards must be 'error' or 'skip', got {damaged_shards!r}")
        self.shards = shards
        self.image_root = image_root
        self.tau = tau
        self.fallback: Fallback = fallback
        self.generate_config = generate_config
        self.generate_args = list(generate_args or [])
        self.streaming = streaming
        self.damaged_shards = damaged_shards
        self.verify_shards = verify_shards
        self.litdata = litdata
        self.litdata_cache = litdata_cache
        self.litdata_options = dict(litdata_options or {})
        self.skipped_shards: list[str] = []
        self._index: ShardIndex | None = None
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
        """Generate the shards when they are missing or incomplete (on-the-fly mode), then verify them and cache
        their record index (global rank 0, before the other processes open it). With ``litdata``: when the copy is
        not there yet, generate the shards if needed and write the copy (``ris optimize``)."""
        if self.litdata:
            if not litdata_ready(self.litdata):
                if self.generation_needed():
                    self._generate()
                optimize_shards(self.shards, self.litdata, skip_damaged=self.damaged_shards == "skip",
                                image_root=self.image_root)
            return
        if self.generation_needed():
            self._generate()
        self.open_index()

    def _generate(self) -> None:
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

    def open_index(self) -> ShardIndex:
        """Verify the shards (unless ``verify_shards`` is off), apply ``damaged_shards`` and open the record index
        of the usable ones (once per process)."""
        if self._index is not None:
            return self._index
        shards = ShardSet(self.shards, self.image_root)
        include = list(range(len(shards.files)))
        if self.verify_shards:
            problems = shards.problems(progress=True)
            for problem in problems.values():
                if not problem.damaged:
                    log.warning("%s/%s; the count is taken from the file", self.shards, problem)
            damaged = {i: p for i, p in problems.items() if p.damaged}
            if damaged and self.damaged_shards == "error":
                raise ValueError(
                    f"{self.shards}: {len(damaged)} missing or damaged shard(s): "
                    f"{'; '.join(str(p) for p in damaged.values())}. Rerun `ris generate` with the same config and "
                    f"--output.dir {self.shards} to generate them again, or set data.damaged_shards: skip to train "
                    "without them"
                )
            if damaged:
                self.skipped_shards = [p.file for p in damaged.values()]
                log.warning("%s: training without %d missing or damaged shard(s): %s", self.shards, len(damaged),
                            "; ".join(str(p) for p in damaged.values()))
                include = [i for i in include if i not in damaged]
        self._index = ShardIndex.open(shards, include)
        return self._index

    def build_train_dataset(self, tokenizer: Tokenizer, spec: InputSpec) -> Dataset:
        if self.litdata:
            return self._litdata_dataset(tokenizer, spec)
        index = self.open_index()
        build = PseudoSampleBuilder(index.shards.image_root, tokenizer, spec, self.word_length, self.tau,
                                    self.fallback, self.name)
        context = f"{self.name} (train)"
        bad = [(error, 1) for error in index.bad_records()]
        self._skipped[context] = handle(bad, self.on_bad_sample, f"{self.name}/train")
        report(self._skipped[context], context)
        if self.streaming:
            records = StreamingShardRecords(index, self.num_workers, shuffle=True, seed=self.seed,
                                            buffer_size=self.shuffle_buffer)
            return StreamingPseudoRISDataset(records, build)
        records = ShardRecords(index)
        self.dropped_records = records.dropped
        if self.dropped_records:
            log.warning("%s: %d records without a usable caption left out", self.shards, self.dropped_records)
        if len(records) == 0:
            raise ValueError(f"{self.shards}: no record with a usable caption")
        return PseudoRISDataset(records, build)

    def _litdata_dataset(self, tokenizer: Tokenizer, spec: InputSpec) -> Dataset:
        metadata = read_metadata(self.litdata)
        image_root = self.image_root or (metadata or {}).get("image_root")
        if image_root is None:
            raise ValueError(f"{self.litdata}: its {METADATA} cannot be read; set data.image_root")
        build = PseudoSampleBuilder(image_root, tokenizer, spec, self.word_length, self.tau, self.fallback, self.name)
        return litdata_dataset(self.litdata, build, shuffle=True, seed=self.seed, cache_dir=self.litdata_cache,
                               options=self.litdata_options)

    def train_dataloader(self) -> DataLoader:
        if self.litdata:
            return epoch_loader(self.train_dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                                collate_fn=collate, persistent_workers=self.num_workers > 0)
        if not isinstance(self.train_dataset, IterableDataset):
            return super().train_dataloader()
        return DataLoader(
            self.train_dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
        )
