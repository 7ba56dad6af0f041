"""Evaluation over several named sets in one run: the :class:`Evaluator` callback owns the metrics of every set.

Every RIS model (trainable or zero-shot) returns its predicted masks from ``validation_step`` / ``test_step`` (bool
``(H_i, W_i)`` at each sample's original resolution, :meth:`ris.models.base.RISModule.predict_masks`); the
evaluator scores them against the batch's ground truth with one :class:`ris.metrics.RISMetrics` per set and logs
``{val,test}/{dataset}/{split}/{metric}`` (docs/data.md §4).

Set names come from the batch contract (``f"{dataset}/{split}"``, e.g. ``refcoco+/testA``) and, when the datamodule
declares them (:class:`ris.contracts.EvaluationSets`), from ``datamodule.eval_set_names(stage)``, so that every
process creates every metric: the collective sync under DDP needs it even when a process saw no batch of a set.

The evaluator also writes ``run.json`` into the run folder (the logger's ``log_dir``): what the model and the data
declare (:mod:`ris.contracts`) — the model class and its supervision, and how its weights were trained (the
training datamodule's label source and labelled fraction, ``init_from``). ``ris report`` classifies runs by it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from ris.atomic import atomic_write
from ris.batch import RISBatch
from ris.contracts import EvaluationSets, TrainingLabels
from ris.metrics import METRIC_KEYS, RISMetrics

LOG_PREFIX = {"validate": "val", "test": "test"}
"""Evaluation stage → the prefix of its logged metric keys."""
RUN_RECORD = "run.json"


def set_name(batch: RISBatch) -> str:
    """The evaluation-set name of a batch (all samples of a batch come from one set)."""
    return f"{batch.dataset[0]}/{batch.split[0]}"


def format_table(results: dict[str, dict[str, float]], title: str = "") -> str:
    """A Markdown table: one row per set, columns oIoU, mIoU, Prec@X in percent."""
    header = "| set | " + " | ".join(METRIC_KEYS) + " |"
    rule = "|---|" + "---:|" * len(METRIC_KEYS)
    rows = [
        f"| {name} | " + " | ".join(f"{100 * values[k]:.2f}" for k in METRIC_KEYS) + " |"
        for name, values in results.items()
    ]
    return "\n".join(([title, ""] if title else []) + [header, rule, *rows])


def training_record(datamodule: Any, init_from: str | None) -> dict[str, Any]:
    """How a model is being trained: the datamodule's class, label source and labelled fraction, ``init_from``."""
    record: dict[str, Any] = {"data": _class_path(datamodule), "init_from": init_from}
    if isinstance(datamodule, TrainingLabels):
        record["labels"] = datamodule.labels
        record["labeled_fraction"] = 0.0 if datamodule.labels == "pseudo" else float(datamodule.labeled_fraction)
    return record


def _class_path(obj: Any) -> str | None:
    return None if obj is None else f"{type(obj).__module__}.{type(obj).__qualname__}"


class Evaluator(Callback):
    """Scores the masks a model's ``validation_step`` / ``test_step`` return, per evaluation set (module docstring).

    Attributes:
        last_results: ``{set: {metric: fraction}}`` of the last finished evaluation epoch.
    """

    def __init__(self) -> None:
        self.metrics: dict[tuple[str, str], RISMetrics] = {}
        self.last_results: dict[str, dict[str, float]] = {}

    def _metric(self, stage: str, name: str, device: torch.device) -> RISMetrics:
        key = (stage, name)
        if key not in self.metrics:
            self.metrics[key] = RISMetrics()
        return self.metrics[key].to(device)

    def start(self, stage: str, names: Sequence[str], device: torch.device) -> None:
        """Create (and reset) the metrics of the declared sets of ``stage`` before an evaluation epoch."""
        for key in [k for k in self.metrics if k[0] == stage]:
            self.metrics[key].reset()
        for name in names:
            self._metric(stage, name, device).reset()

    def update(self, stage: str, batch: RISBatch, masks: Sequence[torch.Tensor], device: torch.device) -> None:
        """Score ``B`` bool masks ``(H_i, W_i)`` at original resolution against the batch's ground truth."""
        if batch.gt_masks is None:
            raise ValueError(f"{stage} batch from {set_name(batch)} carries no ground-truth masks")
        if masks is None or len(masks) != len(batch):
            raise TypeError(
                f"{stage}_step must return one bool mask per sample ({len(batch)}), got "
                f"{type(masks).__name__ if masks is None else len(masks)}"
            )
        self._metric(stage, set_name(batch), device).update([m.cpu() for m in masks], [g.cpu() for g in batch.gt_masks])

    def finish(self, module: LightningModule, stage: str) -> dict[str, dict[str, float]]:
        """Compute every set of ``stage`` (synced across processes), log it, print the test table, reset."""
        results: dict[str, dict[str, float]] = {}
        prefix = LOG_PREFIX[stage]
        for (metric_stage, name), metric in self.metrics.items():
            if metric_stage != stage:
                continue
            values = metric.compute()
            results[name] = {k: float(v) for k, v in values.items()}
            module.log_dict(
                {f"{prefix}/{name}/{k}": v for k, v in values.items()}, sync_dist=False, add_dataloader_idx=False
            )
            metric.reset()
        self.last_results = results
        if stage == "test" and results:
            rank_zero_info("\n" + format_table(results, "RIS metrics (percent)") + "\n")
        return results

    @staticmethod
    def _names(trainer: Trainer, stage: str) -> list[str]:
        datamodule = getattr(trainer, "datamodule", None)
        return datamodule.eval_set_names(stage) if isinstance(datamodule, EvaluationSets) else []

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.start("validate", self._names(trainer, "validate"), pl_module.device)

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: RISBatch, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.update("validate", batch, outputs, pl_module.device)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.finish(pl_module, "validate")

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.start("test", self._names(trainer, "test"), pl_module.device)

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: RISBatch, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.update("test", batch, outputs, pl_module.device)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.finish(pl_module, "test")

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # the model keeps this in its checkpoints, so a later `ris test --ckpt_path` knows how it was trained
        pl_module.training_record = training_record(trainer.datamodule, getattr(pl_module, "init_from", None))
        self.write_run_record(trainer, pl_module)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.write_run_record(trainer, pl_module)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "validate":
            self.write_run_record(trainer, pl_module)

    @staticmethod
    def run_record(trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """What this run's model declares and how its weights were trained (see the module docstring)."""
        return {
            "stage": str(trainer.state.fn),
            "model": _class_path(pl_module),
            "supervision": getattr(pl_module, "supervision", None),
            "data": _class_path(getattr(trainer, "datamodule", None)),
            "training": getattr(pl_module, "training_record", None),
            "ckpt_path": trainer.ckpt_path,
        }

    def write_run_record(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Write :func:`run_record` as ``run.json`` into the logger's run folder (rank zero; no logger, no file)."""
        if not trainer.is_global_zero or not trainer.loggers or trainer.log_dir is None:
            return
        record = self.run_record(trainer, pl_module)
        atomic_write(Path(trainer.log_dir) / RUN_RECORD, json.dumps(record, indent=1).encode("utf-8"))
