"""The RIS model bases: :class:`RISModule` (every evaluable model) and :class:`RISModel` (every trainable one).

:class:`RISModule` is the model side of the contracts of :mod:`ris.contracts`: a model declares its ``supervision``,
its ``tokenizer`` and its ``input_spec``, and implements :meth:`RISModule.predict_masks`. Validation, test and
predict steps return those masks; the :class:`ris.evaluation.Evaluator` callback (added by
:meth:`RISModule.configure_callbacks`) scores them per evaluation set. Global-Local CLIP (zero-shot) is a
:class:`RISModule`; CRIS, ETRIS and SaG are :class:`RISModel` subclasses.

:class:`RISModel` holds the training recipe shared by the trainable models (docs/models.md §1.7, §2.7):

- training: BCE-with-logits against the batch's soft mask resized to the logit resolution with ``nearest`` (CRIS);
  a model that learns from text only overrides :meth:`RISModel.training_step`;
- prediction: logits → original-resolution masks (:func:`ris.metrics.logits_to_masks`, threshold ``threshold``);
- optimizer: the named groups of :meth:`RISModel.param_groups`, each at ``lr × its multiplier``, with the
  per-epoch schedule of :mod:`ris.models.lr_schedule`;
- ``init_from``: weights only from a checkpoint (no optimizer, scheduler or epoch state) when a fit starts fresh;
- hyper-parameters: saved here, once, for the subclass's arguments too (subclasses pass the recipe arguments through
  ``**kwargs``), so a checkpoint rebuilds its model by itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from ris.batch import RISBatch
from ris.contracts import InputSpec, Supervision
from ris.evaluation import Evaluator
from ris.metrics import logits_to_masks
from ris.tokenizer import Tokenizer

from .lr_schedule import ParamGroup, Schedule, build_optimizer

TRAINING_RECORD_KEY = "ris_training"


def count_parameters(module: nn.Module, trainable: bool | None = None) -> int:
    """Number of parameters of ``module`` (only trainable / only frozen ones when ``trainable`` is given)."""
    return sum(p.numel() for p in module.parameters() if trainable is None or p.requires_grad == trainable)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The model weights of a Lightning checkpoint (``state_dict`` entry) or of a plain state-dict file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"init_from checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a Lightning checkpoint or a state dict of tensors")
    return state


class RISModule(LightningModule, ABC):
    """An evaluable RIS model: declares the model contract and predicts masks (see the module docstring).

    Attributes:
        supervision: what the model learns from (:data:`ris.contracts.Supervision`).
        training_record: how the weights were trained (set by the evaluator at the start of a fit, kept in
            checkpoints); ``None`` for a model that was never trained.
    """

    supervision: ClassVar[Supervision]

    def __init__(self) -> None:
        super().__init__()
        self.training_record: dict[str, Any] | None = None

    @property
    @abstractmethod
    def tokenizer(self) -> Tokenizer:
        """The tokenizer whose ids the model reads (datamodules tokenize with it)."""

    @property
    @abstractmethod
    def input_spec(self) -> InputSpec:
        """The network input the model expects (datamodules build it)."""

    @abstractmethod
    def predict_masks(self, batch: RISBatch) -> list[torch.Tensor]:
        """Bool masks ``(H_i, W_i)`` at each sample's original resolution (CPU)."""

    def validation_step(self, batch: RISBatch, batch_idx: int, dataloader_idx: int = 0) -> list[torch.Tensor]:
        return self.predict_masks(batch)

    def test_step(self, batch: RISBatch, batch_idx: int, dataloader_idx: int = 0) -> list[torch.Tensor]:
        return self.predict_masks(batch)

    def predict_step(self, batch: RISBatch, batch_idx: int, dataloader_idx: int = 0) -> list[torch.Tensor]:
        return self.predict_masks(batch)

    def configure_callbacks(self) -> Sequence[Callback]:
        """The :class:`ris.evaluation.Evaluator` that scores every evaluation set."""
        return [Evaluator()]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[TRAINING_RECORD_KEY] = self.training_record

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.training_record = checkpoint.get(TRAINING_RECORD_KEY)


