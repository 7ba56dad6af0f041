import math

import pytest
import torch

from ris.models import CRIS, ETRIS
from ris.models.base import count_parameters
from ris.models.decoder import VisionLanguageDecoder
from ris.models.positional import sine_1d, sine_2d
from ris.models.projector import Projector
from ris.tokenizer import tokenize

BACKBONES = ["tiny-RN", "tiny-ViT", "tiny-coca", "timm:test_resnet"]
COMMON = {"pretrained": None, "text_backbone": "tiny-RN", "text_pretrained": None, "input_size": 64}
TINY = {
    CRIS: dict(fpn_out=(16, 32, 64), nhead=2, dim_ffn=64, **COMMON),
    ETRIS: dict(bridge_dim=16, neck_dim=32, neck_heads=2, nhead=2, dim_ffn=32, **COMMON),
}


def _forward_backward(model):
    tokens = tokenize(model.tokenizer, ["a red circle", "the blue square on the left"], 8)
    logits = model(torch.randn(2, 3, 64, 64), tokens)
    loss = model.loss(logits, (torch.rand(2, 1, 64, 64) > 0.5).float())
    loss.backward()
    return logits, loss


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("cls", [CRIS, ETRIS])
def test_forward_backward_shapes_and_gradients(cls, backbone):
    torch.manual_seed(0)
    model = cls(backbone=backbone, **TINY[cls])
    logits, loss = _forward_backward(model)
    assert tuple(logits.shape) == (2, 1, 16, 16)
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for _, p in trainable), [
        n for n, p in trainable if p.grad is None
    ]
    for part in ("neck", "decoder", "projector"):
        assert any(p.grad.abs().sum() > 0 for p in getattr(model, part).parameters()), part
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    if cls is CRIS:
        assert frozen == []
    else:
        assert frozen and all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)
        unfrozen = [n for n, _ in model.backbone.named_parameters() if _.requires_grad]
        assert unfrozen and all("positional_embedding" in n for n in unfrozen)
        assert any(p.grad.abs().sum() > 0 for p in model.bridger.parameters())


def test_etris_freezes_everything_but_positional_embeddings():
    model = ETRIS(backbone="tiny-RN", **TINY[ETRIS])
    trainable_backbone = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable_backbone == {"visual.net.attnpool.positional_embedding", "text.positional_embedding"}
    assert not model.backbone.visual.net.attnpool.connect[0].weight.requires_grad
    assert model.bridger.kind == "conv" and model.bridger.interact_v[0].self_attn.num_heads == 4
    vit = ETRIS(backbone="tiny-ViT", **TINY[ETRIS])
    assert vit.bridger.kind == "vit" and vit.bridger.interact_v[0].attn.num_heads == 8
    expected = sum(
        p.numel()
        for p in [
            *vit.bridger.parameters(),
            *vit.neck.parameters(),
            *vit.decoder.parameters(),
            *vit.projector.parameters(),
        ]
    )
    expected += vit.backbone.visual.net.positional_embedding.numel() + vit.backbone.text.positional_embedding.numel()
    assert count_parameters(vit, trainable=True) == expected


def test_param_groups_follow_the_papers():
    cris = CRIS(backbone="tiny-RN", **TINY[CRIS])
    head, backbone = cris.param_groups()
    assert (head.name, head.lr_mult, backbone.name, backbone.lr_mult) == ("head", 1.0, "backbone", 0.1)
    head_ids, backbone_ids = {id(p) for p in head.params}, {id(p) for p in backbone.params}
    assert id(cris.backbone.text.positional_embedding) in head_ids
    assert id(cris.backbone.visual.net.attnpool.positional_embedding) in head_ids
    assert id(cris.backbone.text.token_embedding.weight) in backbone_ids
    assert id(cris.backbone.visual.net.attnpool.connect[0].weight) in backbone_ids
    assert len(head_ids | backbone_ids) == len(list(cris.parameters())) and not head_ids & backbone_ids
    optimizer = cris.configure_optimizers()["optimizer"]
    assert [g["lr"] for g in optimizer.param_groups] == [1e-4, pytest.approx(1e-5)]
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["weight_decay"] == 0
    etris = ETRIS(backbone="tiny-ViT", **TINY[ETRIS])
    (head,) = etris.param_groups()
    trainable = {id(p) for p in etris.parameters() if p.requires_grad}
    assert {id(p) for p in etris.bridger.parameters()} <= {id(p) for p in head.params}
    assert {id(p) for p in head.params if p.requires_grad} == trainable, "every trainable parameter, once"
    assert [g["lr"] for g in etris.configure_optimizers()["optimizer"].param_groups] == [1e-4]


def test_loss_resizes_the_soft_mask_with_nearest_top_left_pixels():
    model = CRIS(backbone="tiny-ViT", **TINY[CRIS])
    mask = torch.zeros(1, 1, 8, 8)
    mask[0, 0, ::4, ::4] = 1.0  # only the top-left pixel of each 4x4 block is on
    logits = torch.full((1, 1, 2, 2), 3.0)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(1, 1, 2, 2))
    assert model.loss(logits, mask).item() == pytest.approx(expected.item())


def test_sine_encodings_follow_cris():
    pe = sine_1d(8, 5)
    assert pe[3, 0].item() == pytest.approx(math.sin(3)) and pe[3, 1].item() == pytest.approx(math.cos(3))
    assert pe[2, 2].item() == pytest.approx(math.sin(2 * math.exp(-2 * math.log(10000) / 8)))
    grid = sine_2d(8, 2, 3)  # (H*W, C): channels 0-3 encode x, 4-7 encode y
    assert grid.shape == (6, 8)
    row1_col2 = grid[1 * 3 + 2]
    assert row1_col2[0].item() == pytest.approx(math.sin(2)) and row1_col2[4].item() == pytest.approx(math.sin(1))
    with pytest.raises(ValueError, match="divisible by 4"):
        sine_2d(6, 2, 2)


def test_decoder_and_projector_parameter_counts_match_cris():
    assert count_parameters(VisionLanguageDecoder(3, 512, 8, 2048, 0.1, 512)) == 12_631_552
    assert count_parameters(VisionLanguageDecoder(3, 512, 8, 512, 0.1, 512)) == 7_899_136
    assert count_parameters(Projector(1024, 256, 3)) == 5_968_897


def test_projector_applies_each_samples_own_kernel():
    projector = Projector(state_dim=4, in_dim=2, kernel_size=1).eval()
    x, state = torch.randn(3, 4, 2, 2), torch.randn(3, 4)
    out = projector(x, state)
    assert out.shape == (3, 1, 8, 8)
    feats, params = projector.vis(x), projector.txt(state)
    for b in range(3):
        expected = (feats[b] * params[b, :2].view(2, 1, 1)).sum(0) + params[b, 2]
        torch.testing.assert_close(out[b, 0], expected)
