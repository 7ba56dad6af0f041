"""Crops of the generator (exact boxes, margins, clamping, padding, fill, resize) and the RGB loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ris.formats.files import load_rgb
from ris.letterbox import CLIP_MEAN, CLIP_STD
from ris.pseudo.crops import crop_window, default_fill, make_crops, mask_boxes, pad_square

MEAN = torch.tensor(CLIP_MEAN).view(3, 1, 1)
STD = torch.tensor(CLIP_STD).view(3, 1, 1)


def normalise(hwc: np.ndarray) -> torch.Tensor:
    """``(h, w, 3)`` uint8 → ``(3, h, w)`` CLIP-normalised float."""
    return (torch.from_numpy(hwc).permute(2, 0, 1).float() / 255 - MEAN) / STD


def test_default_fill_is_the_official_colour() -> None:
    fill = default_fill(CLIP_MEAN, CLIP_STD)
    assert fill == pytest.approx((155.8, 147.3, 132.8), abs=0.05)
    normalised = (torch.tensor(fill) / 255 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(normalised, torch.tensor(CLIP_MEAN), atol=1e-6)


def test_mask_boxes_are_inclusive_and_reject_empty_masks() -> None:
    masks = np.zeros((2, 6, 8), dtype=bool)
    masks[0, 1:4, 2:7] = True
    masks[1, 5, 0] = True
    assert mask_boxes(masks).tolist() == [[2, 1, 6, 3], [0, 5, 0, 5]]
    masks[1] = False
    with pytest.raises(ValueError, match="mask 1 is empty"):
        mask_boxes(masks)


def test_crop_window_margins_and_clamping() -> None:
    box = [10, 20, 19, 29]  # 10 x 10 pixels
    assert crop_window(box, 1.0, 100, 100) == (20, 10, 30, 20)  # exact box, width x_max - x_min + 1
    assert crop_window(box, 1.2, 100, 100) == (19, 9, 31, 21)  # 1 pixel of context per side
    assert crop_window(box, 1.1, 100, 100) == (19, 9, 31, 21)  # 0.5 px per side: every touched pixel
    assert crop_window([0, 0, 9, 9], 1.2, 100, 100) == (0, 0, 11, 11)  # clamped at the top-left
    assert crop_window([90, 95, 99, 99], 1.2, 100, 100) == (94, 89, 100, 100)  # clamped at the bottom-right
    assert crop_window([5, 5, 5, 5], 1.2, 10, 10) == (4, 4, 7, 7)  # a 1-pixel mask keeps its pixel


def test_pad_square_centres_with_remainder_right() -> None:
    crop = torch.zeros(3, 2, 5)
    fill = torch.tensor([1.0, 2.0, 3.0])
    out = pad_square(crop, fill)
    assert out.shape == (3, 5, 5)
    assert torch.equal(out[:, 1:3, :], torch.zeros(3, 2, 5))  # pad_top = (5 - 2) // 2 = 1, bottom gets 2
    assert torch.equal(out[:, 0, 0], fill) and torch.equal(out[:, 3:, 2], fill[:, None].expand(3, 2))


def scene() -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(1).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    masks = np.zeros((2, 10, 12), dtype=bool)
    masks[0, 2:6, 3:7] = True  # 4 x 4 box
    masks[0, 2, 3] = False  # one hole inside the box
    masks[1, 6:10, 8:12] = True  # touches the bottom-right border
    return image, masks


def test_crops_exact_content_at_native_size() -> None:
    image, masks = scene()
    crops = make_crops(image, masks, size=4, mean=CLIP_MEAN, std=CLIP_STD)
    assert crops.shape == (4, 2, 3, 4, 4) and crops.dtype == torch.float32
    norm = normalise(image)
    expected_tight = norm[:, 2:6, 3:7]
    assert torch.allclose(crops[1, 0], expected_tight, atol=1e-6)  # type 1: plain tight box, no resize
    masked = crops[0, 0]
    assert torch.allclose(masked[:, 0, 0], MEAN.view(3), atol=1e-6)  # the hole gets the fill (normalised = mean)
    assert torch.allclose(masked[:, 1:, :], expected_tight[:, 1:, :], atol=1e-6)
    assert torch.allclose(crops[1, 1], norm[:, 6:10, 8:12], atol=1e-6)  # border mask: exact box


def test_context_crops_use_margins_and_clamp_at_the_border() -> None:
    image, masks = scene()
    norm = normalise(image)
    # factor 1.5 on the 4 x 4 box: 1 pixel per side -> rows 1..6, columns 2..7 (6 x 6), no padding needed
    crops = make_crops(image, masks, size=6, mean=CLIP_MEAN, std=CLIP_STD, margins=(1.0, 1.5))
    assert torch.allclose(crops[1, 0], norm[:, 1:7, 2:8], atol=1e-6)
    # the border mask: rows 5..9 and columns 7..11 after clamping (5 x 5) -> resized to 6
    expected = F.interpolate(norm[None, :, 5:10, 7:12], size=(6, 6), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(crops[1, 1], expected, atol=1e-6)


def test_padding_fill_and_custom_fill() -> None:
    image = np.full((6, 6, 3), 200, dtype=np.uint8)
    masks = np.zeros((1, 6, 6), dtype=bool)
    masks[0, 1:5, 2:4] = True  # 4 tall x 2 wide -> padded to 4 x 4 with 1 column each side
    crops = make_crops(image, masks, size=4, mean=CLIP_MEAN, std=CLIP_STD, margins=(1.0, 1.0))
    pixel = normalise(np.full((1, 1, 3), 200, dtype=np.uint8)).view(3)
    for t in range(2):
        assert torch.allclose(crops[t, 0][:, :, 0], MEAN.view(3, 1).expand(3, 4), atol=1e-6)
        assert torch.allclose(crops[t, 0][:, :, 3], MEAN.view(3, 1).expand(3, 4), atol=1e-6)
        assert torch.allclose(crops[t, 0][:, :, 1:3], pixel.view(3, 1, 1).expand(3, 4, 2), atol=1e-6)
    black = make_crops(image, masks, size=4, mean=CLIP_MEAN, std=CLIP_STD, margins=(1.0,), fill=(0, 0, 0))
    assert black.shape == (1, 1, 3, 4, 4)
    assert torch.allclose(black[0, 0][:, :, 0], (-MEAN / STD).view(3, 1).expand(3, 4), atol=1e-6)


def test_one_pixel_mask_and_layouts() -> None:
    image, _ = scene()
    masks = np.zeros((1, 10, 12), dtype=bool)
    masks[0, 4, 5] = True
    crops = make_crops(image, masks, size=3, mean=CLIP_MEAN, std=CLIP_STD)
    value = normalise(image)[:, 4, 5]
    assert torch.allclose(crops[0, 0], value.view(3, 1, 1).expand(3, 3, 3), atol=1e-6)  # 1x1 upsampled
    norm = normalise(image)
    assert torch.allclose(crops[3, 0], norm[:, 3:6, 4:7], atol=1e-6)  # factor 1.2: 1 pixel touched per side
    chw = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    assert torch.equal(make_crops(chw, masks, 3, CLIP_MEAN, CLIP_STD), crops)


def test_antialias_only_changes_downscaling_and_errors() -> None:
    image, masks = scene()
    plain = make_crops(image, masks, size=2, mean=CLIP_MEAN, std=CLIP_STD)
    smooth = make_crops(image, masks, size=2, mean=CLIP_MEAN, std=CLIP_STD, antialias=True)
    assert not torch.allclose(plain, smooth)
    assert make_crops(image, masks[:0], size=2, mean=CLIP_MEAN, std=CLIP_STD).shape == (4, 0, 3, 2, 2)
    with pytest.raises(ValueError, match=r"masks must be \(K, 10, 12\)"):
        make_crops(image, masks[:, :5], 2, CLIP_MEAN, CLIP_STD)
    with pytest.raises(ValueError, match="expected a uint8 image"):
        make_crops(image.astype(np.float32), masks, 2, CLIP_MEAN, CLIP_STD)
    with pytest.raises(ValueError, match="margins must be a non-empty list of factors >= 1"):
        make_crops(image, masks, 2, CLIP_MEAN, CLIP_STD, margins=(0.9,))


def test_load_rgb_converts_gray_and_rgba(tmp_path: Path) -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    out = load_rgb(tmp_path / "gray.png")
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    assert np.array_equal(out, np.repeat(gray[..., None], 3, axis=2))
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 250, 10
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    assert load_rgb(tmp_path / "rgba.png").tolist() == [[[250, 0, 0]] * 2] * 2


def test_load_rgb_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="image file not found: .*none.jpg"):
        load_rgb(tmp_path / "none.jpg")
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="notes.jpg: cannot decode the image"):
        load_rgb(tmp_path / "notes.jpg")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.jpg: cannot decode the image"):
        load_rgb(tmp_path / "cut.jpg")
