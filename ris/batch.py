"""The batch contract shared by datamodules and models.

A dataset returns one :class:`RISSample` per (image, expression); :func:`collate` stacks them into a
:class:`RISBatch`. Token ids are produced by the tokenizer the model supplies, never by a fixed tokenizer in the
data code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import torch


@dataclass
class RISSample:
    """One referring sample.

    Attributes:
        image: ``(3, S, S)`` normalised network input.
        mask: ``(1, S, S)`` float target in [0, 1] at input resolution (soft at the edges after the warp).
        text: the referring expression.
        tokens: ``(L,)`` long token ids.
        orig_size: original image ``(H, W)``.
        affine: ``(2, 3)`` float64 matrix mapping original pixel coordinates to input coordinates.
        gt_mask: ``(H, W)`` bool ground truth at original resolution (evaluation), or ``None``.
        dataset, split, sample_id, sent_id: provenance ids (``sample_id`` is unique within dataset/split).
        image_id: id of the image within dataset/split (e.g. the COCO image id), ``""`` when unknown; mask
            sources that read per-image files (ground-truth instances, CutLER guides) look images up by it.
        padding: a copy of another sample that only keeps a process busy under DDP (never scored,
            :mod:`ris.datamodules.exactly_once`).
    """

    image: torch.Tensor
    mask: torch.Tensor
    text: str
    tokens: torch.Tensor
    orig_size: tuple[int, int]
    affine: torch.Tensor
    gt_mask: torch.Tensor | None = None
    dataset: str = ""
    split: str = ""
    sample_id: str = ""
    sent_id: int = -1
    image_id: str = ""
    padding: bool = False


@dataclass
class RISBatch:
    """A collated batch.

    Attributes:
        image: ``(B, 3, S, S)``.
        mask: ``(B, 1, S, S)`` float targets.
        tokens: ``(B, L)`` long.
        orig_size: ``(B, 2)`` long, ``(H, W)`` per sample.
        affine: ``(B, 2, 3)`` float64 letterbox matrices (original → input coordinates).
        text: the ``B`` expressions.
        gt_masks: ``B`` bool ``(H_i, W_i)`` masks at original resolution, or ``None`` when the stage has none.
        dataset, split, sample_id, sent_id, image_id: ``B`` provenance ids each.
        padding: ``B`` flags, true for padding samples (never scored).
    """

    image: torch.Tensor
    mask: torch.Tensor
    tokens: torch.Tensor
    orig_size: torch.Tensor
    affine: torch.Tensor
    text: list[str] = field(default_factory=list)
    gt_masks: list[torch.Tensor] | None = None
    dataset: list[str] = field(default_factory=list)
    split: list[str] = field(default_factory=list)
    sample_id: list[str] = field(default_factory=list)
    sent_id: list[int] = field(default_factory=list)
    image_id: list[str] = field(default_factory=list)
    padding: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return self.image.shape[0]

    def to(self, device: torch.device | str) -> RISBatch:
        """Move tensors to ``device``; ``affine`` stays float64 and the GT masks stay where they are."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("image", "mask", "tokens"):
            moved[name] = moved[name].to(device)
        return RISBatch(**moved)


def collate(samples: Sequence[RISSample]) -> RISBatch:
    """Stack :class:`RISSample` records into a :class:`RISBatch`."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    gts = [s.gt_mask for s in samples]
    if any(g is None for g in gts) and not all(g is None for g in gts):
        raise ValueError("a batch mixes samples with and without ground-truth masks")
    return RISBatch(
        image=torch.stack([s.image for s in samples]),
        mask=torch.stack([s.mask for s in samples]),
        tokens=torch.stack([s.tokens for s in samples]),
        orig_size=torch.tensor([list(s.orig_size) for s in samples], dtype=torch.long),
        affine=torch.stack([s.affine for s in samples]),
        text=[s.text for s in samples],
        gt_masks=None if gts[0] is None else list(gts),
        dataset=[s.dataset for s in samples],
        split=[s.split for s in samples],
        sample_id=[s.sample_id for s in samples],
        sent_id=[s.sent_id for s in samples],
        image_id=[s.image_id for s in samples],
        padding=[s.padding for s in samples],
    )
