"""The one image decoder (issue #12 item 7, #17 items 1 and 6): orientation, bit depth, colour modes, pixel budget;
the working resolution of the mask sources; the segmenter's heap merge against the brute-force rule."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ris.formats.images import ImageDecodeError, ImageTooLargeError, decode_rgb
from ris.pseudo.masks import SegmenterMaskSource, at_working_resolution
from tests.image_files import png_bomb_header, quadrant_image, save_16bit_png, save_exif_rotated_jpeg


def test_exif_rotated_jpeg_is_decoded_upright(tmp_path: Path) -> None:
    stored = quadrant_image(40, 64)  # landscape as stored; orientation 6 displays it rotated 90° clockwise
    image = decode_rgb(save_exif_rotated_jpeg(tmp_path / "phone.jpg", stored))
    assert image.shape == (64, 40, 3)
    # after a clockwise turn the stored top-left (red) is at the top right, the bottom-left (blue) at the top left
    assert np.abs(image[5, 35].astype(int) - (255, 0, 0)).max() < 40
    assert np.abs(image[5, 5].astype(int) - (0, 0, 255)).max() < 40
    assert np.abs(image[60, 35].astype(int) - (0, 255, 0)).max() < 40


def test_16bit_png_is_scaled_not_flat_white(tmp_path: Path) -> None:
    values = np.tile(np.linspace(0, 65535, 50).astype(np.uint16), (20, 1))
    image = decode_rgb(save_16bit_png(tmp_path / "scan.png", values))
    assert image.shape == (20, 50, 3) and image.dtype == np.uint8
    assert image[0, 0, 0] == 0 and image[0, -1, 0] == 255 and 120 <= image[0, 25, 0] <= 135
    assert np.array_equal(image[..., 0], image[..., 2])
    np.testing.assert_array_equal(image[0, :, 0], np.round(values[0].astype(float) * 255 / 65535).astype(np.uint8))


def test_palette_cmyk_and_float_images_become_rgb(tmp_path: Path) -> None:
    palette = Image.new("P", (4, 3))
    palette.putpalette([0, 0, 0, 200, 10, 20] + [0] * 762)
    palette.putpixel((1, 1), 1)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "palette.png")
    rgb = decode_rgb(tmp_path / "palette.png")
    assert rgb.shape == (3, 4, 3) and tuple(rgb[1, 1]) == (200, 10, 20)
    Image.new("CMYK", (5, 2), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    assert tuple(decode_rgb(tmp_path / "cmyk.jpg")[0, 0]) == pytest.approx((255, 0, 0), abs=3)
    Image.fromarray(np.full((2, 3), 0.5, dtype=np.float32), "F").save(tmp_path / "float.tiff")
    assert decode_rgb(tmp_path / "float.tiff")[0, 0].tolist() == [128, 128, 128]


def test_pixel_budget_refuses_before_decoding(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb_header(20000, 20000))
    assert bomb.stat().st_size == 74
    for budget in (None, 10**6):
        with pytest.raises(ImageTooLargeError, match=r"bomb.png: 400.0 MP is above PIL's decompression-bomb limit"):
            decode_rgb(bomb, max_pixels=budget)
    small_bomb = tmp_path / "small_bomb.png"
    small_bomb.write_bytes(png_bomb_header(10000, 9000))
    with pytest.raises(ImageTooLargeError, match=r"small_bomb.png: 10000x9000 \(WxH\) = 90.0 MP is above the pixel "
                       r"budget of 89.5 MP \(max_pixels\)"):
        decode_rgb(small_bomb)
    Image.fromarray(quadrant_image(60, 80)).save(tmp_path / "photo.png")
    with pytest.raises(ImageTooLargeError, match=r"80x60 \(WxH\) = 0.0 MP is above the pixel budget of 0.0 MP"):
        decode_rgb(tmp_path / "photo.png", max_pixels=4799)
    assert decode_rgb(tmp_path / "photo.png", max_pixels=4800).shape == (60, 80, 3)
    assert decode_rgb((tmp_path / "photo.png").read_bytes()).shape == (60, 80, 3)


def test_missing_broken_link_and_garbage_files(tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone.jpg", tmp_path / "link.jpg")
    with pytest.raises(FileNotFoundError, match=r"link.jpg: broken symbolic link \(to .*gone.jpg\)"):
        decode_rgb(tmp_path / "link.jpg")
    with pytest.raises(FileNotFoundError, match="image file not found: .*none.jpg"):
        decode_rgb(tmp_path / "none.jpg")
    with pytest.raises(ImageDecodeError, match=r"<bytes>: cannot decode the image \(UnidentifiedImageError"):
        decode_rgb(b"not an image")


def _scene(height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.full((height, width, 3), 30, dtype=np.uint8) + rng.integers(0, 6, (height, width, 3), dtype=np.uint8)
    image[height // 4 : height // 2, width // 5 : width // 2] = (220, 40, 40)
    image[height // 2 : 3 * height // 4, 3 * width // 5 : 4 * width // 5] = (40, 200, 60)
    return image


def test_large_images_are_segmented_at_the_working_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    source = SegmenterMaskSource(max_pixels=80 * 60)
    seen = []
    propose = source._propose
    monkeypatch.setattr(source, "_propose", lambda image: seen.append(image.shape) or propose(image))
    image = _scene(300, 400)
    masks = source(image, "big")
    assert seen == [(60, 80, 3)] and masks.shape[1:] == (300, 400) and len(masks) >= 2
    red = np.zeros((300, 400), dtype=bool)
    red[75:150, 80:200] = True
    best = max((m & red).sum() / (m | red).sum() for m in masks)
    assert best > 0.9
    assert source.settings()["max_pixels"] == 4800
    small = _scene(60, 80)
    seen.clear()
    source(small, "small")
    assert seen == [(60, 80, 3)], "images within the budget run at full resolution"


def test_working_resolution_maps_masks_back_by_nearest() -> None:
    image = np.zeros((10, 20, 3), dtype=np.uint8)

    def left_half(small: np.ndarray) -> np.ndarray:
        mask = np.zeros(small.shape[:2], dtype=bool)
        mask[:, : small.shape[1] // 2] = True
        return mask[None]

    out = at_working_resolution(left_half, image, max_pixels=50)
    assert out.shape == (1, 10, 20) and out[0, :, :10].all() and not out[0, :, 10:].any()
    assert at_working_resolution(left_half, image, None).shape == (1, 10, 20)


def _brute_force_merge(source: SegmenterMaskSource, labels: np.ndarray, smooth: np.ndarray) -> np.ndarray:
    """The merge rule stated plainly: recompute every adjacent pair's weight, merge the lowest (lowest labels on
    ties, into the lower label) while it is below 1."""
    count = labels.max() + 1
    total = np.stack([np.bincount(labels.ravel(), smooth[..., c].ravel(), minlength=count) for c in range(3)], 1)
    pixels = np.bincount(labels.ravel(), minlength=count).astype(float)
    root = np.arange(count)
    while True:
        current = root[labels]
        pairs = np.concatenate([np.stack([current[:, :-1].ravel(), current[:, 1:].ravel()], 1),
                                np.stack([current[:-1].ravel(), current[1:].ravel()], 1)])
        pairs = np.unique(np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1), axis=0)
        if not len(pairs):
            return current
        mean = total / pixels[:, None]
        weights = source._merge_weights(mean[pairs[:, 0]], mean[pairs[:, 1]])
        best = int(weights.argmin())
        if weights[best] >= 1:
            return current
        keep, gone = pairs[best]
        total[keep] += total[gone]
        pixels[keep] += pixels[gone]
        root[root == gone] = keep


def test_heap_merge_equals_the_brute_force_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    from skimage import segmentation

    source = SegmenterMaskSource()
    smooth = _scene(40, 56).astype(np.float64) + np.random.default_rng(1).normal(0, 12, (40, 56, 3))
    labels = segmentation.felzenszwalb(smooth, scale=source.params["scale"], sigma=0,
                                       min_size=source.params["min_size"])
    assert labels.max() > 5
    np.testing.assert_array_equal(source._segment(smooth), _brute_force_merge(source, labels, smooth))
