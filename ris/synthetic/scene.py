"""Procedural scenes of the synthetic referring world: coloured shapes on a textured background.

Every scene is a pure function of its random generator. :func:`make_scene` follows RefCOCO's collection protocol
(``docs/synthetic_world.md`` §2): a scene holds one or two *groups* of 2–4 objects of one category each (the objects
that get referring expressions: each one has at least one same-category distractor), and 0–2 *clutter* objects of
other categories, one of each, which are annotated but never referred (as the other objects of a COCO image).
Objects have a category (shape), a colour, a relative size (small / big) and a pattern (plain / striped); the
members of a group always differ in at least one of colour, size and pattern (a referring expression can single each
one out), and often share their colour (similar distractors). Sizes are areas relative to the image (:data:`AREA`),
so that even small objects span several cells of a RIS model's token grid. Objects are placed with small overlaps
and rendered in a random order (later objects occlude earlier ones; each object's mask is its *visible* part).

Two domains: ``"A"`` (the default, grey noisy backgrounds) and ``"B"`` (a shifted palette, warm gradient backgrounds
with diagonal texture, and three categories never seen in A).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = {
    "A": ("circle", "square", "triangle", "star", "diamond", "cross", "ring", "heart"),
    "B": ("circle", "square", "triangle", "star", "ring", "hexagon", "crescent", "arrow"),
}
COLORS = ("red", "green", "blue", "yellow", "orange", "purple", "pink", "white")
SIZES = ("small", "big")
PATTERNS = ("plain", "striped")
DOMAINS = tuple(CATEGORIES)

PALETTES = {
    "A": {
        "red": (220, 40, 40),
        "green": (40, 170, 60),
        "blue": (40, 80, 220),
        "yellow": (235, 215, 50),
        "orange": (245, 140, 30),
        "purple": (140, 60, 180),
        "pink": (240, 130, 190),
        "white": (240, 240, 240),
    },
    "B": {
        "red": (185, 25, 60),
        "green": (25, 135, 95),
        "blue": (35, 55, 165),
        "yellow": (250, 240, 115),
        "orange": (230, 110, 60),
        "purple": (110, 40, 140),
        "pink": (250, 170, 215),
        "white": (215, 225, 240),
    },
}

# Area of an object's full (unoccluded) shape as a fraction of the image area, per relative size.
AREA = {"small": (0.03, 0.06), "big": (0.08, 0.14)}
MAX_RADIUS = 0.28  # of the shorter side, so that two big objects of a group always fit side by side
MIN_VISIBLE_FRACTION = 0.6
# Protocol of a scene (docs/synthetic_world.md §2): size of the first referred group and its probabilities, the chance
# of a second group (of two), and the number of clutter objects with its probabilities.
GROUP_SIZES = ((2, 3, 4), (0.55, 0.35, 0.10))
SECOND_GROUP = 0.2
CLUTTER = ((0, 1, 2), (0.3, 0.4, 0.3))
SAME_COLOR = 0.5
STRIPED = 0.3
PLACEMENT_TRIES = 50
LAYOUT_TRIES = 20


@dataclass
class SceneObject:
    """One object of a scene.

    Attributes:
        id: index of the object in its scene (drawing order).
        category, color, size, pattern: the attribute values (canonical names).
        position: location words relative to the other objects of the same category (``left``/``right``/
            ``middle`` and ``top``/``bottom``); relative to the image when the object is the only one of its kind
            (a clutter object).
        mask: ``(H, W)`` bool visible part.
        bbox: ``[x, y, w, h]`` of the visible part (pixel units, COCO convention).
    """

    id: int
    category: str
    color: str
    size: str
    pattern: str
    position: tuple[str, ...]
    mask: np.ndarray
    bbox: tuple[float, float, float, float]

    @property
    def center(self) -> tuple[float, float]:
        """``(x, y)`` centre of the visible bounding box."""
        x, y, w, h = self.bbox
        return x + w / 2, y + h / 2


@dataclass
class Scene:
    """A rendered scene: ``image`` uint8 ``(H, W, 3)`` RGB and its objects (in drawing order)."""

    image: np.ndarray
    objects: list[SceneObject] = field(default_factory=list)
    domain: str = "A"

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.image.shape[0], self.image.shape[1]

    def distractors(self, obj: SceneObject) -> list[SceneObject]:
        """The other objects of ``obj``'s category."""
        return [o for o in self.objects if o.id != obj.id and o.category == obj.category]

    @property
    def referred(self) -> list[SceneObject]:
        """The objects that get referring expressions: those with at least one same-category distractor."""
        counts = Counter(o.category for o in self.objects)
        return [o for o in self.objects if counts[o.category] >= 2]

    @property
    def clutter(self) -> list[SceneObject]:
        """The objects never referred: the only one of their category in the scene."""
        counts = Counter(o.category for o in self.objects)
        return [o for o in self.objects if counts[o.category] == 1]


