"""Joint (semi-supervised) training on pseudo-labels and human labels with a fixed mixing ratio in every batch.

:class:`JointDataModule` wraps a :class:`~ris.datamodules.pseudo.PseudoRISDataModule` (the pseudo-labels) and any
labelled :class:`~ris.datamodules.base.RISDataModule` (e.g. RefCOCO), of which only the images selected by this
datamodule's ``labeled_fraction`` / ``labeled_seed`` are used (:mod:`ris.datamodules.labeled`). Each training
batch holds exactly ``n_l = round(labeled_ratio · batch_size)`` labelled samples followed by ``batch_size − n_l``
pseudo-labelled ones (:class:`JointSampler`). An epoch has ``batches_per_epoch`` batches, by default enough for one
pass over the larger source at its share; both sources are read in a fresh random order on every pass (the smaller
one cycles). The order depends only on ``seed`` and the epoch, so a run is reproducible by its seed.

Evaluation uses the labelled datamodule's sets (its own and its ``val_sets`` / ``test_sets``), then this
datamodule's ``val_sets`` / ``test_sets``, built with the model's input (:class:`ris.contracts.InputSpec`) and this
datamodule's ``word_length`` and ``eval_batch_size``. Both inner datamodules must use the same ``word_length`` as
this one (or leave them unset).

Under ``torch.distributed`` every rank takes every ``world_size``-th batch of the same epoch plan (trailing batches
that not every rank would get are dropped), so each rank's batches keep the ratio.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler, IterableDataset

from ris.batch import collate
from ris.contracts import InputSpec, LabelSource
from ris.tokenizer import Tokenizer

from .base import RISDataModule
from .pseudo import PseudoRISDataModule
from .sets import ReferringSet


class JointSampler(DistributedSampler):
    """Flat indices into ``ConcatDataset([pseudo, labeled])`` whose consecutive blocks of ``batch_size`` are batches.

    Each block is ``labeled_per_batch`` labelled indices (offset by ``num_pseudo``) then pseudo indices. It is a
    :class:`~torch.utils.data.DistributedSampler` so that Lightning keeps it under DDP and calls :meth:`set_epoch`.

    Args:
        num_pseudo, num_labeled: sizes of the two datasets.
        batch_size: samples per batch (per process).
        labeled_per_batch: labelled samples per batch, ``1 ≤ n_l < batch_size``.
        batches_per_epoch: batches of one epoch over all processes (default: one pass over the larger source).
        seed: seed of the order (combined with the epoch).
        num_replicas, rank: the process group (default: from ``torch.distributed`` when initialised, else 1, 0).
    """

    def __init__(
        self,
        num_pseudo: int,
        num_labeled: int,
        batch_size: int,
        labeled_per_batch: int,
        batches_per_epoch: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if not 1 <= labeled_per_batch < batch_size:
            raise ValueError(
                f"labelled samples per batch must be in [1, batch_size - 1] = [1, {batch_size - 1}], got "
                f"{labeled_per_batch}; change labeled_ratio or batch_size"
            )
        if num_pseudo < 1 or num_labeled < 1:
            raise ValueError(f"both sources need samples, got {num_pseudo} pseudo and {num_labeled} labelled")
        if num_replicas is None or rank is None:
            distributed = dist.is_available() and dist.is_initialized()
            num_replicas = dist.get_world_size() if distributed else 1
            rank = dist.get_rank() if distributed else 0
        super().__init__(range(num_pseudo + num_labeled), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.num_pseudo, self.num_labeled = num_pseudo, num_labeled
        self.batch_size = batch_size
        self.labeled_per_batch = labeled_per_batch
        pseudo_per_batch = batch_size - labeled_per_batch
        default = max(math.ceil(num_pseudo / pseudo_per_batch), math.ceil(num_labeled / labeled_per_batch))
        total = batches_per_epoch if batches_per_epoch is not None else default
        if total < num_replicas:
            raise ValueError(f"batches_per_epoch={total} gives no batch to some of the {num_replicas} processes")
        self.batches_per_rank = total // num_replicas

    @staticmethod
    def _stream(count: int, generator: torch.Generator) -> Iterator[int]:
        """Endless indices ``0..count-1``, a fresh permutation per pass."""
        while True:
            yield from torch.randperm(count, generator=generator).tolist()

    def plan(self) -> list[list[int]]:
        """Every batch of the current epoch (all processes), as lists of flat indices."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        labeled = self._stream(self.num_labeled, generator)
        pseudo = self._stream(self.num_pseudo, generator)
        pseudo_per_batch = self.batch_size - self.labeled_per_batch
        return [
            [self.num_pseudo + next(labeled) for _ in range(self.labeled_per_batch)]
            + [next(pseudo) for _ in range(pseudo_per_batch)]
            for _ in range(self.batches_per_rank * self.num_replicas)
        ]

    def __iter__(self) -> Iterator[int]:
        for batch in self.plan()[self.rank :: self.num_replicas]:
            yield from batch

    def __len__(self) -> int:
        return self.batches_per_rank * self.batch_size


