"""The error of one sample that cannot be read (a ref, a task, an image), naming the file and the sample.

Readers report per-sample problems with it instead of stopping; what happens next is the user's policy
(``on_bad_sample`` of the datamodules, :mod:`ris.datamodules.bad_samples`).
"""

from __future__ import annotations


class BadSampleError(ValueError):
    """A sample (ref, task, image) that cannot be loaded; the message names the file and the id."""

    def __init__(self, source: str, sample: str, reason: str) -> None:
        super().__init__(f"{source}: {sample}: {reason}")
        self.source, self.sample, self.reason = source, sample, reason
