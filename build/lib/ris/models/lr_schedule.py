"""Optimizer and learning-rate schedule of the RIS models: two parameter groups and an epoch-wise factor.

The papers' recipe (CRIS and ETRIS): Adam, ``lr`` for the head group, ``lr * backbone_lr_mult`` for the backbone
group, both ×``gamma`` from each milestone epoch on (MultiStepLR [35], 0.1 over 50 epochs). Epochs are 0-based here:
milestone 35 means epochs 36–50 in the papers' 1-based counting run at the reduced rate.

CRIS quirk (spec models.md §1.7): its param groups start at the base lr, so in the first epoch the backbone runs at
the head's lr. ``full_backbone_lr_first_epoch=True`` reproduces it; the default is off.
"""

from __future__ import annotations

import importlib
import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

Schedule = Literal["multistep", "cosine", "constant"]


@dataclass
class StepFactor:
    """``gamma ** (number of milestones <= epoch)``, times ``first_epoch_factor`` in epoch 0."""

    milestones: tuple[int, ...]
    gamma: float
    first_epoch_factor: float = 1.0

    def __call__(self, epoch: int) -> float:
        factor = self.gamma ** bisect_right(self.milestones, epoch)
        return factor * self.first_epoch_factor if epoch == 0 else factor


@dataclass
class CosineFactor:
    """Cosine decay from 1 to 0 over ``epochs`` epochs (times ``first_epoch_factor`` in epoch 0)."""

    epochs: int
    first_epoch_factor: float = 1.0

    def __call__(self, epoch: int) -> float:
        factor = 0.5 * (1 + math.cos(math.pi * min(epoch, self.epochs) / max(self.epochs, 1)))
        return factor * self.first_epoch_factor if epoch == 0 else factor


def resolve_optimizer(name: str) -> type[torch.optim.Optimizer]:
    """A ``torch.optim`` class by name (``"Adam"``, ``"AdamW"``) or by dotted import path."""
    if "." in name:
        module, _, attr = name.rpartition(".")
        cls = getattr(importlib.import_module(module), attr, None)
    else:
        cls = getattr(torch.optim, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise TypeError(f"optimizer {name!r} is not a torch.optim optimizer class (e.g. 'Adam', 'AdamW')")
    return cls


def build_optimizer(
    head: Iterable[nn.Parameter],
    backbone: Iterable[nn.Parameter],
    *,
    lr: float,
    backbone_lr_mult: float,
    optimizer: str = "Adam",
    optimizer_kwargs: dict | None = None,
    schedule: Schedule = "multistep",
    milestones: Sequence[int] = (35,),
    gamma: float = 0.1,
    max_epochs: int | None = None,
    full_backbone_lr_first_epoch: bool = False,
) -> tuple[torch.optim.Optimizer, LambdaLR]:
    """The optimizer over the trainable ``head`` (``lr``) and ``backbone`` (``lr * backbone_lr_mult``) parameters
    and its per-epoch scheduler."""
    groups = [
        {"params": [p for p in head if p.requires_grad], "lr": lr, "name": "head"},
        {"params": [p for p in backbone if p.requires_grad], "lr": lr * backbone_lr_mult, "name": "backbone"},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    opt = resolve_optimizer(optimizer)(groups, lr=lr, **(optimizer_kwargs or {}))
    boost = 1.0 / backbone_lr_mult if full_backbone_lr_first_epoch and backbone_lr_mult > 0 else 1.0
    factors = []
    for group in opt.param_groups:
        first = boost if group["name"] == "backbone" else 1.0
        if schedule == "multistep":
            factors.append(StepFactor(tuple(sorted(milestones)), gamma, first))
        elif schedule == "cosine":
            if not max_epochs or max_epochs < 1:
                raise ValueError("lr_schedule 'cosine' needs trainer.max_epochs >= 1")
            factors.append(CosineFactor(max_epochs, first))
        elif schedule == "constant":
            factors.append(StepFactor((), 1.0, first))
        else:
            raise ValueError(f"lr_schedule must be 'multistep', 'cosine' or 'constant', got {schedule!r}")
    return opt, LambdaLR(opt, factors)
