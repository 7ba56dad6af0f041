"""What the shard writer counts: the generator's result for one image and the additive counts over results
(a shard's ``stats`` and the merged manifest's ``totals``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from ris.pseudo.caption_choice import kept_flags
from ris.pseudo.records import PseudoRecord


@dataclass
class ImageResult:
    """What the generator produced for one image.

    Attributes:
        image_id: the image id.
        records: one record per kept mask (empty when the image is skipped).
        skip_reason: a short category (``missing_file``, ``too_large``, ``unreadable``, ``no_masks``,
            ``no_cutler_guides``, ``all_masks_dropped``, ``mask_source_error``) when the image produced no record,
            else ``None``.
        masks_dropped: masks dropped before captioning, per reason (``small``, ``full_image``, ``duplicate``,
            ``over_limit``).
        message: details of the skip (logged and kept in the per-process manifest, not counted).
    """

    image_id: str
    records: list[PseudoRecord] = field(default_factory=list)
    skip_reason: str | None = None
    masks_dropped: dict[str, int] = field(default_factory=dict)
    message: str = ""


@dataclass
class GenerationStats:
    """Counts over a set of images; additive across shards and processes.

    ``kept`` counts candidates kept at the manifest's τ (DoS > τ; top half for one-mask images); ``dos_sum`` /
    ``dos_count`` cover the DoS of multi-mask candidates; ``negative_scores`` counts multi-mask candidates whose
    DoS is negative (negative CLIP logits, docs/method.md §0.2); ``no_contrast`` counts multi-mask records captioned
    without contrast (K above the decoder's bound).
    """

    images: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    masks: int = 0
    masks_dropped: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    kept: int = 0
    empty_captions: int = 0
    dos_sum: float = 0.0
    dos_count: int = 0
    negative_scores: int = 0
    one_mask: int = 0
    no_contrast: int = 0

    @property
    def mean_dos(self) -> float:
        return self.dos_sum / self.dos_count if self.dos_count else float("nan")

    def add_result(self, result: ImageResult, tau: float) -> None:
        """Count one image's result."""
        if result.skip_reason is not None:
            self.skipped[result.skip_reason] = self.skipped.get(result.skip_reason, 0) + 1
        else:
            self.images += 1
        for reason, n in result.masks_dropped.items():
            if n:
                self.masks_dropped[reason] = self.masks_dropped.get(reason, 0) + n
        for record in result.records:
            self.masks += 1
            self.candidates += len(record.captions)
            self.kept += sum(kept_flags(record, tau))
            self.empty_captions += sum(not c.strip() for c in record.captions)
            if record.one_mask:
                self.one_mask += 1
                continue
            if not record.contrast:
                self.no_contrast += 1
            scores = [d for d in record.dos if d is not None]
            self.dos_sum += float(sum(scores))
            self.dos_count += len(scores)
            self.negative_scores += sum(d < 0 for d in scores)

    def add(self, other: GenerationStats) -> None:
        """Add ``other``'s counts to these."""
        for name in ("images", "masks", "candidates", "kept", "empty_captions", "dos_sum", "dos_count",
                     "negative_scores", "one_mask", "no_contrast"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("skipped", "masks_dropped"):
            mine = Counter(getattr(self, name))
            mine.update(getattr(other, name))
            setattr(self, name, dict(sorted(mine.items())))

    def summary_rows(self, tau: float, shards: int, before: int | None = None) -> list[tuple[str, str]]:
        """``(quantity, value)`` rows of the generation summary (the ``ris generate`` table and the gallery's
        header); ``before``: images done before this run, when known."""
        kept = f"{self.kept} ({100 * self.kept / self.candidates:.1f}%)" if self.candidates else "0"
        return [
            ("images with records", str(self.images)),
            ("images skipped", str(sum(self.skipped.values()))),
            *((f"  skipped: {reason}", str(n)) for reason, n in sorted(self.skipped.items())),
            *((("images done before this run", str(before)),) if before is not None else ()),
            ("masks (records)", str(self.masks)),
            *((f"  masks dropped: {reason}", str(n)) for reason, n in sorted(self.masks_dropped.items()) if n),
            ("single-mask images", str(self.one_mask)),
            ("multi-mask records without contrast", str(self.no_contrast)),
            ("candidate captions", str(self.candidates)),
            ("empty captions", str(self.empty_captions)),
            (f"kept after τ = {tau:g}", kept),
            ("mean DoS (multi-mask)", f"{self.mean_dos:.4f}"),
            ("negative DoS values", str(self.negative_scores)),
            ("shards", str(shards)),
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationStats:
        return cls(**data)
