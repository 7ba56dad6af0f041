import pytest
import timm
import torch

from ris.models.backbones import create_backbone, faithful_open_clip_name, list_backbones, stage_ends
from ris.models.backbones.base import GridEmbeddingCache
from ris.open_clip_models import create_open_clip, save_local_dir
from ris.tokenizer import WordTokenizer, tokenize

TEXTS = ["a red circle on the left", "blue square"]


def _tokens(backbone, length=8):
    return tokenize(backbone.tokenizer, TEXTS, length)


@pytest.mark.parametrize(
    "name, strides",
    [
        ("tiny-RN", (8, 16, 32)),
        ("tiny-ViT", (16, 16, 16)),
        ("tiny-coca", (16, 16, 16)),
        ("timm:test_resnet", (8, 16, 32)),
    ],
)
def test_backbone_output_contract(name, strides):
    torch.manual_seed(0)
    backbone = create_backbone(name, input_size=64, text_backbone="tiny-RN")
    tokens = _tokens(backbone)
    out = backbone(torch.randn(2, 3, 64, 64), tokens)
    assert backbone.visual.feature_strides == strides
    for feature, channels, stride in zip(out.features, backbone.visual.feature_channels, strides):
        assert tuple(feature.shape) == (2, channels, 64 // stride, 64 // stride)
    assert tuple(out.words.shape) == (2, 8, backbone.word_dim)
    assert tuple(out.state.shape) == (2, backbone.state_dim)
    assert torch.equal(out.pad_mask, tokens == backbone.tokenizer.pad_id) and out.pad_mask[1].sum() == 4
    assert all(torch.isfinite(f).all() for f in [*out.features, out.words, out.state])


def test_stage_ends_spread_blocks_evenly():
    assert stage_ends(12) == [3, 7, 11]
    assert stage_ends(3) == [0, 1, 2]
    assert stage_ends(2) == [0, 0, 1]
    with pytest.raises(ValueError, match="at least one block"):
        stage_ends(0)


def _open_clip_key(name, source_keys):
    """The open_clip state-dict key of backbone parameter ``name`` (``None`` for CRIS's new ``connect`` branch)."""
    if "connect" in name:
        return None
    if name.startswith("visual.net."):
        return "visual." + name[len("visual.net.") :]
    rest = name[len("text.") :]
    return rest if rest in source_keys else "text." + rest


@pytest.mark.parametrize("name", ["tiny-RN", "tiny-ViT", "tiny-coca"])
def test_local_checkpoint_file_loads_bit_exactly(tmp_path, name):
    source = create_open_clip(name).model.state_dict()
    path = tmp_path / "weights.pt"
    torch.save(source, path)
    backbone = create_backbone(name, pretrained=str(path), input_size=64)
    compared = 0
    for param_name, param in backbone.named_parameters():
        key = _open_clip_key(param_name, source)
        if key is None:
            continue
        assert torch.equal(param, source[key]), param_name
        compared += 1
    assert compared == sum(1 for n, _ in backbone.named_parameters() if "connect" not in n) > 20
    fresh = create_backbone(name, input_size=64)
    assert not torch.equal(fresh.text.token_embedding.weight, backbone.text.token_embedding.weight)


def test_local_dir_with_word_vocabulary_supplies_tokenizer(tmp_path):
    vocab = WordTokenizer(["a", "red", "blue", "circle", "square", "on", "the", "left"])
    built = create_open_clip("tiny-coca", tokenizer=vocab)
    folder = save_local_dir(tmp_path / "coca", "tiny-coca", built.model, vocab)
    backbone = create_backbone(f"local-dir:{folder}", input_size=64)
    assert backbone.tokenizer == vocab
    assert backbone.text.token_embedding.num_embeddings == vocab.vocab_size
    tokens = _tokens(backbone)
    assert tokens[0, :3].tolist() == [vocab.sot_id, vocab.stoi["a"], vocab.stoi["red"]]
    out = backbone.eval()(torch.randn(2, 3, 64, 64), tokens)
    assert tuple(out.words.shape) == (2, 8, 32) and torch.isfinite(out.state).all()


def test_clip_text_features_match_open_clip_with_sliced_context():
    built = create_open_clip("tiny-RN")
    backbone = create_backbone("tiny-RN", input_size=64)
    backbone.text.load_state_dict(
        {k: v for k, v in built.model.state_dict().items() if k in backbone.text.state_dict()}, strict=True
    )
    short = tokenize(backbone.tokenizer, TEXTS, 8)
    full = tokenize(backbone.tokenizer, TEXTS, 77)
    with torch.no_grad():
        out = backbone.eval()(torch.randn(2, 3, 64, 64), short)
        expected = built.model.encode_text(full)
    torch.testing.assert_close(out.state, expected, atol=1e-5, rtol=1e-4)


def test_coca_sentence_feature_is_open_clip_class_token_pooling():
    built = create_open_clip("tiny-coca")
    backbone = create_backbone("tiny-coca", input_size=64)
    backbone.text.load_state_dict(
        {k[len("text.") :]: v for k, v in built.model.state_dict().items() if k.startswith("text.")}, strict=True
    )
    tokens = tokenize(backbone.tokenizer, TEXTS, 8)
    with torch.no_grad():
        out = backbone.eval()(torch.randn(2, 3, 64, 64), tokens)
        pooled, _ = built.model.text(tokens)
    torch.testing.assert_close(out.state, pooled, atol=1e-5, rtol=1e-4)


def test_vit_stage_features_match_open_clip_intermediates():
    built = create_open_clip("tiny-ViT")
    path_model = built.model.eval()
    backbone = create_backbone("tiny-ViT", input_size=64)
    backbone.visual.net.load_state_dict(path_model.visual.state_dict())
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = backbone.eval()(image, _tokens(backbone))
        ref = path_model.visual.forward_intermediates(image, indices=[0, 1, 2], intermediates_only=True)
        last = (
            path_model.visual.ln_post(ref["image_intermediates"][2].flatten(2).transpose(1, 2)) @ path_model.visual.proj
        )
    torch.testing.assert_close(out.features[0], ref["image_intermediates"][0])
    torch.testing.assert_close(out.features[1], ref["image_intermediates"][1])
    torch.testing.assert_close(out.features[2], last.transpose(1, 2).reshape(2, -1, 4, 4))


def test_resnet_taps_and_dense_attention_pool():
    built = create_open_clip("tiny-RN")
    backbone = create_backbone("tiny-RN", input_size=64)
    backbone.visual.net.load_state_dict(built.model.visual.state_dict(), strict=False)
    image = torch.randn(2, 3, 64, 64)
    net = built.model.visual.eval()
    with torch.no_grad():
        out = backbone.eval()(image, _tokens(backbone))
        c3 = net.layer2(net.layer1(net.stem(image)))
        c4 = net.layer3(c3)
    torch.testing.assert_close(out.features[0], c3)
    torch.testing.assert_close(out.features[1], c4)
    pool = backbone.visual.net.attnpool
    assert pool.connect[0].weight.shape == (64, 256, 1, 1)  # 1x1 conv layer4 channels -> embed dim, no bias
    assert pool.connect[0].bias is None and (out.features[2] >= 0).all()  # ReLU output


def test_vit_positional_grid_follows_input_size():
    backbone = create_backbone("tiny-ViT", input_size=128)
    assert tuple(backbone.visual.net.positional_embedding.shape) == (1 + 8 * 8, 48)
    tokens = _tokens(backbone)
    small = backbone(torch.randn(2, 3, 64, 64), tokens)
    large = backbone(torch.randn(2, 3, 128, 128), tokens)
    assert small.features[2].shape[-1] == 4 and large.features[2].shape[-1] == 8
    with pytest.raises(ValueError, match="multiple of the ViT patch size 16"):
        create_backbone("tiny-ViT", input_size=100)


def test_grid_cache_reuses_only_without_gradients():
    grid = torch.nn.Parameter(torch.randn(4, 3))
    cache = GridEmbeddingCache()
    with torch.no_grad():
        first = cache.get(grid, (3, 3))
        assert cache.get(grid, (3, 3)) is first and first.shape == (9, 3)
        grid.add_(1.0)
        assert not torch.equal(cache.get(grid, (3, 3)), first)
    assert cache.get(grid, (3, 3)).requires_grad


def test_openai_tags_select_quickgelu_variants():
    assert faithful_open_clip_name("RN50", "openai") == "RN50-quickgelu"
    assert faithful_open_clip_name("ViT-B-16", "openai") == "ViT-B-16-quickgelu"
    assert faithful_open_clip_name("RN50", None) == "RN50"
    assert faithful_open_clip_name("tiny-RN", "/some/file.pt") == "tiny-RN"


def test_registry_and_clear_errors():
    assert {"open_clip", "timm"} <= set(list_backbones())
    with pytest.raises(ValueError, match="unknown open_clip model 'nope'"):
        create_backbone("nope")
    with pytest.raises(TypeError, match="FeatureListNet"):
        create_backbone("timm:test_vit", text_backbone="tiny-RN")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        create_backbone("timm:test_resnet", pretrained="/nowhere/missing.pth", text_backbone="tiny-RN")


def test_models_declare_the_normalisation_their_backbone_was_trained_with():
    """A timm CNN with ImageNet statistics must get ImageNet-normalised pixels, an open_clip tower CLIP's."""
    from ris.contracts import CLIP_MEAN, CLIP_STD
    from ris.models import CRIS

    tiny = {"pretrained": None, "text_backbone": "tiny-RN", "text_pretrained": None, "input_size": 64,
            "fpn_out": (16, 32, 64), "nhead": 2, "dim_ffn": 32, "num_layers": 1}
    timm_model = CRIS(backbone="timm:test_resnet", **tiny)
    spec = timm_model.input_spec
    assert (spec.size, spec.resize) == (64, "letterbox")
    config = timm.create_model("test_resnet", pretrained=False).pretrained_cfg
    assert spec.mean == tuple(config["mean"]) and spec.std == tuple(config["std"]) and spec.mean != CLIP_MEAN
    clip_model = CRIS(backbone="tiny-RN", **tiny)
    assert clip_model.input_spec.mean == CLIP_MEAN and clip_model.input_spec.std == CLIP_STD
