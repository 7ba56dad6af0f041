"""Optimizer and learning-rate schedule of the RIS models: named parameter groups and an epoch-wise factor.

A model's parameter groups (:class:`ParamGroup`) run at ``lr × lr_mult`` each. The papers' recipe (CRIS and
ETRIS): Adam, ``lr`` for the head group, ``lr * backbone_lr_mult`` for the backbone group, both ×``gamma`` from
each milestone epoch on (MultiStepLR [35], 0.1 over 50 epochs). Epochs are 0-based here: milestone 35 means epochs
36–50 in the papers' 1-based counting run at the reduced rate.

CRIS quirk (docs/models.md §1.7): its param groups start at the base lr, so in the first epoch the backbone runs at
the head's lr. ``full_backbone_lr_first_epoch=True`` reproduces it.
"""

from __future__ import annotations

import importlib
import math
from bisect import bisect_right
from collections.abc import Sequence
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


@dataclass
class ParamGroup:
    """A named optimizer group: its parameters run at ``lr × lr_mult``."""

    name: str
    params: list[nn.Parameter]
    lr_mult: float = 1.0


def build_optimizer(
    groups: Sequence[ParamGroup],
    *,
    lr: float,
    optimizer: str = "Adam",
    optimizer_kwargs: dict | None = None,
    schedule: Schedule = "multistep",
    milestones: Sequence[int] = (35,),
    gamma: float = 0.1,
    max_epochs: int | None = None,
    full_lr_first_epoch: Sequence[str] = (),
) -> tuple[torch.optim.Optimizer, LambdaLR]:
    """The optimizer over the trainable parameters of ``groups`` (each at ``lr × lr_mult``) and its per-epoch
    scheduler; the groups named in ``full_lr_first_epoch`` run at ``lr`` in epoch 0 (CRIS's quirk)."""
    param_groups = [
        {"params": [p for p in g.params if p.requires_grad], "lr": lr * g.lr_mult, "name": g.name, "mult": g.lr_mult}
        for g in groups
    ]
    param_groups = [g for g in param_groups if g["params"]]
    if not param_groups:
        raise ValueError("the model has no trainable parameters")
    opt = resolve_optimizer(optimizer)(param_groups, lr=lr, **(optimizer_kwargs or {}))
    factors = []
    for group in opt.param_groups:
        mult = group.pop("mult")
        first = 1.0 / mult if group["name"] in full_lr_first_epoch and mult > 0 else 1.0
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
