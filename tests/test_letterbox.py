import pytest
import torch

from ris.letterbox import CLIP_MEAN, CLIP_STD, letterbox_image, letterbox_mask, letterbox_matrix, unletterbox


@pytest.mark.parametrize("h,w", [(30, 50), (50, 30), (40, 40)])
def test_letterbox_matrix_centres_and_scales(h, w):
    m = letterbox_matrix(h, w, 100)
    s = min(100 / h, 100 / w)
    assert m[0, 0] == pytest.approx(s) and m[1, 1] == pytest.approx(s)
    assert m[0, 2] == pytest.approx((100 - w * s) / 2)
    assert m[1, 2] == pytest.approx((100 - h * s) / 2)


def test_letterbox_image_border_is_zero_after_normalisation():
    image = torch.randint(0, 256, (3, 20, 40), dtype=torch.uint8)
    out, m = letterbox_image(image, 64)
    assert out.shape == (3, 64, 64)
    assert torch.allclose(out[:, :5, :], torch.zeros(3, 5, 64), atol=1e-5)  # top padding rows
    # a pixel inside: the centre of the image maps to the centre of the input
    centre = image[:, 10, 20].float() / 255
    expected = (centre - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert out[:, 32, 32].sub(expected).abs().max() < 0.6  # interpolated, not exact


def test_mask_letterbox_then_inverse_reproduces_mask():
    # Nearest-free round trip: warp up (linear) then back (linear) and threshold at 0.5.
    # Interpolation may flip pixels only on the object's 1-pixel border; the interior is exact.
    mask = torch.zeros(37, 53, dtype=torch.bool)
    mask[5:30, 10:45] = True
    m = letterbox_matrix(37, 53, 416)
    soft = letterbox_mask(mask, m, 416)
    back = unletterbox(soft, m, (37, 53), mode="bilinear")[0] > 0.5
    inter, union = (back & mask).sum().item(), (back | mask).sum().item()
    assert inter / union == 1.0
