"""Procedural scenes of the synthetic referring world: coloured shapes on a textured background.

Every scene is a pure function of its random generator: :func:`make_scene` draws 2–5 objects with a category (shape),
a colour, a relative size (small / big) and a pattern (plain / striped), places them with small overlaps, and
renders them in order (later objects occlude earlier ones; each object's mask is its *visible* part). Scenes
deliberately repeat categories and colours, so that a correct description of one object often fits another too.

Two domains: ``"A"`` (the default, grey noisy backgrounds) and ``"B"`` (a shifted palette, warm gradient backgrounds
with diagonal texture, and three categories never seen in A).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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

# Radius ranges as fractions of the shorter image side.
RADIUS = {"small": (0.07, 0.10), "big": (0.13, 0.18)}
MIN_VISIBLE_FRACTION = 0.6


@dataclass
class SceneObject:
    """One object of a scene.

    Attributes:
        id: index of the object in its scene (drawing order).
        category, color, size, pattern: the attribute values (canonical names).
        position: location words relative to the other objects of the same category (``left``/``right``/
            ``middle`` and ``top``/``bottom``); relative to the image when the object is the only one of its kind.
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


def _draft_attributes(rng: np.random.Generator, domain: str, count: int) -> list[_Draft]:
    """Attributes of ``count`` objects, often repeating a category and a colour (similar distractors)."""
    categories = CATEGORIES[domain]
    drafts = [
        _Draft(
            category=str(rng.choice(categories)),
            color=str(rng.choice(COLORS)),
            size=str(rng.choice(SIZES)),
            pattern="striped" if rng.random() < 0.3 else "plain",
        )
        for _ in range(count)
    ]
    if rng.random() < 0.75:
        repeated = str(rng.choice(categories))
        members = rng.choice(count, size=int(rng.integers(2, min(3, count) + 1)), replace=False)
        for m in members:
            drafts[int(m)].category = repeated
        if rng.random() < 0.5:
            drafts[int(members[1])].color = drafts[int(members[0])].color
    return drafts


def make_scene(rng: np.random.Generator, domain: str = "A", image_size: int = 96) -> Scene:
    """Draw one scene; deterministic given the state of ``rng``.

    The longer image side is ``image_size``; the other side is drawn in ``[0.75, 1] · image_size`` (landscape or
    portrait), so that the letterbox transform is exercised.
    """
    if domain not in CATEGORIES:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    short = round(image_size * rng.uniform(0.75, 1.0))
    height, width = (short, image_size) if rng.random() < 0.5 else (image_size, short)
    drafts = _draft_attributes(rng, domain, int(rng.integers(2, 6)))

    placed: list[_Draft] = []
    for draft in drafts:
        low, high = RADIUS[draft.size]
        draft.radius = rng.uniform(low, high) * min(height, width)
        for _ in range(50):
            draft.cx = rng.uniform(draft.radius, width - draft.radius)
            draft.cy = rng.uniform(draft.radius, height - draft.radius)
            if all(np.hypot(draft.cx - p.cx, draft.cy - p.cy) >= 0.8 * (draft.radius + p.radius) for p in placed):
                draft.full_mask = shape_mask(draft.category, draft.cx, draft.cy, draft.radius, height, width)
                if _visible_enough([*placed, draft]):
                    placed.append(draft)
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
