"""Language of the synthetic world: ground-truth referring expressions and web-like captions.

:func:`referring_expressions` are the *human labels* of the world. They follow the incremental minimal
distinguishing rule: name the category; while other objects of that category remain, add the attribute (colour,
size or pattern) that rules out the most of them; if some still remain, add a location word relative to the
remaining ones (last, and never in the ``refcoco+`` style). Wording varies with synonyms and templates per style:

- ``refcoco``: short, article optional, location as a prefix or suffix ("left red circle", "red circle on the left");
- ``refcoco+``: the same without any location word;
- ``phrasecut``: no articles, location as "... on left side" (domain B's phrasing).

:func:`web_captions` imitate web alt-text: correct but not conditioned on the other objects (a random subset of the
object's attributes, sometimes a visible neighbour). They train the synthetic captioner and are never used as labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ris.synthetic.scene import Scene, SceneObject

STYLES = ("refcoco", "refcoco+", "phrasecut")
ATTRIBUTES = ("color", "size", "pattern")
ADJECTIVE_ORDER = ("size", "pattern", "color")

NOUNS = {
    "circle": ("circle", "disk"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
    "diamond": ("diamond",),
    "cross": ("cross", "plus"),
    "ring": ("ring", "donut"),
    "heart": ("heart",),
    "hexagon": ("hexagon",),
    "crescent": ("crescent", "moon"),
    "arrow": ("arrow",),
}
ADJECTIVES = {
    "small": ("small", "little"),
    "big": ("big", "large"),
    "plain": ("plain",),
    "striped": ("striped",),
}
LOCATION_PREFIX = {"left": "left", "right": "right", "top": "top", "bottom": "bottom", "middle": "middle"}
LOCATION_SUFFIX = {
    "refcoco": {
        "left": ("on the left", "at left"),
        "right": ("on the right", "at right"),
        "top": ("at the top", "on top"),
        "bottom": ("at the bottom", "on bottom"),
        "middle": ("in the middle",),
    },
    "phrasecut": {
        "left": ("on left side",),
        "right": ("on right side",),
        "top": ("on top",),
        "bottom": ("on bottom",),
        "middle": ("in middle",),
    },
}
RELATIONS = ("next to", "near", "with")
GENERIC_NOUN = "shape"


@dataclass(frozen=True)
class Expression:
    """A ground-truth referring expression and its structure.

    Attributes:
        text: the expression (lower case, words separated by single spaces).
        category: the canonical category name of the referent.
        attributes: the adjectives used, as written (e.g. ``("large", "red")``).
        location: the canonical location word used, or ``None``.
    """

    text: str
    category: str
    attributes: tuple[str, ...]
    location: str | None

    @property
    def type(self) -> str:
        """PhraseCut phrase type: ``name``, ``attribute`` or ``verbose`` (with a location)."""
        if self.location is not None:
            return "verbose"
        return "attribute" if self.attributes else "name"


def _value(obj: SceneObject, attribute: str) -> str:
    return str(getattr(obj, attribute))


def minimal_description(scene: Scene, obj: SceneObject, allow_location: bool) -> tuple[list[str], str | None]:
    """Attributes (in the order chosen) and location word of the minimal distinguishing description of ``obj``.

    Ties between attributes are broken by the order colour, size, pattern. The location word is relative to the
    objects that still match after the attributes; it is ``None`` when not needed, not allowed, or not decisive.
    """
    distractors = [o for o in scene.objects if o.id != obj.id and o.category == obj.category]
    chosen: list[str] = []
    remaining = list(ATTRIBUTES)
    while distractors and remaining:
        ruled_out = {a: sum(_value(d, a) != _value(obj, a) for d in distractors) for a in remaining}
        best = max(remaining, key=lambda a: ruled_out[a])
        if ruled_out[best] == 0:
            break
        chosen.append(best)
        remaining.remove(best)
        distractors = [d for d in distractors if _value(d, best) == _value(obj, best)]
    location = location_word(obj, distractors) if distractors and allow_location else None
    return chosen, location


def location_word(obj: SceneObject, others: list[SceneObject]) -> str | None:
    """The location word that singles ``obj`` out of ``others``.

    ``obj`` must be the extreme one on an axis by a visible gap (at least 2 px and a quarter of its box size); the
    axis with the larger gap wins. Otherwise, among three, the one between the others horizontally is the middle one.
    """
    x, y = obj.center
    min_gap = max(2.0, 0.25 * max(obj.bbox[2], obj.bbox[3]))
    centers = [o.center for o in others]
    options: list[tuple[float, str]] = []
    for value, coords, low, high in ((x, [c[0] for c in centers], "left", "right"),
                                     (y, [c[1] for c in centers], "top", "bottom")):
        if value <= min(coords) - min_gap:
            options.append((min(coords) - value, low))
        elif value >= max(coords) + min_gap:
            options.append((value - max(coords), high))
    if options:
        return max(options)[1]
    if len(others) == 2:
        xs = sorted(c[0] for c in centers)
        if xs[0] < x < xs[1]:
            return "middle"
    return None


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _render(
    obj: SceneObject, attributes: list[str], location: str | None, style: str, rng: np.random.Generator
) -> Expression:
    adjectives = []
    for attribute in ADJECTIVE_ORDER:
        if attribute in attributes:
            value = _value(obj, attribute)
            adjectives.append(_pick(rng, ADJECTIVES.get(value, (value,))))
    noun = _pick(rng, NOUNS[obj.category])
    words = [*adjectives, noun]
    if style == "phrasecut":
        if location is not None:
            words.append(_pick(rng, LOCATION_SUFFIX["phrasecut"][location]))
    else:
        if location is not None:
            if rng.random() < 0.5:
                words.insert(0, LOCATION_PREFIX[location])
            else:
                words.append(_pick(rng, LOCATION_SUFFIX["refcoco"][location]))
        if rng.random() < 0.4:
            words.insert(0, "the")
    return Expression(" ".join(words), obj.category, tuple(adjectives), location)


def referring_expressions(
    scene: Scene, obj: SceneObject, style: str = "refcoco", rng: np.random.Generator | None = None
) -> list[Expression]:
    """1–3 distinct ground-truth expressions for ``obj`` in ``scene`` (see the module docstring).

    The first is the minimal description; further ones re-word it or add one redundant attribute (still correct).
    """
    if style not in STYLES:
        raise ValueError(f"unknown expression style {style!r}; expected one of {STYLES}")
    rng = rng if rng is not None else np.random.default_rng(0)
    attributes, location = minimal_description(scene, obj, allow_location=style != "refcoco+")
    wanted = int(rng.integers(1, 4))
    expressions: list[Expression] = []
    for attempt in range(3 * wanted):
        extra = list(attributes)
        unused = [a for a in ATTRIBUTES if a not in attributes]
        if attempt % 2 == 1 and unused:
            extra.append(_pick(rng, tuple(unused)))
        expression = _render(obj, extra, location, style, rng)
        if expression.text not in {e.text for e in expressions}:
            expressions.append(expression)
        if len(expressions) == wanted:
            break
    return expressions


def _visible_neighbours(scene: Scene, obj: SceneObject, margin: float = 0.2) -> list[SceneObject]:
    """Objects whose box meets ``obj``'s box enlarged by ``margin`` on each side (what a crop would show)."""
    x, y, w, h = obj.bbox
    x0, y0, x1, y1 = x - margin * w, y - margin * h, x + w * (1 + margin), y + h * (1 + margin)
    return [
        o
        for o in scene.objects
        if o.id != obj.id
        and o.bbox[0] < x1
        and o.bbox[0] + o.bbox[2] > x0
        and o.bbox[1] < y1
        and o.bbox[1] + o.bbox[3] > y0
    ]


