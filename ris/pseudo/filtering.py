"""Former name of :mod:`ris.pseudo.distinctiveness` (UoS, CoS, DoS, τ and the CLIP scorer, docs/method.md §6).

Kept so that ``from ris.pseudo.filtering import distinctiveness`` and the other public names keep working.
"""

from ris.pseudo.distinctiveness import (
    DEFAULT_TAU,
    CLIPScorer,
    MaskScores,
    above_threshold,
    correctness,
    distinctiveness,
    uniqueness,
)

__all__ = [
    "DEFAULT_TAU",
    "CLIPScorer",
    "MaskScores",
    "above_threshold",
    "correctness",
    "distinctiveness",
    "uniqueness",
]
