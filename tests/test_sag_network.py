"""SaG's torch network (ris.models.sag): real loading paths at tiny size, the attention maps it exposes, the
slot sampler, the loss, the schedule, the binarisation geometry and the full-size parameter count."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ris.letterbox import letterbox_matrix
from ris.models.sag.entity_discovery import EntityDiscovery, EntitySlots
from ris.models.sag.fusion import ModalityFusion
from ris.models.sag.loss import WarmupCosine, c3_loss, reconstruction_loss
from ris.models.sag.masks import grid_to_original, relevance_to_masks
from ris.models.sag.network import SaGNet
from ris.models.sag.text import BertSentenceEncoder, create_text_encoder, load_bert
from ris.models.sag.visual import ViTPatchEncoder
from ris.tokenizer import WordTokenizer, tokenize

from .sag_tiny import TINY_VIT, VIT_NAME, write_tiny_bert, write_tiny_vit

TINY_NET = {
    "dim": 48,
    "num_gaussians": 3,
    "samples": 2,
    "iterations": 3,
    "slot_head_dim": 12,
    "interaction_head_dim": 12,
    "fusion_head_dim": 12,
}


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sag")
    vit_state = write_tiny_vit(root / "vit.pth", img_size=48)
    bert = write_tiny_bert(root / "bert")
    return root, vit_state, bert


@pytest.fixture(scope="module")
def tiny_net(tiny_files):
    root, _, _ = tiny_files
    torch.manual_seed(0)
    visual = ViTPatchEncoder(VIT_NAME, str(root / "vit.pth"), input_size=64, overrides=TINY_VIT)
    text = create_text_encoder(str(root / "bert"), dim=TINY_NET["dim"])
    return SaGNet(visual, text, **TINY_NET).eval()


def _tokens(net: SaGNet, texts: list[str]) -> torch.Tensor:
    return tokenize(net.text.tokenizer, texts, 8)


def test_tiny_vit_file_loads_through_the_real_path_with_its_grid_resized(tiny_files, one_thread):
    root, saved, _ = tiny_files
    visual = ViTPatchEncoder(VIT_NAME, str(root / "vit.pth"), input_size=64, overrides=TINY_VIT)
    state = visual.net.state_dict()
    assert "head.weight" not in state  # the classifier is not built
    torch.testing.assert_close(state["patch_embed.proj.weight"], saved["patch_embed.proj.weight"])
    torch.testing.assert_close(state["blocks.1.mlp.fc2.weight"], saved["blocks.1.mlp.fc2.weight"])
    # saved for 48 px (6 x 6 patches + CLS), built for 64 px: timm resampled the grid to 8 x 8
    assert saved["pos_embed"].shape == (1, 37, 32) and state["pos_embed"].shape == (1, 65, 32)
    torch.testing.assert_close(state["pos_embed"][:, :1], saved["pos_embed"][:, :1])
    assert visual.grid == (8, 8) and visual.width == 32 and visual.mean == (0.5, 0.5, 0.5)
    tokens = visual(torch.randn(2, 3, 64, 64))
    assert tokens.shape == (2, 64, 32)
    # patch tokens come after the final LayerNorm (its weight and bias are the identity at init)
    torch.testing.assert_close(tokens.mean(-1), torch.zeros(2, 64), atol=1e-5, rtol=0)


def test_tiny_bert_folder_loads_through_the_real_path(tiny_files, one_thread):
    root, _, saved = tiny_files
    bert, tokenizer = load_bert(str(root / "bert"))
    torch.testing.assert_close(
        bert.embeddings.word_embeddings.weight, saved.embeddings.word_embeddings.weight
    )
    assert not hasattr(bert, "pooler") or bert.pooler is None
    assert (tokenizer.sot_id, tokenizer.eot_id, tokenizer.pad_id, tokenizer.vocab_size) == (2, 3, 0, 16)
    ids = tokenize(tokenizer, ["The red circle", "big"], 6)
    assert ids.tolist() == [[2, 5, 7, 14, 3, 0], [2, 10, 3, 0, 0, 0]]
    assert tokenizer.decode(ids[0].tolist()) == "the red circle"
    encoder = create_text_encoder(str(root / "bert"), dim=24)
    assert isinstance(encoder, BertSentenceEncoder)
    encoder.eval()
    out = encoder(ids)
    assert out.shape == (2, 24)
    # the sentence embedding is the projected [CLS] of BERT run with padding masked
    hidden = saved.eval()(input_ids=ids, attention_mask=(ids != 0).long())[0]
    torch.testing.assert_close(out, encoder.proj(hidden[:, 0]))
    # padding is masked: more padding leaves the sentence embedding unchanged
    torch.testing.assert_close(encoder(tokenize(tokenizer, ["big"], 10)), out[1:], atol=1e-5, rtol=1e-4)


def test_missing_bert_folder_and_offline_hub_names_fail_with_one_short_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    with pytest.raises(FileNotFoundError, match="BERT folder not found: ./nowhere/bert .*--model.text_encoder"):
        load_bert("./nowhere/bert")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"BERT weights 'bert-base-uncased' .*--model.text_encoder PATH"):
        load_bert("bert-base-uncased")
    with pytest.raises(FileNotFoundError, match=r"timm weights for 'vit_small_patch16_384' .*--model.vit_pretrained"):
        ViTPatchEncoder(VIT_NAME, "timm", input_size=32, overrides=TINY_VIT)
    with pytest.raises(FileNotFoundError, match="timm checkpoint file not found: .*--model.vit_pretrained"):
        ViTPatchEncoder(VIT_NAME, str(tmp_path / "missing.pth"), input_size=32, overrides=TINY_VIT)


def test_forward_shapes_and_the_attention_maps_it_exposes(tiny_net, one_thread):
    torch.manual_seed(1)
    image = torch.randn(3, 3, 64, 64)
    tokens = _tokens(tiny_net, ["the red circle", "a big square", "left"])
    out = tiny_net(image, tokens, all_pairs=True, reconstruct=True, noise="fixed")
    k, n = 6, 64
    assert out.text.shape == (3, 48) and out.features.shape == (3, n, 32) and out.slots.shape == (3, k, 48)
    assert out.slot_attention.shape == (3, k, n)
    assert out.fused.shape == (3, 3, 48) and out.fusion_attention.shape == (3, 3, k)
    assert out.reconstruction.shape == (3, n, 32)
    # A_slot: softmax over the slots at every patch (not over the patches, and before the per-slot renormalisation)
    torch.testing.assert_close(out.slot_attention.sum(dim=1), torch.ones(3, n))
    assert (out.slot_attention.sum(dim=2) - 1).abs().max() > 0.1
    # A_fuse: softmax over the slots; z is unit norm
    torch.testing.assert_close(out.fusion_attention.sum(dim=-1), torch.ones(3, 3))
    torch.testing.assert_close(out.fused.norm(dim=-1), torch.ones(3, 3))
    # matched pairs are the diagonal of all pairs
    matched = tiny_net(image, tokens, noise="fixed")
    torch.testing.assert_close(matched.fused, out.fused.diagonal().T)
    torch.testing.assert_close(matched.fusion_attention, out.fusion_attention.diagonal().T)
    assert matched.reconstruction is None
    relevance = matched.relevance()
    assert relevance.shape == (3, 8, 8)
    expected = (matched.fusion_attention[:, :, None] * matched.slot_attention).sum(dim=1).reshape(3, 8, 8)
    torch.testing.assert_close(relevance, expected)
    assert relevance.min() >= 0 and relevance.max() <= 1


def test_slot_attention_normalises_over_slots_then_renormalises_each_slot(one_thread):
    torch.manual_seed(0)
    module = EntityDiscovery(input_dim=8, dim=16, grid=(2, 3), num_gaussians=2, samples=2, iterations=1,
                             heads=2, head_dim=4, interaction_heads=2, interaction_head_dim=4, dropout=0.0).eval()
    inputs = module.input_proj(torch.randn(1, 6, 8)) + module.position
    keys, values = module.slot_attention.attn.keys_values(inputs)
    slots = torch.randn(1, 4, 16)
    update, weights = module.slot_attention(slots, keys, values)
    attn = module.slot_attention.attn
    q = attn.to_q(attn.norm(slots)).reshape(1, 4, 2, 4).transpose(1, 2)
    logits = q @ keys.transpose(-1, -2) / 2.0  # head_dim 4 -> scale 1/2
    expected = logits.softmax(dim=2)  # over the 4 slots
    torch.testing.assert_close(weights, expected)
    mixed = (expected / (expected.sum(-1, keepdim=True) + 1e-7)) @ values
    torch.testing.assert_close(update, attn.to_out(mixed.transpose(1, 2).reshape(1, 4, 8)))


def test_interaction_stays_within_each_gaussians_group(one_thread):
    torch.manual_seed(0)
    module = EntityDiscovery(input_dim=8, dim=16, grid=(2, 2), num_gaussians=3, samples=2, heads=2, head_dim=4,
                             interaction_heads=2, interaction_head_dim=4, dropout=0.0).eval()
    slots = torch.randn(1, 6, 16)
    changed = slots.clone()
    changed[0, 2:4] += torch.randn(2, 16)  # the two samples of Gaussian 1
    a, b = module.interact(slots), module.interact(changed)
    torch.testing.assert_close(a[0, [0, 1, 4, 5]], b[0, [0, 1, 4, 5]])
    assert (a[0, 2:4] - b[0, 2:4]).abs().max() > 1e-3
    # within a group the two samples do see each other
    other = slots.clone()
    other[0, 3] += torch.randn(16)
    assert (module.interact(other)[0, 2] - a[0, 2]).abs().max() > 1e-4


def test_entity_slots_sampling_modes():
    torch.manual_seed(0)
    sampler = EntitySlots(num_gaussians=3, samples=2, dim=512, noise_seed=7)
    assert sampler.mean.shape == (3, 512) and sampler.num_slots == 6
    bound = math.sqrt(6 / (4 * 512))
    assert sampler.mean.abs().max() <= bound
    torch.testing.assert_close(sampler.log_var.mean(), torch.tensor(math.log(1 / 512)), atol=0.01, rtol=0)
    mean = sampler(2, "mean")
    torch.testing.assert_close(mean[0, 0], sampler.mean[0]) and torch.testing.assert_close(mean[1, 5], sampler.mean[2])
    fixed = sampler(4, "fixed")
    torch.testing.assert_close(fixed, sampler(4, "fixed"))
    torch.testing.assert_close(fixed[0], fixed[3])  # the same noise for every image: batch composition is irrelevant
    torch.testing.assert_close(EntitySlots(3, 2, 512, noise_seed=7).fixed_noise("cpu", torch.float32),
                               sampler.fixed_noise("cpu", torch.float32))
    drawn = sampler(1000, "sample")
    assert not torch.allclose(drawn[0], drawn[1])
    # slot k is drawn from Gaussian k // Ks with std exp(logvar / 2), noise norm about 1
    std = (0.5 * sampler.log_var).exp()
    torch.testing.assert_close(drawn[:, 3].mean(0), sampler.mean[1], atol=4 * std.max().item() / 30, rtol=0)
    torch.testing.assert_close(drawn[:, 3].std(0), std[1], atol=0.2 * std.max().item(), rtol=0)
    assert 0.8 < ((drawn - sampler.mean.repeat_interleave(2, 0)).norm(dim=-1)).mean() < 1.2
    with pytest.raises(ValueError, match="slot noise must be"):
        sampler(1, "seeded")


def test_c3_loss_is_infonce_with_the_stop_gradient_on_the_text_target_only():
    torch.manual_seed(0)
    text = torch.randn(4, 8, requires_grad=True)
    weights = torch.randn(4, 8, 8)
    fused = F.normalize(torch.einsum("jd,ide->ije", text, weights), dim=-1)  # z(i, t_j) depends on t_j
    loss = c3_loss(text, fused)
    scores = torch.stack([torch.stack([text[j] @ fused[i, j] for i in range(4)]) for j in range(4)])
    torch.testing.assert_close(loss, F.cross_entropy(scores, torch.arange(4)))
    (grad,) = torch.autograd.grad(loss, text)
    detached = text.detach().requires_grad_()
    fused_only = F.normalize(torch.einsum("jd,ide->ije", detached, weights), dim=-1)
    (expected,) = torch.autograd.grad(c3_loss(text.detach(), fused_only), detached)
    torch.testing.assert_close(grad, expected)  # no gradient through the target role
    assert grad.abs().sum() > 0
    with pytest.raises(ValueError, match="B x B"):
        c3_loss(text, fused[:3])


def test_reconstruction_loss_targets_detached_features():
    features = torch.randn(2, 5, 3, requires_grad=True)
    recon = torch.zeros(2, 5, 3, requires_grad=True)
    loss = reconstruction_loss(recon, features)
    torch.testing.assert_close(loss, (features**2).mean())
    loss.backward()
    assert features.grad is None and recon.grad is not None


def test_fusion_attends_over_slots_per_text():
    torch.manual_seed(0)
    fusion = ModalityFusion(dim=16, heads=2, head_dim=4, dropout=0.0).eval()
    slots = torch.randn(3, 5, 16)
    text = torch.randn(2, 16)
    out = fusion(text, slots)
    assert out.fused.shape == (3, 2, 16) and out.attention.shape == (3, 2, 5)
    # each text attends on its own: dropping the other text changes nothing
    alone = fusion(text[:1], slots)
    torch.testing.assert_close(alone.fused[:, 0], out.fused[:, 0])
    with pytest.raises(ValueError, match="one text per image"):
        fusion(text, slots, all_pairs=False)


def test_warmup_then_cosine_factors():
    schedule = WarmupCosine(warmup=4, total=10)
    assert [schedule.loss_factor(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [schedule.lr_factor(s) for s in range(4)] == [1.0, 1.0, 1.0, 1.0]
    assert schedule.lr_factor(4) == pytest.approx(0.5 * (1 + math.cos(math.pi / 10)))
    assert schedule.lr_factor(8) == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert schedule.lr_factor(100) == pytest.approx(0.0)
    no_warmup = WarmupCosine(warmup=0, total=10)
    assert no_warmup.loss_factor(0) == 1.0 and no_warmup.lr_factor(0) == 1.0


def _squash_matrix(height: int, width: int, size: int) -> torch.Tensor:
    """Original pixel centre ``x`` → ``(x + 0.5) · size / width - 0.5`` (a plain resize), likewise ``y``."""
    sx, sy = size / width, size / height
    return torch.tensor([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]], dtype=torch.float64)


def test_squash_geometry_is_a_plain_bilinear_resize_to_the_original_size():
    torch.manual_seed(0)
    grid = torch.rand(6, 6)
    out = grid_to_original(grid, _squash_matrix(30, 50, 96), (30, 50), 96)
    expected = F.interpolate(grid[None, None], size=(30, 50), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("geometry", ["squash", "letterbox"])
def test_masks_land_on_the_original_pixels(geometry):
    """A hot top-left quarter of the input must give the top-left quarter of a non-square original image."""
    height, width, size = 40, 100, 64
    if geometry == "squash":
        affine = _squash_matrix(height, width, size)
        grid = torch.zeros(8, 8)
        grid[:4, :4] = 1.0  # top-left quarter of the squashed input
        expected = torch.zeros(height, width, dtype=torch.bool)
        expected[: height // 2, : width // 2] = True
    else:
        affine = letterbox_matrix(height, width, size)  # content fills rows 19.2..44.8 of the 64 px input
        grid = torch.zeros(64, 64)
        grid[32:, :32] = 1.0  # bottom-left quarter of the input = bottom half of the content's left half
        expected = torch.zeros(height, width, dtype=torch.bool)
        expected[height // 2 :, : width // 2] = True
    (mask,) = relevance_to_masks(grid[None], affine[None], torch.tensor([[height, width]]), size)
    assert mask.shape == (height, width)
    iou = (mask & expected).sum() / (mask | expected).sum()
    assert iou > 0.9, float(iou)


def test_min_max_normalisation_is_per_image():
    maps = torch.stack([torch.full((4, 4), 0.2), torch.full((4, 4), 0.9)])
    maps[0, 0, 0], maps[1, 0, 0] = 0.3, 1.0
    masks = relevance_to_masks(maps, torch.stack([_squash_matrix(4, 4, 4)] * 2), [(4, 4), (4, 4)], 4)
    assert [int(m.sum()) for m in masks] == [int(masks[1].sum())] * 2 and 0 < int(masks[0].sum()) < 16


def _linear(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def _spec_parameter_count(num_gaussians: int = 18) -> dict[str, int]:
    """docs/baselines.md §1.3 sizes: ViT-S/16 at 384 (no classifier), BERT-base (no pooler), D = 512."""
    ln = lambda d: 2 * d  # noqa: E731
    ff = lambda d: ln(d) + _linear(d, 4 * d) + _linear(4 * d, d)  # noqa: E731
    vit_block = ln(384) + _linear(384, 3 * 384) + _linear(384, 384) + ln(384) + _linear(384, 1536) + _linear(1536, 384)
    vit = 3 * 16 * 16 * 384 + 384 + 384 + 577 * 384 + 12 * vit_block + ln(384)
    bert_layer = 4 * _linear(768, 768) + ln(768) + _linear(768, 3072) + _linear(3072, 768) + ln(768)
    bert = 30522 * 768 + 512 * 768 + 2 * 768 + ln(768) + 12 * bert_layer
    slot_attention = 2 * ln(512) + 3 * _linear(512, 1024, False) + _linear(1024, 512)
    interaction = ln(512) + 3 * _linear(512, 512, False) + _linear(512, 512)
    shatter = _linear(384, 512) + 2 * num_gaussians * 512 + slot_attention + ff(512) + interaction + ff(512)
    shatter += _linear(512, 512) + ln(512)
    decoder = 2 * 24 * 256 + 3 * _linear(512, 512) + _linear(512, 385)
    fusion = 2 * ln(512) + 3 * _linear(512, 1024, False) + _linear(1024, 512) + ff(512)
    return {"vit": vit, "bert": bert, "text_proj": _linear(768, 512), "shatter": shatter, "decoder": decoder,
            "fusion": fusion}


@pytest.mark.parametrize("gaussians, samples", [(18, 2), (12, 3)])
def test_full_size_parameter_count_matches_the_spec(gaussians, samples):
    from transformers import BertConfig, BertModel

    with torch.device("meta"):
        visual = ViTPatchEncoder(VIT_NAME, None, input_size=384)
        bert = BertModel(BertConfig(), add_pooling_layer=False)
        text = BertSentenceEncoder(bert, WordTokenizer(["unused"]), 512)
        net = SaGNet(visual, text, num_gaussians=gaussians, samples=samples)
    expected = _spec_parameter_count(gaussians)
    parts = {
        "vit": net.visual,
        "bert": net.text.bert,
        "text_proj": net.text.proj,
        "shatter": net.entity_discovery,
        "decoder": net.decoder,
        "fusion": net.fusion,
    }
    counted = {name: sum(p.numel() for p in part.parameters()) for name, part in parts.items()}
    total = sum(p.numel() for p in net.parameters())
    print(f"SaG ViT-S/16 + BERT-base, {gaussians} x {samples} slots: {total:,} parameters {counted}")
    assert counted == expected
    assert total == sum(expected.values()) == (144_125_697 if gaussians == 18 else 144_119_553)
    assert net.entity_discovery.slots.num_slots == 36 and net.visual.grid == (24, 24)