class RISModel(RISModule, ABC):
    """Base class of the trainable RIS models (see the module docstring).

    Subclasses take their own arguments and pass the ones below through ``**kwargs``.

    Args:
        lr: learning rate of the ``head`` group; every other group runs at ``lr`` × its multiplier.
        backbone_lr_mult: multiplier of the ``backbone`` group (the trainable backbone parameters; CRIS: the CLIP
            weights except positional embeddings; ETRIS trains no backbone weight, its CLIP is frozen).
        optimizer: a ``torch.optim`` class name or import path; its lr is set per group from ``lr``.
        optimizer_kwargs: extra optimizer arguments (``weight_decay``, ``betas``, ...).
        lr_schedule: ``"multistep"`` (× ``gamma`` at each epoch in ``milestones``), ``"cosine"`` (over
            ``trainer.max_epochs``) or ``"constant"``; stepped once per epoch.
        milestones, gamma: the multistep schedule (0-based epochs).
        full_backbone_lr_first_epoch: CRIS's quirk, the ``backbone`` group runs at ``lr`` during epoch 0.
        threshold: probability threshold of the predicted masks.
        init_from: a checkpoint whose weights (only) initialise the model when training starts without
            ``ckpt_path`` (pseudo-pretrain → fine-tune).
    """

    supervision: ClassVar[Supervision] = "masks"
    backbone: nn.Module

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
        self.save_hyperparameters()
        self.lr = lr
        self.backbone_lr_mult = backbone_lr_mult
        self.optimizer_name = optimizer
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        self.lr_schedule = lr_schedule
        self.milestones = tuple(milestones)
        self.gamma = gamma
        self.full_backbone_lr_first_epoch = full_backbone_lr_first_epoch
        self.threshold = threshold
        self.init_from = init_from
        self._initialised_from: str | None = None

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer of the backbone's text tower."""
        return self.backbone.tokenizer

    @property
    def input_spec(self) -> InputSpec:
        """The letterboxed input of ``input_size`` with the backbone's normalisation (CRIS, ETRIS)."""
        return InputSpec(self.input_size, self.backbone.mean, self.backbone.std, "letterbox")

    @abstractmethod
    def param_groups(self) -> list[ParamGroup]:
        """The optimizer's named parameter groups with their learning-rate multipliers."""

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

    def predict_masks(self, batch: RISBatch) -> list[torch.Tensor]:
        """Logits → bool masks ``(H_i, W_i)`` at each sample's original resolution (CPU)."""
        logits = self(batch.image, batch.tokens)
        return logits_to_masks(logits, batch.affine, batch.orig_size, batch.image.shape[-1], self.threshold)

    def configure_optimizers(self) -> dict:
        optimizer, scheduler = build_optimizer(
            self.param_groups(),
            lr=self.lr,
            optimizer=self.optimizer_name,
            optimizer_kwargs=self.optimizer_kwargs,
            schedule=self.lr_schedule,
            milestones=self.milestones,
            gamma=self.gamma,
            max_epochs=self.trainer.max_epochs if self._trainer is not None else None,
            full_lr_first_epoch=("backbone",) if self.full_backbone_lr_first_epoch else (),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def load_weights(self, path: str | Path) -> None:
        """Load model weights only from ``path`` (every key must match)."""
        state = load_state_dict_file(path)
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
            f"{type(self).__name__} ({getattr(self.backbone, 'name', '')}): {count_parameters(self, True):,} "
            f"trainable parameters, {count_parameters(self, False):,} frozen"
        )

    def on_fit_start(self) -> None:
        """Apply ``init_from`` once when training starts fresh (``trainer.ckpt_path`` unset). Runs after the
        optimizer is built, so no optimizer, scheduler or loop state comes from that checkpoint."""
        if self.init_from and self.trainer.ckpt_path is None and self._initialised_from != self.init_from:
            self.load_weights(self.init_from)
            self._initialised_from = self.init_from
            rank_zero_info(f"{type(self).__name__}: weights initialised from {self.init_from}")
