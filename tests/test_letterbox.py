import pytest
import torch

from ris.contracts import InputSpec
from ris.letterbox import (
    CLIP_MEAN,
    CLIP_STD,
    letterbox_mask,
    letterbox_matrix,
    network_input,
    squash_matrix,
    unletterbox,
    warp_affine,
)


@pytest.mark.parametrize("h,w", [(30, 50), (50, 30), (40, 40)])
def test_letterbox_matrix_centres_and_scales(h, w):
    m = letterbox_matrix(h, w, 100)
    s = min(100 / h, 100 / w)
    assert m[0, 0] == pytest.approx(s) and m[1, 1] == pytest.approx(s)
    assert m[0, 2] == pytest.approx((100 - w * s) / 2)
    assert m[1, 2] == pytest.approx((100 - h * s) / 2)


def test_letterbox_image_border_is_zero_after_normalisation():
    image = torch.randint(0, 256, (3, 20, 40), dtype=torch.uint8)
    out, m = network_input(image, InputSpec(64))
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


def test_squash_resizes_each_axis_and_inverts_exactly():
    m = squash_matrix(20, 40, 8)
    assert m.tolist() == [[0.2, 0.0, 0.2 * 0.5 - 0.5], [0.0, 0.4, 0.4 * 0.5 - 0.5]]
    # pixel areas map onto pixel areas: the original's edges go to the input's edges
    corners = m @ torch.tensor([[-0.5, -0.5, 1.0], [39.5, 19.5, 1.0]], dtype=torch.float64).T
    assert torch.allclose(corners.T, torch.tensor([[-0.5, -0.5], [7.5, 7.5]], dtype=torch.float64))
    image = torch.randint(0, 256, (3, 20, 40), dtype=torch.uint8)
    spec = InputSpec(8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize="squash")
    out, matrix = network_input(image, spec)
    assert torch.equal(matrix, m) and out.shape == (3, 8, 8)
    flat = torch.full((3, 20, 40), 255, dtype=torch.uint8)
    assert torch.allclose(network_input(flat, spec)[0], torch.ones(3, 8, 8)), "(1 - 0.5) / 0.5 everywhere, no border"
    mask = torch.zeros(20, 40, dtype=torch.bool)
    mask[5:15, 10:30] = True
    soft = warp_affine(mask.float()[None], squash_matrix(20, 40, 200), (200, 200), mode="bilinear")
    back = unletterbox(soft, squash_matrix(20, 40, 200), (20, 40), mode="bilinear")[0] > 0.5
    assert torch.equal(back, mask)
