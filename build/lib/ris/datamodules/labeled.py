"""Labelled fractions for semi-supervised runs: a deterministic image-level subset of a training split.

The unique image ids of the split are sorted, shuffled with ``numpy.random.default_rng(seed)``, and the first
``k = max(1, round(fraction * n_images))`` are kept; every ref/sentence of a kept image is labelled. For one seed the
subsets are nested (the 1 % images are among the 10 % images), so runs at different fractions are comparable.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def select_labeled_images(image_ids: Iterable[int], fraction: float, seed: int = 0) -> list[int]:
    """Sorted ids of the labelled images (see the module docstring)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"labeled_fraction must be in (0, 1], got {fraction}")
    unique = sorted({int(i) for i in image_ids})
    if fraction == 1.0 or not unique:
        return unique
    order = np.random.default_rng(seed).permutation(len(unique))
    keep = max(1, round(fraction * len(unique)))
    return sorted(unique[i] for i in order[:keep])
