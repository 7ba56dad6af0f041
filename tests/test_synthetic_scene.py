from collections import Counter

import numpy as np
import pytest

from ris.synthetic.scene import (
    AREA,
    CATEGORIES,
    COLORS,
    MIN_VISIBLE_FRACTION,
    PATTERNS,
    SIZES,
    make_scene,
    shape_area,
    shape_mask,
)


def scenes(domain: str, count: int, size: int = 64):
    return [make_scene(np.random.default_rng([7, i]), domain, size) for i in range(count)]


def test_same_generator_state_gives_the_same_scene():
    a = make_scene(np.random.default_rng(5), "A", 64)
    b = make_scene(np.random.default_rng(5), "A", 64)
    np.testing.assert_array_equal(a.image, b.image)
    assert [(o.category, o.color, o.size, o.pattern, o.position, o.bbox) for o in a.objects] == [
        (o.category, o.color, o.size, o.pattern, o.position, o.bbox) for o in b.objects
    ]
    for oa, ob in zip(a.objects, b.objects):
        np.testing.assert_array_equal(oa.mask, ob.mask)
    c = make_scene(np.random.default_rng(6), "A", 64)
    assert not np.array_equal(a.image, c.image) or a.image.shape != c.image.shape


@pytest.mark.parametrize("domain", ["A", "B"])
def test_scene_invariants(domain):
    for scene in scenes(domain, 40):
        h, w = scene.size
        assert max(h, w) == 64 and min(h, w) >= 48
        assert scene.image.dtype == np.uint8 and scene.image.shape == (h, w, 3)
        assert 2 <= len(scene.objects) <= 8
        union = np.zeros((h, w), int)
        for i, obj in enumerate(scene.objects):
            assert obj.id == i
            assert obj.category in CATEGORIES[domain]
            assert obj.color in COLORS and obj.size in SIZES and obj.pattern in PATTERNS
            assert obj.mask.shape == (h, w) and obj.mask.any()
            ys, xs = np.nonzero(obj.mask)
            assert obj.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            union += obj.mask
        assert union.max() == 1  # visible parts never overlap


def test_domains_differ_in_categories_and_palette():
    a = Counter(o.category for s in scenes("A", 60) for o in s.objects)
    b = Counter(o.category for s in scenes("B", 60) for o in s.objects)
    unseen = {"hexagon", "crescent", "arrow"}
    assert not unseen & set(a)
    assert unseen <= set(b)
    # The same colour name is rendered differently: mean red pixel of the two domains.
    red = {d: np.mean([s.image[o.mask].mean(0) for s in scenes(d, 60) for o in s.objects
                       if o.color == "red" and o.pattern == "plain"], axis=0) for d in "AB"}
    assert np.abs(red["A"] - red["B"]).max() > 20


@pytest.mark.parametrize("domain", ["A", "B"])
def test_scenes_follow_the_refcoco_protocol(domain):
    """Every scene has referred objects, each with a same-category distractor it differs from in colour, size or
    pattern; clutter objects are the only ones of their category; both kinds are common."""
    all_scenes = scenes(domain, 100)
    with_clutter = 0
    for scene in all_scenes:
        referred, clutter = scene.referred, scene.clutter
        assert referred and len(referred) + len(clutter) == len(scene.objects)
        counts = Counter(o.category for o in scene.objects)
        for obj in referred:
            distractors = scene.distractors(obj)
            assert distractors and all(d.category == obj.category for d in distractors)
            assert all((d.color, d.size, d.pattern) != (obj.color, obj.size, obj.pattern) for d in distractors)
        assert all(counts[o.category] == 1 and not scene.distractors(o) for o in clutter)
        with_clutter += bool(clutter)
    per_scene = np.mean([len(s.referred) for s in all_scenes])
    assert 2.0 <= per_scene <= 3.5  # RefCOCO: 2.50 referred objects per image
    assert 40 <= with_clutter <= 90


def test_scenes_often_contain_similar_objects():
    same_color = [len({o.color for o in s.referred}) < len(s.referred) for s in scenes("A", 100)]
    assert sum(same_color) >= 30


@pytest.mark.parametrize("size", [64, 96])
def test_object_sizes_are_areas_of_the_image_in_the_intended_range(size):
    areas = []
    for scene in scenes("A", 60, size):
        h, w = scene.size
        for obj in scene.objects:
            fraction = obj.mask.sum() / (h * w)
            low, high = AREA[obj.size]
            # the visible part: at least MIN_VISIBLE_FRACTION of the drawn area; polygon outlines add up to a fifth
            # at 64 px
            assert MIN_VISIBLE_FRACTION * low * 0.9 <= fraction <= high * 1.2
            areas.append(fraction)
    areas = np.array(areas)
    assert (areas < 0.02).mean() < 0.05  # old world: 42 % under 2 % of the image
    assert 0.04 <= np.median(areas) <= 0.09


def test_position_words_are_relative_to_the_same_category():
    for scene in scenes("A", 60):
        groups = Counter(o.category for o in scene.objects)
        for category, n in groups.items():
            if n < 2:
                continue
            members = [o for o in scene.objects if o.category == category]
            horizontal = Counter(o.position[0] for o in members)
            assert horizontal["left"] == 1 and horizontal["right"] == 1
            assert horizontal["middle"] == n - 2


@pytest.mark.parametrize("category", sorted(set(CATEGORIES["A"]) | set(CATEGORIES["B"])))
def test_every_shape_fits_its_radius(category):
    mask = shape_mask(category, 20.0, 20.0, 10.0, 40, 40)
    ys, xs = np.nonzero(mask)
    assert mask.sum() > 40
    assert np.hypot(xs - 20, ys - 20).max() <= 10 * 1.15
    assert 1.2 <= shape_area(category) <= np.pi * 1.01


def test_shape_areas_match_geometry():
    assert shape_area("circle") == pytest.approx(np.pi, rel=0.01)
    assert shape_area("square") == pytest.approx(1.6**2, rel=0.02)
    assert shape_area("diamond") == pytest.approx(2.0, rel=0.02)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="unknown domain 'C'"):
        make_scene(np.random.default_rng(0), "C", 64)
    with pytest.raises(ValueError, match="at least 32"):
        make_scene(np.random.default_rng(0), "A", 16)
    with pytest.raises(ValueError, match="unknown shape category 'blob'"):
        shape_mask("blob", 5, 5, 3, 10, 10)
