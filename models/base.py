"""The shared RIS LightningModule: loss, evaluation, prediction, optimizer recipe and weight initialisation.

A concrete model supplies ``self.backbone`` (a :class:`ris.models.backbones.VisionLanguageBackbone`), ``forward(image,
tokens) -> logits (B, 1, h, w)`` and :meth:`RISModel.param_groups`; everything else lives here:

- training: BCE-with-logits against the batch's soft mask resized to the logit resolution with ``nearest`` (CRIS);
- validation/test: logits → original-resolution masks (:func:`ris.metrics.logits_to_masks`) scored per evaluation
  set by :class:`ris.evaluation.MultiSetEvaluator`, logged as ``{val,test}/{dataset}/{split}/{metric}``;
- predict: one bool ``(H_i, W_i)`` mask per sample at original resolution;
- optimizer: two groups (head ``lr``, backbone ``lr * backbone_lr_mult``), schedule per epoch
  (:mod:`ris.models.lr_schedule`);
- ``init_from``: weights only from a checkpoint (no optimizer, scheduler or epoch state) when a fit starts fresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from ris.batch import RISBatch
from ris.evaluation import MultiSetEvaluator
from ris.metrics import logits_to_masks
from ris.tokenizer import Tokenizer

from .backbones import VisionLanguageBackbone
from .lr_schedule import Schedule, build_optimizer
from .official_checkpoints import (
    checkpoint_state_dict,
    is_official_state_dict,
    map_official_state_dict,
    read_checkpoint,
)

EVAL_STAGES = {"val": "validate", "test": "test"}


def count_parameters(module: nn.Module, trainable: bool | None = None) -> int:
    """Number of parameters of ``module`` (only trainable / only frozen ones when ``trainable`` is given)."""
    return sum(p.numel() for p in module.parameters() if trainable is None or p.requires_grad == trainable)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The model weights of a Lightning checkpoint (``state_dict`` entry), an official CRIS/ETRIS checkpoint or a
    plain state-dict file (loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"init_from checkpoint not found: {path}")
    return checkpoint_state_dict(read_checkpoint(path), path)


class RISModel(LightningModule):
    """Base class of the RIS models (see the module docstring).

    Args:
        lr: learning rate of the head group.
        backbone_lr_mult: the backbone group's lr is ``lr * backbone_lr_mult``.
        optimizer: a ``torch.optim`` class name or import path; its lr is set per group from ``lr``.
        optimizer_kwargs: extra optimizer arguments (``weight_decay``, ``betas``, ...).
        lr_schedule: ``"multistep"`` (× ``gamma`` at each epoch in ``milestones``), ``"cosine"`` (over
            ``trainer.max_epochs``) or ``"constant"``; stepped once per epoch.
        milestones, gamma: the multistep schedule (0-based epochs).
        full_backbone_lr_first_epoch: CRIS's quirk, the backbone group runs at ``lr`` during epoch 0.
        threshold: probability threshold of the predicted masks.
        init_from: a checkpoint whose weights (only) initialise the model when training starts without
            ``ckpt_path`` (pseudo-pretrain → fine-tune).
    """

    backbone: VisionLanguageBackbone

    def __init__(
        self,
        lr: float = 1e-4,
        backbone_lr_mult: float = 0.1,
        optimizer: str = "Adam",
        optimizer_kwargs: dict | None = None,
        lr_schedule: Schedule = "multistep",
        milestones: Sequence[int] = (35,),
        gamma: float = 0.1,
        full_backbone_lr_first_epoch: bool = False,
        threshold: float = 0.35,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        self.lr = lr
        self.backbone_lr_mult = backbone_lr_mult
        self.optimizer_name = optimizer
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        self.lr_schedule = lr_schedule
        self.milestones = tuple(milestones)
        self.gamma = gamma
        self.full_backbone_lr_first_epoch = full_backbone_lr_first_epoch
        self.init_from = init_from
        self.evaluator = MultiSetEvaluator(threshold)
        self._initialised_from: str | None = None

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer of the backbone's text tower (datamodules tokenize with it)."""
        return self.backbone.tokenizer

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """``(head, backbone)`` parameter lists for the two optimizer groups."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """BCE-with-logits of ``logits`` ``(B, 1, h, w)`` against ``mask`` ``(B, 1, S, S)`` nearest-resized to
        ``(h, w)`` (for ``S = 4h``: the top-left pixel of each 4×4 block, as CRIS)."""
        if mask.shape[-2:] != logits.shape[-2:]:
            mask = F.interpolate(mask.float(), size=logits.shape[-2:], mode="nearest")
        return F.binary_cross_entropy_with_logits(logits.float(), mask.float())

    def training_step(self, batch: RISBatch, batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch.image, batch.tokens), batch.mask)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def _start_eval(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        names = datamodule.eval_set_names(EVAL_STAGES[stage]) if hasattr(datamodule, "eval_set_names") else []
        self.evaluator.start(stage, names, self.device)

    def _eval_step(self, stage: str, batch: RISBatch) -> None:
        logits = self(batch.image, batch.tokens)
        self.evaluator.update(stage, batch, logits, batch.image.shape[-1])

    def on_validation_epoch_start(self) -> None:
        self._start_eval("val")

    def validation_step(self, batch: RISBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self.evaluator.log_and_reset(self, "val")

    def on_test_epoch_start(self) -> None:
        self._start_eval("test")

    def test_step(self, batch: RISBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self.evaluator.log_and_reset(self, "test")

    def predict_step(self, batch: RISBatch, batch_idx: int, dataloader_idx: int = 0) -> list[torch.Tensor]:
        """Bool masks ``(H_i, W_i)`` at each sample's original resolution (CPU)."""
        logits = self(batch.image, batch.tokens)
        return logits_to_masks(logits, batch.affine, batch.orig_size, batch.image.shape[-1], self.evaluator.threshold)

    def configure_optimizers(self) -> dict:
        head, backbone = self.param_groups()
        optimizer, scheduler = build_optimizer(
            head,
            backbone,
            lr=self.lr,
            backbone_lr_mult=self.backbone_lr_mult,
            optimizer=self.optimizer_name,
            optimizer_kwargs=self.optimizer_kwargs,
            schedule=self.lr_schedule,
            milestones=self.milestones,
            gamma=self.gamma,
            max_epochs=self.trainer.max_epochs if self._trainer is not None else None,
            full_backbone_lr_first_epoch=self.full_backbone_lr_first_epoch,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def load_weights(self, path: str | Path) -> None:
        """Load model weights only from ``path`` (every key must match). An official CRIS.pytorch / ETRIS checkpoint
        is mapped onto this model first (:mod:`ris.models.official_checkpoints`); every key must land."""
        state = load_state_dict_file(path)
        if is_official_state_dict(state):
            state, report = map_official_state_dict(state, self)
            if not report.complete:
                name = type(self).__name__
                raise ValueError(f"{path}: official checkpoint does not fit {name}:\n{report.describe()}")
            rank_zero_info(f"{path}: official checkpoint mapped: {report.describe(0)}")
        try:
            missing, unexpected = self.load_state_dict(state, strict=False)
        except RuntimeError as err:
            raise ValueError(f"{path}: weights do not fit {type(self).__name__}: {err}") from err
        if missing or unexpected:
            raise ValueError(
                f"{path}: weights do not fit {type(self).__name__}; missing {len(missing)} keys "
                f"{missing[:5]}, unexpected {len(unexpected)} keys {unexpected[:5]}"
            )

    def setup(self, stage: str) -> None:
        """Report the parameter counts at start-up."""
        rank_zero_info(
            f"{type(self).__name__} ({self.backbone.name}): {count_parameters(self, True):,} trainable parameters, "
            f"{count_parameters(self, False):,} frozen"
        )

    def on_fit_start(self) -> None:
        """Apply ``init_from`` once when training starts fresh (``trainer.ckpt_path`` unset). Runs after the
        optimizer is built, so no optimizer, scheduler or loop state comes from that checkpoint."""
        if self.init_from and self.trainer.ckpt_path is None and self._initialised_from != self.init_from:
            self.load_weights(self.init_from)
            self._initialised_from = self.init_from
            rank_zero_info(f"{type(self).__name__}: weights initialised from {self.init_from}")
