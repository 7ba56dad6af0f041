"""Bad input: the opt-in skip policy for the per-sample errors of the format readers, and its report.

The readers (:mod:`ris.formats`) report each unreadable sample as a :class:`~ris.formats.errors.BadSampleError`
naming the file and the id. ``on_bad_sample="raise"`` (default) stops at the first problem with that error;
``on_bad_sample="skip"`` drops the sample, records a :class:`SkippedSample` and reports every skip in the log (when the
set is built and again at teardown) and through ``datamodule.skipped``. Nothing disappears silently.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ris.formats.errors import BadSampleError

log = logging.getLogger(__name__)

OnBadSample = Literal["raise", "skip"]


@dataclass(frozen=True)
class SkippedSample:
    """A sample dropped under ``on_bad_sample="skip"``.

    Attributes:
        set_name: ``dataset/split`` of the set it belonged to.
        source: the file the problem was found in.
        sample: the id (``ref 12``, ``task 2321359__2936376``).
        reason: what was wrong.
        sentences: how many expressions (evaluation samples) went with it.
    """

    set_name: str
    source: str
    sample: str
    reason: str
    sentences: int

    def __str__(self) -> str:
        return f"{self.source}: {self.sample}: {self.reason}"


def handle(errors: Iterable[tuple[BadSampleError, int]], policy: OnBadSample, set_name: str) -> list[SkippedSample]:
    """Apply ``policy`` to ``(error, n_sentences)`` pairs: raise the first, or turn them all into skip records."""
    skipped = []
    for error, sentences in errors:
        if policy == "raise":
            raise error
        skipped.append(SkippedSample(set_name, error.source, error.sample, error.reason, sentences))
    return skipped


def report(skipped: list[SkippedSample], context: str) -> None:
    """Log a summary of ``skipped`` (a warning when non-empty)."""
    if not skipped:
        return
    sentences = sum(s.sentences for s in skipped)
    details = "\n".join(f"  {s.set_name}: {s}" for s in skipped)
    log.warning("%s: skipped %d bad samples (%d expressions):\n%s", context, len(skipped), sentences, details)
