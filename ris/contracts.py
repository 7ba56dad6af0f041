"""The contracts between models and datamodules (docs/data.md §4): they never import each other, they speak these.

A **model** declares what it learns from (:data:`Supervision`), which tokenizer produced the token ids it reads
(``tokenizer``) and what input it expects (:class:`InputSpec`: side, normalisation, resize geometry). A
**datamodule** reads the attached model's ``tokenizer`` and ``input_spec`` at ``setup()`` (unless it was given its
own), declares the names of its evaluation sets per stage (``eval_set_names``) and what labels its training data
carries (:data:`LabelSource`). The :class:`ris.evaluation.Evaluator` callback and ``ris report`` read only these
declarations, never class names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from ris.tokenizer import Tokenizer

Supervision = Literal["masks", "text", "none"]
"""What a model learns from: ``masks`` (CRIS, ETRIS: image, expression and mask), ``text`` (SaG: image and expression
only) or ``none`` (a zero-shot, training-free model such as Global-Local CLIP)."""

LabelSource = Literal["human", "pseudo", "joint"]
"""What labels a training datamodule carries: ``human`` annotations (RefCOCO, PhraseCut, possibly a labelled
fraction), ``pseudo``-labels (Pseudo-RIS shards) or both in every batch (``joint``)."""

Resize = Literal["letterbox", "squash"]
"""How an image becomes the square network input: ``letterbox`` (aspect kept, centred, padded with the mean colour;
CRIS/ETRIS) or ``squash`` (a plain resize, aspect not kept; SaG)."""

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
EVAL_STAGES = ("validate", "test")
"""The stages with evaluation sets (Lightning's ``validate`` runs during ``fit`` too)."""


@dataclass(frozen=True)
class InputSpec:
    """The network input a model expects.

    Attributes:
        size: side of the square input, in pixels.
        mean, std: per-channel normalisation on the 0–1 scale, ``(x - mean) / std``.
        resize: the geometry (:data:`Resize`).
    """

    size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    resize: Resize = "letterbox"

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"input size must be >= 1, got {self.size}")
        if self.resize not in ("letterbox", "squash"):
            raise ValueError(f"resize must be 'letterbox' or 'squash', got {self.resize!r}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values each (std > 0), got {self.mean}, {self.std}")


@runtime_checkable
class ModelContract(Protocol):
    """What every RIS model (trainable or zero-shot) declares."""

    supervision: Supervision

    @property
    def tokenizer(self) -> Tokenizer: ...

    @property
    def input_spec(self) -> InputSpec: ...


@runtime_checkable
class EvaluationSets(Protocol):
    """A datamodule with named evaluation sets: one dataloader per set, in this order (``stage``:
    ``validate`` or ``test``)."""

    def eval_set_names(self, stage: str) -> list[str]: ...


@runtime_checkable
class TrainingLabels(Protocol):
    """A training datamodule's declaration of its labels (``labeled_fraction``: the fraction of the training
    images whose human labels are used; 0 for pseudo-labels only)."""

    labels: LabelSource
    labeled_fraction: float