@dataclass
class _Draft:
    category: str
    color: str
    size: str
    pattern: str
    cx: float = 0.0
    cy: float = 0.0
    radius: float = 0.0
    full_mask: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))


def _polygon_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([(float(x), float(y)) for x, y in points], fill=1)
    return np.asarray(canvas, dtype=bool)


def _regular(n: int, radius: float, phase: float) -> np.ndarray:
    angles = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def shape_mask(category: str, cx: float, cy: float, r: float, height: int, width: int) -> np.ndarray:
    """``(H, W)`` bool mask of a full (unoccluded) shape of ``category`` centred at ``(cx, cy)`` with radius ``r``."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    dx, dy = xs - cx, ys - cy
    dist = np.hypot(dx, dy)
    if category == "circle":
        return dist <= r
    if category == "ring":
        return (dist <= r) & (dist >= 0.55 * r)
    if category == "crescent":
        return (dist <= r) & (np.hypot(dx - 0.45 * r, dy + 0.1 * r) > 0.8 * r)
    if category == "heart":
        u, v = dx / (0.8 * r), 0.2 - dy / (0.8 * r)
        return (u**2 + v**2 - 1) ** 3 - u**2 * v**3 <= 0
    outlines = {
        "square": np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]]) * r,
        "diamond": _regular(4, r, -np.pi / 2),
        "triangle": _regular(3, r, -np.pi / 2) + np.array([0.0, 0.15 * r]),
        "hexagon": _regular(6, r, 0.0),
        "star": np.stack(
            [_regular(5, r, -np.pi / 2), _regular(5, 0.45 * r, -np.pi / 2 + np.pi / 5)], axis=1
        ).reshape(10, 2),
        "cross": np.array(
            [[-0.3, -1], [0.3, -1], [0.3, -0.3], [1, -0.3], [1, 0.3], [0.3, 0.3], [0.3, 1], [-0.3, 1], [-0.3, 0.3],
             [-1, 0.3], [-1, -0.3], [-0.3, -0.3]]
        ) * r,
        "arrow": np.array([[-1, -0.3], [0.1, -0.3], [0.1, -0.75], [1, 0], [0.1, 0.75], [0.1, 0.3], [-1, 0.3]]) * r,
    }
    if category not in outlines:
        raise ValueError(f"unknown shape category {category!r}")
    return _polygon_mask(outlines[category] + np.array([cx, cy]), height, width)


def _background(rng: np.random.Generator, domain: str, height: int, width: int) -> np.ndarray:
    """Float ``(H, W, 3)`` background in [0, 255]."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    if domain == "A":
        base = rng.uniform(95, 150) + rng.uniform(-12, 12, size=3)
        blobs = sum(
            rng.uniform(-15, 15) * np.cos(2 * np.pi * (xs * fx + ys * fy) / max(height, width) + rng.uniform(0, 6.3))
            for fx, fy in rng.integers(1, 4, size=(3, 2))
        )
        image = base[None, None, :] + blobs[..., None] + rng.normal(0, 10, size=(height, width, 3))
    else:
        top = np.array([rng.uniform(170, 215), rng.uniform(140, 180), rng.uniform(90, 130)])
        bottom = top - rng.uniform(30, 60)
        t = (ys / max(height - 1, 1))[..., None]
        stripes = 12 * np.sign(np.sin(2 * np.pi * (xs + ys) / rng.uniform(5, 9)))[..., None]
        image = (1 - t) * top + t * bottom + stripes + rng.normal(0, 6, size=(height, width, 3))
    return image


