"""The Lightning callback of ``ris generate``: each process's per-image results go to its :class:`ShardWriter`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter

from ris.pseudo.generator import PseudoRISGenerator
from ris.pseudo.images import GenerationImages

from .stats import ImageResult
from .writer import ShardWriter


class ShardPredictionWriter(BasePredictionWriter):
    """Writes the generator's per-image results of this process into shards (:class:`ShardWriter`).

    Args:
        dir: the shard folder (created; reused for resume).
        images_per_shard: images per shard file; a killed run loses at most this many images per process.
        report_images: images shown in the picture report written at the end (0 = no report).
    """

    def __init__(self, dir: str = "pseudo_labels", images_per_shard: int = 1000, report_images: int = 8) -> None:
        super().__init__(write_interval="batch")
        self.dir = dir
        self.images_per_shard = images_per_shard
        self.report_images = report_images
        self.writer: ShardWriter | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Open this process's writer (checks the folder's provenance, removes its unfinished files)."""
        if not isinstance(pl_module, PseudoRISGenerator):
            raise TypeError(f"ShardPredictionWriter needs a PseudoRISGenerator, got {type(pl_module).__name__}")
        datamodule = trainer.datamodule
        image_root = str(datamodule.source.root) if isinstance(datamodule, GenerationImages) else ""
        self.writer = ShardWriter(
            self.dir, trainer.global_rank, pl_module.provenance(), self.images_per_shard, pl_module.tau, image_root
        )

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: list[ImageResult],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.writer is None:
            raise RuntimeError("ShardPredictionWriter.setup() has not run")
        for result in prediction:
            self.writer.add(result)

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.writer is not None:
            self.writer.flush()
