"""RIS metrics (oIoU, mIoU, Prec@X) and the logits → original-resolution mask helper shared by every model.

Conventions (docs/data.md §4): every sentence is one sample; IoU := 0 when the union is empty; mIoU is the mean
per-sample IoU; oIoU is Σ intersection / Σ union; Prec@X counts samples with IoU ≥ X (exact decimal thresholds).
All states are sums, so the result under DDP equals the single-process result when each sample is seen once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from ris.letterbox import unletterbox

PREC_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
METRIC_KEYS = ("oIoU", "mIoU", *(f"Prec@{t}" for t in PREC_THRESHOLDS))


def mask_iou(pred: torch.Tensor, gt: torch.Tensor) -> tuple[int, int]:
    """Intersection and union pixel counts of two boolean masks of equal shape."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} does not match ground-truth shape {tuple(gt.shape)}")
    p, g = pred.bool(), gt.bool()
    return int((p & g).sum()), int((p | g).sum())


class RISMetrics(Metric):
    """oIoU, mIoU and Prec@{0.5..0.9} over boolean masks at original resolution.

    ``update(pred_masks, gt_masks)`` takes two equal-length lists of ``(H_i, W_i)`` boolean tensors (a ``(B, H, W)``
    tensor works as well). ``compute()`` returns fractions in [0, 1] under the keys of :data:`METRIC_KEYS`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, thresholds: Sequence[float] = PREC_THRESHOLDS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.add_state("cum_i", torch.tensor(0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("cum_u", torch.tensor(0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("iou_sum", torch.tensor(0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("hits", torch.zeros(len(self.thresholds), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred_masks: Sequence[torch.Tensor], gt_masks: Sequence[torch.Tensor]) -> None:
        if len(pred_masks) != len(gt_masks):
            raise ValueError(f"got {len(pred_masks)} predictions but {len(gt_masks)} ground-truth masks")
        for index, (pred, gt) in enumerate(zip(pred_masks, gt_masks)):
            if pred.shape != gt.shape:
                raise ValueError(
                    f"sample {index}: prediction shape {tuple(pred.shape)} does not match "
                    f"ground-truth shape {tuple(gt.shape)}"
                )
            inter, union = mask_iou(pred, gt)
            iou = inter / union if union > 0 else 0.0
            self.cum_i += inter
            self.cum_u += union
            self.iou_sum += iou
            self.count += 1
            self.hits += torch.tensor([iou >= t for t in self.thresholds], dtype=torch.float64, device=self.hits.device)

    def compute(self) -> dict[str, torch.Tensor]:
        count = self.count.clamp(min=1)
        out = {
            "oIoU": torch.where(self.cum_u > 0, self.cum_i / self.cum_u.clamp(min=1), torch.zeros_like(self.cum_u)),
            "mIoU": self.iou_sum / count,
        }
        for t, hits in zip(self.thresholds, self.hits):
            out[f"Prec@{t}"] = hits / count
        return {k: v.float() for k, v in out.items()}


def logits_to_masks(
    logits: torch.Tensor,
    affine: torch.Tensor,
    orig_sizes: torch.Tensor | Sequence[tuple[int, int]],
    input_size: int | None = None,
    threshold: float = 0.35,
) -> list[torch.Tensor]:
    """Turn model logits into boolean masks at each image's original resolution.

    ``logits`` ``(B, 1, h, w)`` → sigmoid → bicubic (align_corners=True) upsampling to the ``input_size``² network
    input (default: ``4 h``) → inverse letterbox with a cubic warp → ``prob > threshold``. Returns ``B`` bool
    tensors of shape ``(H_i, W_i)``, on the CPU.
    """
    if logits.dim() != 4 or logits.shape[1] != 1:
        raise ValueError(f"logits must be (B, 1, h, w), got {tuple(logits.shape)}")
    size = input_size or 4 * logits.shape[-1]
    prob = torch.sigmoid(logits.detach().float())
    prob = F.interpolate(prob, size=(size, size), mode="bicubic", align_corners=True).cpu()
    masks = []
    for b in range(prob.shape[0]):
        h, w = (int(v) for v in orig_sizes[b])
        masks.append(unletterbox(prob[b], affine[b].cpu(), (h, w))[0] > threshold)
    return masks
