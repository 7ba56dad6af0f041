"""Training-time caption choice from a pseudo-label record (docs/method.md §7.2).

- **Several masks in the image** (``one_mask`` false): the candidates are the captions with DoS **strictly above**
  τ; every time the sample is read, one candidate is drawn uniformly at random, so over the epochs every caption
  above τ is used. When none passes, the ``fallback`` decides: ``"any"`` (the official behaviour and the default)
  draws from all captions, ``"best"`` takes the caption with the highest DoS.
- **One mask in the image** (``one_mask`` true, where the score is the raw CLIP score, not DoS): the captions are
  sorted by score and one of the top half (``len // 2``, at least one) is drawn.

Empty captions (nothing but whitespace) are never chosen; a record whose captions are all empty has no choice
(:func:`choose_caption` returns ``None``) and training datasets drop it.
"""

from __future__ import annotations

import random
from typing import Literal

from ris.pseudo.records import PseudoRecord

Fallback = Literal["any", "best"]


def _score(value: float | None) -> float:
    return float("-inf") if value is None else float(value)


def eligible_captions(record: PseudoRecord, tau: float, fallback: Fallback = "any") -> list[int]:
    """Indices of the captions a training draw may return (see the module rules); empty if all are empty."""
    if fallback not in ("any", "best"):
        raise ValueError(f"caption fallback must be 'any' or 'best', got {fallback!r}")
    usable = [i for i, caption in enumerate(record.captions) if caption.strip()]
    if not usable:
        return []
    if record.one_mask:
        ranked = sorted(usable, key=lambda i: -_score(record.dos[i]))
        return sorted(ranked[: max(1, len(record.captions) // 2)])
    above = [i for i in usable if _score(record.dos[i]) > tau]
    if above:
        return above
    if fallback == "best":
        return [max(usable, key=lambda i: _score(record.dos[i]))]
    return usable


def kept_flags(record: PseudoRecord, tau: float) -> list[bool]:
    """Per caption, whether it survives the filter: DoS > τ (several masks) or top half by score (one mask)."""
    if record.one_mask:
        chosen = set(eligible_captions(record, tau))
        return [i in chosen for i in range(len(record.captions))]
    return [bool(caption.strip()) and _score(d) > tau for caption, d in zip(record.captions, record.dos)]


def choose_caption(
    record: PseudoRecord, tau: float, rng: random.Random, fallback: Fallback = "any"
) -> int | None:
    """Draw the index of one caption of ``record`` for a training step, or ``None`` when every caption is empty."""
    candidates = eligible_captions(record, tau, fallback)
    return None if not candidates else candidates[rng.randrange(len(candidates))]

