import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from scipy import ndimage

from ris.synthetic.polygons import coco_polygons, phrasecut_polygons


def random_masks(count: int = 60):
    rng = np.random.default_rng(0)
    for trial in range(count):
        h, w = (int(v) for v in rng.integers(4, 30, 2))
        if trial % 2:
            yield rng.random((h, w)) < 0.5  # speckle: many components, diagonal pinches, holes
        else:
            yield ndimage.gaussian_filter(rng.random((h, w)), 1.5) > 0.5


def ring(size: int = 21) -> np.ndarray:
    ys, xs = np.mgrid[:size, :size]
    d = np.hypot(xs - size // 2, ys - size // 2)
    return (d <= 9) & (d >= 4)


def decode_coco(polygons, h, w) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))).astype(bool)


def draw_phrasecut(polygons, h, w) -> np.ndarray:
    out = np.zeros((h, w), bool)
    for polygon in polygons:
        canvas = Image.new("L", (w, h), 0)
        ImageDraw.Draw(canvas).polygon([(int(x), int(y)) for x, y in polygon], outline=1, fill=1)
        out |= np.asarray(canvas) > 0
    return out


@pytest.mark.parametrize("mask", [ring(), *random_masks()], ids=lambda m: f"{m.shape[0]}x{m.shape[1]}")
def test_polygons_rasterise_back_to_the_exact_mask(mask):
    if not mask.any():
        assert coco_polygons(mask) == [] and phrasecut_polygons(mask) == []
        return
    h, w = mask.shape
    coco = coco_polygons(mask)
    assert all(len(p) >= 8 and len(p) % 2 == 0 for p in coco)
    np.testing.assert_array_equal(decode_coco(coco, h, w), mask)
    np.testing.assert_array_equal(draw_phrasecut(phrasecut_polygons(mask), h, w), mask)


def test_a_ring_is_cut_into_hole_free_parts():
    polygons = coco_polygons(ring())
    assert len(polygons) == 2  # upper and lower half; a single outline would fill the hole
    for polygon in polygons:
        part = decode_coco([polygon], 21, 21)
        filled = ndimage.binary_fill_holes(part)
        np.testing.assert_array_equal(filled, part)


def test_a_rectangle_is_four_corners():
    mask = np.zeros((10, 12), bool)
    mask[3:7, 2:6] = True
    assert coco_polygons(mask) == [[2.0, 3.0, 6.0, 3.0, 6.0, 7.0, 2.0, 7.0]]
    assert phrasecut_polygons(mask) == [[[2, 3], [5, 3], [5, 6], [2, 6]]]