class JointDataModule(RISDataModule):
    """Pseudo-labels + human labels in every batch (see the module docstring).

    Args:
        pseudo: the pseudo-label datamodule (its training set is used; map-style shards only).
        labeled: the labelled datamodule (its training set and its evaluation sets). This datamodule's
            ``labeled_fraction`` and ``labeled_seed`` select its labelled images (so one overlay config sets the
            fraction for supervised, fine-tuned and joint runs alike).
        labeled_ratio: fraction of every batch taken from the labelled set, in (0, 1).
        batches_per_epoch: batches per epoch (default: one pass over the larger source at its share).
        seed: seed of the batch composition.
        **kwargs: see :class:`~ris.datamodules.base.RISDataModule` (``batch_size``, ``input_size``, ``word_length``,
            ``val_sets``, ``test_sets``, ...).
    """

    labels: LabelSource = "joint"

    def __init__(
        self,
        pseudo: PseudoRISDataModule,
        labeled: RISDataModule,
        labeled_ratio: float = 0.5,
        batches_per_epoch: int | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 < labeled_ratio < 1.0:
            raise ValueError(f"labeled_ratio must be in (0, 1), got {labeled_ratio}")
        for name, inner in (("pseudo", pseudo), ("labeled", labeled)):
            for field in ("input_size", "word_length"):
                if getattr(inner, field) not in (None, getattr(self, field)):
                    raise ValueError(
                        f"JointDataModule: {name}.{field} = {getattr(inner, field)} differs from the joint "
                        f"datamodule's {field} = {getattr(self, field)}; set it on the joint datamodule only"
                    )
        if labeled.labeled_fraction not in (1.0, self.labeled_fraction):
            raise ValueError(
                f"JointDataModule: set labeled_fraction on the joint datamodule ({self.labeled_fraction}), not on "
                f"labeled ({labeled.labeled_fraction})"
            )
        labeled.labeled_fraction, labeled.labeled_seed = self.labeled_fraction, self.labeled_seed
        self.pseudo = pseudo
        self.labeled = labeled
        self.labeled_ratio = labeled_ratio
        self.labeled_per_batch = round(labeled_ratio * self.batch_size)
        self.batches_per_epoch = batches_per_epoch
        self.seed = seed
        self.num_pseudo = 0
        self.num_labeled = 0

    def prepare_data(self) -> None:
        """Generate missing pseudo-label shards (on-the-fly mode of the pseudo datamodule)."""
        self.pseudo.prepare_data()

    def own_sets(self, stage: str) -> list[ReferringSet]:
        return self.labeled.eval_sets(stage)

    def build_train_dataset(self, tokenizer: Tokenizer, spec: InputSpec) -> Dataset:
        pseudo = self.pseudo.build_train_dataset(tokenizer, spec)
        labeled = self.labeled.build_train_dataset(tokenizer, spec)
        if isinstance(pseudo, IterableDataset) or isinstance(labeled, IterableDataset):
            raise TypeError("JointDataModule needs map-style datasets; set pseudo.streaming to false")
        self.labeled_image_ids = self.labeled.labeled_image_ids
        self.num_pseudo, self.num_labeled = len(pseudo), len(labeled)
        return ConcatDataset([pseudo, labeled])

    def sampler(self) -> JointSampler:
        """The training sampler for the current datasets."""
        return JointSampler(
            self.num_pseudo, self.num_labeled, self.batch_size, self.labeled_per_batch, self.batches_per_epoch,
            self.seed,
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise RuntimeError("JointDataModule.setup('fit') has not built the training set")
        return DataLoader(
            self.train_dataset,
            batch_size=self.batch_size,
            sampler=self.sampler(),
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
        )
