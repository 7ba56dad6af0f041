"""Statistics of a written world, measured from its files the way one would measure them on RefCOCO.

:func:`world_statistics` reads domain A's ``instances.json`` and ``refs(*).p`` (the refer files, nothing else), so
the same numbers could be computed on the real RefCOCO / RefCOCO+ / RefCOCOg folders. ``bench/synthetic_world.py``
prints them beside RefCOCO's (``docs/synthetic_world.md`` §5).
"""

from __future__ import annotations

import json
import pickle
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ris.synthetic.expressions import LOCATION_WORDS, RELATION_PHRASES
from ris.synthetic.world import REFER_DATASETS, SPLITS

SMALL_AREA = 0.02
"""An object under this fraction of its image is "small" (PhraseCut's small-region threshold)."""
_RELATION_TOKENS = sorted({tuple(p.split()) for options in RELATION_PHRASES.values() for p in options}, key=len,
                          reverse=True)


def relation_span(tokens: list[str]) -> tuple[int, int] | None:
    """``(start, end)`` of the first relation phrase (:data:`~ris.synthetic.expressions.RELATION_PHRASES`) in
    ``tokens``, longest phrase first, or ``None``."""
    for start in range(len(tokens)):
        for phrase in _RELATION_TOKENS:
            if tuple(tokens[start : start + len(phrase)]) == phrase:
                return start, start + len(phrase)
    return None


def has_location_word(tokens: list[str]) -> bool:
    """Whether ``tokens`` use a location word (left, right, top, bottom, middle) outside a relation phrase."""
    span = relation_span(tokens)
    if span is not None:
        tokens = tokens[: span[0]] + tokens[span[1] :]
    return bool(set(LOCATION_WORDS) & set(tokens))


@dataclass(frozen=True)
class StyleStatistics:
    """The expressions of one dataset (style) of domain A.

    Attributes:
        refs, sentences: referred objects and their expressions (all splits).
        words: mean words per expression.
        location_share: share of expressions with a location word (:func:`has_location_word`).
        relation_share: share of expressions with a relation phrase (:func:`relation_span`).
        per_object: mean expressions per referred object.
        split_refs, split_images: referred objects and images with a referred object, per split.
    """

    refs: int
    sentences: int
    words: float
    location_share: float
    relation_share: float
    per_object: float
    split_refs: dict[str, int]
    split_images: dict[str, int]


@dataclass(frozen=True)
class WorldStatistics:
    """Protocol and size statistics of domain A (referred objects are those of the ``refcoco`` refs).

    Attributes:
        images: images in ``instances.json``.
        annotations: annotated objects.
        referred: referred objects.
        with_distractor: share of referred objects with at least one other object of their category in the image.
        distractors: mean number of such same-category distractors per referred object.
        clutter_per_image: mean number of annotated but never referred objects per image.
        area_quantiles: 10 %, 50 % and 90 % quantiles of the referred objects' mask area over the image area.
        small_share: share of referred objects under :data:`SMALL_AREA` of their image.
        small_share_all: the same over every annotated object.
        styles: per dataset present (``refcoco``, ``refcoco+``, ``refcocog``).
    """

    images: int
    annotations: int
    referred: int
    with_distractor: float
    distractors: float
    clutter_per_image: float
    area_quantiles: tuple[float, float, float]
    small_share: float
    small_share_all: float
    styles: dict[str, StyleStatistics]


def _refs(path: Path) -> list[dict]:
    with path.open("rb") as f:
        return pickle.load(f)


def style_statistics(refs: list[dict]) -> StyleStatistics:
    """:class:`StyleStatistics` of one refs list."""
    sentences = [s["tokens"] for r in refs for s in r["sentences"]]
    n = max(len(sentences), 1)
    return StyleStatistics(
        refs=len(refs),
        sentences=len(sentences),
        words=float(np.mean([len(t) for t in sentences])) if sentences else 0.0,
        location_share=sum(has_location_word(t) for t in sentences) / n,
        relation_share=sum(relation_span(t) is not None for t in sentences) / n,
        per_object=len(sentences) / max(len(refs), 1),
        split_refs={split: sum(r["split"] == split for r in refs) for split in SPLITS},
        split_images={split: len({r["image_id"] for r in refs if r["split"] == split}) for split in SPLITS},
    )


def world_statistics(refer_root: str | Path) -> WorldStatistics:
    """:class:`WorldStatistics` of the refer folder ``refer_root`` (``<world>/refer``)."""
    refer_root = Path(refer_root)
    instances = json.loads((refer_root / "refcoco" / "instances.json").read_text())
    images = {i["id"]: i for i in instances["images"]}
    per_image: dict[int, Counter] = defaultdict(Counter)
    for ann in instances["annotations"]:
        per_image[ann["image_id"]][ann["category_id"]] += 1
    styles = {
        style: style_statistics(_refs(path))
        for style, split_by in REFER_DATASETS.items()
        if (path := refer_root / style / f"refs({split_by}).p").is_file()
    }
    refs = _refs(refer_root / "refcoco" / "refs(unc).p")
    annotations = {a["id"]: a for a in instances["annotations"]}
    distractors = np.array([per_image[r["image_id"]][r["category_id"]] - 1 for r in refs])

    def area(ann: dict) -> float:
        image = images[ann["image_id"]]
        return ann["area"] / (image["height"] * image["width"])

    referred_areas = np.array([area(annotations[r["ann_id"]]) for r in refs])
    all_areas = np.array([area(a) for a in instances["annotations"]])
    referred_ids = {r["ann_id"] for r in refs}
    return WorldStatistics(
        images=len(images),
        annotations=len(annotations),
        referred=len(refs),
        with_distractor=float(np.mean(distractors >= 1)),
        distractors=float(distractors.mean()),
        clutter_per_image=sum(a not in referred_ids for a in annotations) / max(len(images), 1),
        area_quantiles=tuple(float(q) for q in np.quantile(referred_areas, [0.1, 0.5, 0.9])),
        small_share=float(np.mean(referred_areas < SMALL_AREA)),
        small_share_all=float(np.mean(all_areas < SMALL_AREA)),
        styles=styles,
    )
