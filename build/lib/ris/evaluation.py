"""Evaluation over several named sets in one run: one :class:`RISMetrics` per set, per-set log keys, one table.

Set names come from the batch contract (``f"{dataset}/{split}"``, e.g. ``refcoco+/testA``) and, when the datamodule
declares them, from ``datamodule.eval_set_names(stage)`` so that every process creates every metric (needed for
the collective sync under DDP even when a process saw no batch of a set).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from ris.batch import RISBatch
from ris.metrics import METRIC_KEYS, RISMetrics, logits_to_masks


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


class MultiSetEvaluator(nn.Module):
    """Holds one :class:`RISMetrics` per evaluation set and logs ``{stage}/{set}/{metric}``."""

    def __init__(self, threshold: float = 0.35) -> None:
        super().__init__()
        self.threshold = threshold
        self.metrics = nn.ModuleDict()
        self.names: dict[str, tuple[str, str]] = {}  # ModuleDict key -> (stage, set name)
        self.last_results: dict[str, dict[str, float]] = {}

    def _metric(self, stage: str, name: str, device: torch.device) -> RISMetrics:
        key = f"{stage}|{name}".replace(".", "_")  # ModuleDict keys may not contain dots
        if key not in self.metrics:
            self.metrics[key] = RISMetrics().to(device)
            self.names[key] = (stage, name)
        return self.metrics[key]

    def start(self, stage: str, names: Sequence[str], device: torch.device) -> None:
        """Create (and reset) the metrics of the declared sets before an evaluation epoch."""
        for name in names:
            self._metric(stage, name, device).reset()

    def update(self, stage: str, batch: RISBatch, logits: torch.Tensor, input_size: int | None = None) -> None:
        """Score ``logits`` ``(B, 1, h, w)`` against the batch's original-resolution GT masks."""
        if batch.gt_masks is None:
            raise ValueError(f"{stage} batch from {set_name(batch)} carries no ground-truth masks")
        preds = logits_to_masks(logits, batch.affine, batch.orig_size, input_size, self.threshold)
        self.update_masks(stage, batch, preds, logits.device)

    def update_masks(
        self, stage: str, batch: RISBatch, masks: Sequence[torch.Tensor], device: torch.device | str = "cpu"
    ) -> None:
        """Score ``B`` bool masks already at original resolution (``(H_i, W_i)`` each), e.g. chosen proposals."""
        if batch.gt_masks is None:
            raise ValueError(f"{stage} batch from {set_name(batch)} carries no ground-truth masks")
        self._metric(stage, set_name(batch), torch.device(device)).update(
            [m.cpu() for m in masks], [g.cpu() for g in batch.gt_masks]
        )

    def log_and_reset(self, module: LightningModule, stage: str) -> dict[str, dict[str, float]]:
        """Compute every set of ``stage`` (synced across processes), log it, print the test table, reset."""
        results: dict[str, dict[str, float]] = {}
        for key, metric in self.metrics.items():
            metric_stage, name = self.names[key]
            if metric_stage != stage:
                continue
            values = metric.compute()
            results[name] = {k: float(v) for k, v in values.items()}
            module.log_dict(
                {f"{stage}/{name}/{k}": v for k, v in values.items()}, sync_dist=False, add_dataloader_idx=False
            )
            metric.reset()
        self.last_results = results
        if stage == "test" and results:
            rank_zero_info("\n" + format_table(results, "RIS metrics (percent)") + "\n")
        return results
