"""Mask proposal sources behind one interface, and the policy that turns their output into an image's masks.

A :class:`MaskSource` maps an RGB image ``(H, W, 3)`` uint8 and its id to boolean masks ``(K, H, W)`` (K may be 0),
**ranked** best first (:mod:`ris.pseudo.masks.proposals`). Sources, one module each:

- :class:`SAMMaskSource` (:mod:`~ris.pseudo.masks.sam`): SAM automatic masks, the paper's generator settings
  (docs/method.md §2.2: ``pred_iou_thresh=0.5``, the rest SAM defaults); ranked by SAM's predicted IoU.
- :class:`CutLERGuidedSource` (:mod:`~ris.pseudo.masks.cutler`): the paper's CutLER-guided selection (§2.3) of
  another source's masks, CutLER's instance masks read from files; ranked in CutLER order.
- :class:`GroundTruthMaskSource` (:mod:`~ris.pseudo.masks.ground_truth`): every annotated instance of the image from
  a RefCOCO ``instances.json`` or a PhraseCut ``refer_{split}.json`` (the paper's "GT masks" setting); ranked by
  area, largest first.
- :class:`SegmenterMaskSource` (:mod:`~ris.pseudo.masks.segmenter`): an unsupervised class-agnostic segmenter
  (scikit-image), no checkpoint needed; the stand-in for SAM on CPU-only machines; ranked by contrast with the
  surroundings, highest first.

:class:`MaskPolicy` then drops empty/small masks and masks covering the whole image, removes exact duplicates (a
fix, §0.1) and keeps the first ``max_masks`` masks of the ranking (the most confident for SAM/CutLER/segmenter,
the largest for ground truth). An image left with no mask is skipped with a reason (:func:`propose_masks`).

Every class is importable from this package (``ris.pseudo.masks.SegmenterMaskSource``), the path configs name.
"""

from .cutler import CutLERGuidedSource, MatchRule, match_guides, read_mask_folder, read_mask_png
from .ground_truth import GroundTruthMaskSource
from .proposals import (
    MaskPolicy,
    MaskProposals,
    MaskSource,
    SkipImage,
    at_working_resolution,
    check_rgb,
    duplicate_free,
    empty_masks,
    flatten,
    propose_masks,
)
from .sam import SAM_ARCHITECTURES, SAMMaskSource, build_tiny_sam, load_sam
from .segmenter import SegmenterMaskSource

__all__ = [
    "SAM_ARCHITECTURES",
    "CutLERGuidedSource",
    "GroundTruthMaskSource",
    "MaskPolicy",
    "MaskProposals",
    "MaskSource",
    "MatchRule",
    "SAMMaskSource",
    "SegmenterMaskSource",
    "SkipImage",
    "at_working_resolution",
    "build_tiny_sam",
    "check_rgb",
    "duplicate_free",
    "empty_masks",
    "flatten",
    "load_sam",
    "match_guides",
    "propose_masks",
    "read_mask_folder",
    "read_mask_png",
]