def _paint(image: np.ndarray, mask: np.ndarray, rgb: tuple[int, int, int], pattern: str, radius: float,
           rng: np.random.Generator) -> None:
    color = np.array(rgb, dtype=np.float64)
    ys, _ = np.nonzero(mask)
    shade = np.ones(len(ys))
    if pattern == "striped":
        period = max(2, round(radius / 3))
        shade = np.where((ys // period) % 2 == 1, 0.5, 1.0)
    image[mask] = shade[:, None] * color[None, :] + rng.normal(0, 5, size=(len(ys), 3))


def _position_words(index: int, drafts: list[_Draft], height: int, width: int) -> tuple[str, ...]:
    target = drafts[index]
    group = [d for d in drafts if d.category == target.category]
    if len(group) == 1:
        words = []
        if target.cx < width / 3:
            words.append("left")
        elif target.cx > 2 * width / 3:
            words.append("right")
        else:
            words.append("middle")
        if target.cy < height / 3:
            words.append("top")
        elif target.cy > 2 * height / 3:
            words.append("bottom")
        return tuple(words)
    xs = sorted(d.cx for d in group)
    ys = sorted(d.cy for d in group)
    words = ["left" if target.cx == xs[0] else "right" if target.cx == xs[-1] else "middle"]
    if target.cy == ys[0]:
        words.append("top")
    elif target.cy == ys[-1]:
        words.append("bottom")
    return tuple(words)


@cache
def shape_area(category: str) -> float:
    """Area of the full shape of ``category`` divided by its radius squared (a circle: π)."""
    radius = 100.0
    return float(shape_mask(category, 120.0, 120.0, radius, 240, 240).sum()) / radius**2


def _attributes(rng: np.random.Generator, category: str) -> _Draft:
    return _Draft(
        category=category,
        color=str(rng.choice(COLORS)),
        size=str(rng.choice(SIZES)),
        pattern="striped" if rng.random() < STRIPED else "plain",
    )


def _group(rng: np.random.Generator, category: str, count: int) -> list[_Draft]:
    """``count`` objects of ``category`` whose (colour, size, pattern) differ pairwise; the second one shares the
    first one's colour with probability :data:`SAME_COLOR`."""
    members = [_attributes(rng, category)]
    same_color = rng.random() < SAME_COLOR
    taken = {(members[0].color, members[0].size, members[0].pattern)}
    for i in range(1, count):
        draft = _attributes(rng, category)
        if i == 1 and same_color:
            draft.color = members[0].color
        while (draft.color, draft.size, draft.pattern) in taken:
            redrawn = _attributes(rng, category)
            draft.size, draft.pattern = redrawn.size, redrawn.pattern
            if (draft.color, draft.size, draft.pattern) in taken:
                draft.color = redrawn.color
        taken.add((draft.color, draft.size, draft.pattern))
        members.append(draft)
    return members


def _draft_objects(rng: np.random.Generator, domain: str) -> list[_Draft]:
    """The objects of a scene (see the module docstring): one or two referred groups, then the clutter."""
    categories = list(CATEGORIES[domain])
    n_groups = 2 if rng.random() < SECOND_GROUP else 1
    n_clutter = int(rng.choice(CLUTTER[0], p=CLUTTER[1]))
    chosen = [str(c) for c in rng.choice(categories, size=n_groups + n_clutter, replace=False)]
    sizes = [int(rng.choice(GROUP_SIZES[0], p=GROUP_SIZES[1])), 2][:n_groups]
    drafts = [d for category, count in zip(chosen, sizes) for d in _group(rng, category, count)]
    return drafts + [_attributes(rng, category) for category in chosen[n_groups:]]


def _place(rng: np.random.Generator, drafts: list[_Draft], height: int, width: int) -> list[_Draft]:
    """Place ``drafts`` in a random drawing order; an object that finds no free spot in
    :data:`PLACEMENT_TRIES` draws is left out."""
    placed: list[_Draft] = []
    for index in rng.permutation(len(drafts)):
        draft = drafts[int(index)]
        low, high = AREA[draft.size]
        area = rng.uniform(low, high) * height * width
        draft.radius = min(np.sqrt(area / shape_area(draft.category)), MAX_RADIUS * min(height, width))
        for _ in range(PLACEMENT_TRIES):
            draft.cx = rng.uniform(draft.radius, width - draft.radius)
            draft.cy = rng.uniform(draft.radius, height - draft.radius)
            if all(np.hypot(draft.cx - p.cx, draft.cy - p.cy) >= 0.8 * (draft.radius + p.radius) for p in placed):
                draft.full_mask = shape_mask(draft.category, draft.cx, draft.cy, draft.radius, height, width)
                if _visible_enough([*placed, draft]):
                    placed.append(draft)
                    break
    return placed


def make_scene(rng: np.random.Generator, domain: str = "A", image_size: int = 96) -> Scene:
    """Draw one scene; deterministic given the state of ``rng``.

    The longer image side is ``image_size``; the other side is drawn in ``[0.75, 1] · image_size`` (landscape or
    portrait), so that the letterbox transform is exercised. A layout in which no two objects of one category could
    be placed is drawn again (at most :data:`LAYOUT_TRIES` times), so that a scene always has a referred object.
    """
    if domain not in CATEGORIES:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    short = round(image_size * rng.uniform(0.75, 1.0))
    height, width = (short, image_size) if rng.random() < 0.5 else (image_size, short)
    drafts = _draft_objects(rng, domain)
    for _ in range(LAYOUT_TRIES):
        placed = _place(rng, drafts, height, width)
        if max(Counter(d.category for d in placed).values(), default=0) >= 2:
            break
    image = _background(rng, domain, height, width)
    palette = PALETTES[domain]
    visible: list[np.ndarray] = []
    for i, draft in enumerate(placed):
        _paint(image, draft.full_mask, palette[draft.color], draft.pattern, draft.radius, rng)
        visible.append(draft.full_mask & ~_covered_by(placed[i + 1 :], (height, width)))
    objects = [
        SceneObject(
            id=i,
            category=d.category,
            color=d.color,
            size=d.size,
            pattern=d.pattern,
            position=_position_words(i, placed, height, width),
            mask=mask,
            bbox=_bbox(mask),
        )
        for i, (d, mask) in enumerate(zip(placed, visible))
    ]
    return Scene(image=np.clip(np.round(image), 0, 255).astype(np.uint8), objects=objects, domain=domain)


def _visible_enough(drafts: list[_Draft]) -> bool:
    """Whether every object keeps at least :data:`MIN_VISIBLE_FRACTION` of its area visible (and is non-empty)."""
    for i, draft in enumerate(drafts):
        area = draft.full_mask.sum()
        covered = _covered_by(drafts[i + 1 :], draft.full_mask.shape)
        if area == 0 or (draft.full_mask & ~covered).sum() < MIN_VISIBLE_FRACTION * area:
            return False
    return True


def _covered_by(drafts: list[_Draft], shape: tuple[int, int]) -> np.ndarray:
    covered = np.zeros(shape, dtype=bool)
    for draft in drafts:
        covered |= draft.full_mask
    return covered


def _bbox(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)