def _caption_phrase(obj: SceneObject, rng: np.random.Generator) -> str:
    attributes = [a for a in ADJECTIVE_ORDER if rng.random() < 0.5 and not (a == "pattern" and obj.pattern == "plain")]
    adjectives = [_pick(rng, ADJECTIVES.get(_value(obj, a), (_value(obj, a),))) for a in attributes]
    noun = GENERIC_NOUN if adjectives and rng.random() < 0.25 else _pick(rng, NOUNS[obj.category])
    return " ".join([*adjectives, noun])


def web_captions(scene: Scene, obj: SceneObject, rng: np.random.Generator, n: int = 1) -> list[str]:
    """``n`` web-like captions of ``obj``: correct, but a random subset of its attributes and not distinctive.

    About a third mention a neighbour visible in the object's crop ("a red circle next to a blue box").
    """
    neighbours = _visible_neighbours(scene, obj)
    captions = []
    for _ in range(n):
        text = _caption_phrase(obj, rng)
        if neighbours and rng.random() < 0.35:
            other = neighbours[int(rng.integers(len(neighbours)))]
            other_text = _caption_phrase(other, rng)
            text = f"{text} {_pick(rng, RELATIONS)} {_article(other_text)} {other_text}"
        prefix = _pick(rng, ("a", "a photo of a", ""))
        if prefix:
            text = f"{prefix[:-1]}{_article(text)} {text}"
        captions.append(text)
    return captions


def _article(phrase: str) -> str:
    return "an" if phrase[0] in "aeiou" else "a"
