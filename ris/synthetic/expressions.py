"""Language of the synthetic world: ground-truth referring expressions and web-like captions.

:func:`referring_expressions` are the *human labels* of the world; each one is true of its object and singles it out
among the objects of its category (``docs/synthetic_world.md`` §3). The speaker starts from the incremental minimal
distinguishing rule: name the category; while other objects of that category remain, add the attribute (colour, size
or pattern) that rules out the most of them; if some still remain, add a location word relative to the remaining
ones. On top of that rule each style has its own speaker, as its dataset's annotators did:

- ``refcoco``: short; often leads with a decisive location word instead of attributes (:data:`LOCATION_FIRST`; the
  interactive ReferItGame favoured "left one"), location as a prefix or suffix ("left red circle", "red circle on the
  left"), article optional;
- ``refcoco+``: attributes only, never a location word (the RefCOCO+ rule);
- ``refcocog``: longer, non-interactive descriptions: the colour is always named, often one attribute more, and
  usually a relation to a nearby object ("the red circle to the left of the blue star", :data:`RELATION_SHARE`);
- ``phrasecut``: no articles, location as "... on left side" (domain B's phrasing); an object without a
  same-category distractor (clutter) is named by its category.

All styles sometimes name the colour although it is not needed (over-specification, :data:`REDUNDANT_COLOR`).

:func:`web_captions` imitate web alt-text: correct but not conditioned on the other objects (a random subset of the
object's attributes, sometimes a visible neighbour). They train the synthetic captioner and are never used as labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ris.synthetic.scene import Scene, SceneObject

STYLES = ("refcoco", "refcoco+", "refcocog", "phrasecut")
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
LOCATION_WORDS = tuple(LOCATION_PREFIX)
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
# RefCOCOg relations to another object: canonical predicate -> phrasings.
RELATION_PHRASES = {
    "left": ("left of", "to the left of"),
    "right": ("right of", "to the right of"),
    "above": ("above",),
    "below": ("below", "under"),
    "near": ("next to", "near", "beside"),
}
RELATIVE_CLAUSE = "that is"
RELATIONS = ("next to", "near", "with")
GENERIC_NOUN = "shape"

# Speaker habits (docs/synthetic_world.md §3).
LOCATION_FIRST = 0.5
REDUNDANT_COLOR = 0.3
REDUNDANT_ATTRIBUTE = 0.3
RELATION_SHARE = 0.8
REFCOCO_ARTICLE = 0.4
CLAUSE_SHARE = 0.25


@dataclass(frozen=True)
class Expression:
    """A ground-truth referring expression and its structure.

    Attributes:
        text: the expression (lower case, words separated by single spaces).
        category: the canonical category name of the referent.
        attributes: the adjectives used, as written (e.g. ``("large", "red")``).
        location: the canonical location word used, or ``None``.
        relation: the canonical relation predicate (a key of :data:`RELATION_PHRASES`), or ``None``.
        relatum: the scene id of the object the relation refers to, or ``None``.
    """

    text: str
    category: str
    attributes: tuple[str, ...]
    location: str | None
    relation: str | None = None
    relatum: int | None = None

    @property
    def type(self) -> str:
        """PhraseCut phrase type: ``name``, ``attribute``, ``relation`` or ``verbose`` (with a location)."""
        if self.location is not None:
            return "verbose"
        if self.relation is not None:
            return "relation"
        return "attribute" if self.attributes else "name"


def _value(obj: SceneObject, attribute: str) -> str:
    return str(getattr(obj, attribute))


def minimal_description(scene: Scene, obj: SceneObject, allow_location: bool) -> tuple[list[str], str | None]:
    """Attributes (in the order chosen) and location word of the minimal distinguishing description of ``obj``.

    Ties between attributes are broken by the order colour, size, pattern. The location word is relative to the
    objects that still match after the attributes; it is ``None`` when not needed, not allowed, or not decisive.
    """
    distractors = scene.distractors(obj)
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


def _min_gap(obj: SceneObject) -> float:
    """The smallest centre offset that reads as "left of" / "above" for ``obj``: 2 px and a quarter of its box."""
    return max(2.0, 0.25 * max(obj.bbox[2], obj.bbox[3]))


def location_word(obj: SceneObject, others: list[SceneObject]) -> str | None:
    """The location word that singles ``obj`` out of ``others``.

    ``obj`` must be the extreme one on an axis by a visible gap (at least 2 px and a quarter of its box size); the
    axis with the larger gap wins. Otherwise, among three, the one between the others horizontally is the middle one.
    """
    x, y = obj.center
    min_gap = _min_gap(obj)
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


def location_holds(obj: SceneObject, others: list[SceneObject], location: str) -> bool:
    """Whether ``location`` is true of ``obj`` against ``others`` as :func:`location_word` reads it (an extreme by a
    visible gap, or the one between two others for ``middle``); true against no others."""
    if not others:
        return True
    x, y = obj.center
    gap = _min_gap(obj)
    xs, ys = [o.center[0] for o in others], [o.center[1] for o in others]
    return {
        "left": x <= min(xs) - gap,
        "right": x >= max(xs) + gap,
        "top": y <= min(ys) - gap,
        "bottom": y >= max(ys) + gap,
        "middle": len(others) == 2 and min(xs) < x < max(xs),
    }[location]


def _singles_out(scene: Scene, obj: SceneObject, attributes: list[str], location: str | None) -> bool:
    """Whether the category, ``attributes`` and ``location`` of ``obj`` fit ``obj`` and no other object."""
    candidates = [o for o in scene.objects if o.category == obj.category
                  and all(_value(o, a) == _value(obj, a) for a in attributes)]

    def fits(c: SceneObject) -> bool:
        return location is None or location_holds(c, [o for o in candidates if o.id != c.id], location)

    return [c.id for c in candidates if fits(c)] == [obj.id]


def relation(obj: SceneObject, other: SceneObject, scene: Scene) -> str | None:
    """The relation predicate of ``obj`` to ``other`` (``obj`` is *left of* / *above* ... ``other``), or ``None``.

    ``left``/``right`` when the horizontal centre offset is at least the vertical one and a visible gap
    (:func:`location_word`'s); ``above``/``below`` likewise vertically; otherwise ``near`` when the two boxes are
    closer than a quarter of the image's longer side; else no clear relation.
    """
    (x, y), (ox, oy) = obj.center, other.center
    dx, dy = ox - x, oy - y
    gap = _min_gap(obj)
    if abs(dx) >= max(abs(dy), gap):
        return "left" if dx > 0 else "right"
    if abs(dy) > max(abs(dx), gap):
        return "above" if dy > 0 else "below"
    return "near" if np.hypot(dx, dy) < 0.25 * max(scene.size) else None


def _relatum(scene: Scene, obj: SceneObject) -> tuple[SceneObject, str] | None:
    """The object a RefCOCOg speaker relates ``obj`` to: the nearest object of another category with a clear
    relation (else the nearest one of the same category), and the predicate."""
    x, y = obj.center
    others = sorted((o for o in scene.objects if o.id != obj.id),
                    key=lambda o: (o.category == obj.category, np.hypot(o.center[0] - x, o.center[1] - y)))
    for other in others:
        predicate = relation(obj, other, scene)
        if predicate is not None:
            return other, predicate
    return None


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(phrase: str) -> str:
    return "an" if phrase[0] in "aeiou" else "a"



def _noun_phrase(obj: SceneObject, attributes: list[str], rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """``(adjectives, words)`` of ``obj`` described by ``attributes`` (adjectives in English order, then the noun)."""
    adjectives = [_pick(rng, ADJECTIVES.get(_value(obj, a), (_value(obj, a),))) for a in ADJECTIVE_ORDER
                  if a in attributes]
    return adjectives, [*adjectives, _pick(rng, NOUNS[obj.category])]


def _with_extras(scene: Scene, obj: SceneObject, attributes: list[str], location: str | None,
                 rng: np.random.Generator, color: float) -> list[str]:
    """``attributes`` plus the colour with probability ``color`` and one more unused attribute with probability
    :data:`REDUNDANT_ATTRIBUTE` (over-specification), unless the additions would make ``location`` wrong (a "middle"
    one needs its two neighbours among the objects that still fit)."""
    chosen = list(attributes)
    if "color" not in chosen and rng.random() < color:
        chosen.append("color")
    unused = [a for a in ATTRIBUTES if a not in chosen]
    if unused and rng.random() < REDUNDANT_ATTRIBUTE:
        chosen.append(_pick(rng, tuple(unused)))
    if _singles_out(scene, obj, attributes, location) and not _singles_out(scene, obj, chosen, location):
        return list(attributes)
    return chosen


def _speak(scene: Scene, obj: SceneObject, style: str, rng: np.random.Generator) -> Expression:
    """One expression of ``obj`` in ``style`` (see the module docstring)."""
    attributes, location = minimal_description(scene, obj, allow_location=style != "refcoco+")
    distractors = scene.distractors(obj)
    if style == "refcoco" and distractors and rng.random() < LOCATION_FIRST:
        leading = location_word(obj, distractors)
        if leading is not None:
            attributes, location = [], leading
    if style == "refcocog":
        return _speak_refcocog(scene, obj, attributes, location, rng)
    attributes = _with_extras(scene, obj, attributes, location, rng, REDUNDANT_COLOR)
    adjectives, words = _noun_phrase(obj, attributes, rng)
    if location is not None:
        if style == "refcoco" and rng.random() < 0.5:
            words.insert(0, LOCATION_PREFIX[location])
        else:
            words.append(_pick(rng, LOCATION_SUFFIX["phrasecut" if style == "phrasecut" else "refcoco"][location]))
    if style != "phrasecut" and rng.random() < REFCOCO_ARTICLE:
        words.insert(0, "the")
    return Expression(" ".join(words), obj.category, tuple(adjectives), location)


def _speak_refcocog(scene: Scene, obj: SceneObject, attributes: list[str], location: str | None,
                    rng: np.random.Generator) -> Expression:
    attributes = _with_extras(scene, obj, attributes, location, rng, color=1.0)
    adjectives, words = _noun_phrase(obj, attributes, rng)
    words.insert(0, "the" if rng.random() < 0.5 else _article(words[0]))
    related = _relatum(scene, obj) if location is None and rng.random() < RELATION_SHARE else None
    clause = RELATIVE_CLAUSE.split() if rng.random() < CLAUSE_SHARE else []
    if related is not None:
        other, predicate = related
        other_attributes, _ = minimal_description(scene, other, allow_location=False)
        _, other_words = _noun_phrase(other, _with_extras(scene, other, other_attributes, None, rng, 1.0), rng)
        words += [*clause, *_pick(rng, RELATION_PHRASES[predicate]).split(), "the", *other_words]
        return Expression(" ".join(words), obj.category, tuple(adjectives), None, predicate, other.id)
    distractors = scene.distractors(obj)
    if location is None and distractors and rng.random() < 0.5:
        fitting = [d for d in distractors if all(_value(d, a) == _value(obj, a) for a in attributes)]
        location = location_word(obj, fitting or distractors)
    if location is not None:
        words += [*clause, *_pick(rng, LOCATION_SUFFIX["refcoco"][location]).split()]
    return Expression(" ".join(words), obj.category, tuple(adjectives), location)


def expression_count(style: str, rng: np.random.Generator) -> int:
    """How many expressions an object gets: 1–4 (mean 2.8) in the RefCOCO styles, 1–2 (mean 1.9) in the RefCOCOg
    style, 1–3 in PhraseCut's."""
    if style in ("refcoco", "refcoco+"):
        return 1 + int(rng.binomial(3, 0.6))
    if style == "refcocog":
        return 1 + int(rng.random() < 0.9)
    return int(rng.integers(1, 4))


def referring_expressions(
    scene: Scene, obj: SceneObject, style: str = "refcoco", rng: np.random.Generator | None = None
) -> list[Expression]:
    """Distinct ground-truth expressions for ``obj`` in ``scene`` (:func:`expression_count` of them, fewer when the
    speaker repeats itself; see the module docstring). Each one is drawn independently, like the expressions of
    different annotators."""
    if style not in STYLES:
        raise ValueError(f"unknown expression style {style!r}; expected one of {STYLES}")
    rng = rng if rng is not None else np.random.default_rng(0)
    wanted = expression_count(style, rng)
    expressions: list[Expression] = []
    for _ in range(3 * wanted):
        expression = _speak(scene, obj, style, rng)
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

