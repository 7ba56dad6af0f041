"""Weights files as users have them (issue #12 items 1-3): OpenAI's TorchScript archives load with QuickGELU through
every path, uncached tags fail at once offline, and wrong files get one error naming file, content and what is
accepted."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import open_clip
import pytest
import torch
from open_clip.transformer import QuickGELU

from ris.checkpoints import CheckpointError, WeightsUnavailableError, describe_state_dict, read_state_dict
from ris.models.backbones import create_backbone
from ris.models.global_local_clip import GlobalLocalCLIP
from ris.open_clip_models import cached_tag_file, create_open_clip, planned_activation
from ris.pseudo.distinctiveness import CLIPScorer
from ris.pseudo.masks import SegmenterMaskSource, build_tiny_sam
from ris.tokenizer import tokenize
from tests.openai_archive import save_state_dict, tiny_weight_files

TEXTS = ["a dog runs on the beach", "the red cup on the left"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Per tiny architecture: (OpenAI-style TorchScript archive, state dict of the same weights)."""
    return tiny_weight_files(tmp_path_factory.mktemp("weights"))


def _quick_gelu(module: torch.nn.Module) -> bool:
    return any(isinstance(m, QuickGELU) for m in module.modules())


def _features(built, tokens: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return built.model.encode_text(tokens), built.model.encode_image(image)


@pytest.mark.parametrize("arch", ["tiny-RN", "tiny-ViT"])
def test_openai_archive_runs_quickgelu_and_equals_the_quickgelu_name(weights, arch: str) -> None:
    archive, state = weights[arch]
    from_archive = create_open_clip(arch, pretrained=str(archive))
    named = create_open_clip(f"{arch}-quickgelu", pretrained=str(state))
    plain = create_open_clip(arch, pretrained=str(state))
    assert (from_archive.weights_format, from_archive.activation) == ("torchscript", "QuickGELU")
    assert (named.weights_format, named.activation, plain.activation) == ("state_dict", "QuickGELU", "GELU")
    assert _quick_gelu(from_archive.model) and not _quick_gelu(plain.model)
    assert planned_activation(arch, str(archive)) == "QuickGELU" and planned_activation(arch, str(state)) == "GELU"
    tokens = tokenize(from_archive.tokenizer, TEXTS, 77)
    image = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    text_a, image_a = _features(from_archive, tokens, image)
    text_b, image_b = _features(named, tokens, image)
    text_c, _ = _features(plain, tokens, image)
    assert torch.equal(text_a, text_b) and torch.equal(image_a, image_b)
    assert (text_a - text_c).abs().max() > 1e-4, "GELU and QuickGELU must give different text features"


def test_openai_tags_pick_quickgelu_without_downloading() -> None:
    assert planned_activation("RN50", "openai") == "QuickGELU"
    assert planned_activation("ViT-B-16", "openai") == "QuickGELU"
    assert planned_activation("ViT-B-16", "laion400m_e32") == "GELU"
    assert planned_activation("RN50", None) == "GELU"
    assert planned_activation("RN50-quickgelu", None) == "QuickGELU"


def test_backbone_scorer_and_baseline_load_openai_archives_with_quickgelu(weights) -> None:
    archive, state = weights["tiny-RN"]
    torch.manual_seed(2)
    backbone = create_backbone("tiny-RN", pretrained=str(archive), input_size=64).eval()
    torch.manual_seed(2)
    reference = create_backbone("tiny-RN-quickgelu", pretrained=str(state), input_size=64).eval()
    assert _quick_gelu(backbone.text) and _quick_gelu(reference.text)
    tokens = tokenize(backbone.tokenizer, TEXTS, 8)
    image = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out, ref = backbone(image, tokens), reference(image, tokens)
    assert torch.equal(out.words, ref.words) and torch.equal(out.state, ref.state)
    assert all(torch.equal(a, b) for a, b in zip(out.features, ref.features))
    scorer = CLIPScorer("tiny-RN", str(archive))
    assert scorer.clip.activation == "QuickGELU" and scorer.clip.weights_format == "torchscript"
    vit_archive, _ = weights["tiny-ViT"]
    baseline = GlobalLocalCLIP(SegmenterMaskSource(), clip_model="tiny-ViT", clip_pretrained=str(vit_archive))
    assert _quick_gelu(baseline.clip_model)


def test_training_checkpoint_with_ddp_prefix_loads(tmp_path: Path) -> None:
    torch.manual_seed(4)
    coca = create_open_clip("tiny-coca").model
    path = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "name": "cc3m", "state_dict": {f"module.{k}": v for k, v in coca.state_dict().items()}},
               path)
    loaded = create_open_clip("tiny-coca", pretrained=str(path))
    assert loaded.weights_format == "state_dict" and loaded.activation == "GELU"
    assert all(torch.equal(a, b) for a, b in zip(coca.state_dict().values(), loaded.model.state_dict().values()))


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """No network, empty caches; records any download attempt."""
    attempts: list[str] = []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(open_clip, "download_pretrained", lambda cfg, *a, **k: attempts.append(str(cfg)))
    return attempts


def test_uncached_tag_offline_fails_at_once_naming_the_weights_and_the_flag(offline: list[str]) -> None:
    with pytest.raises(WeightsUnavailableError) as err:
        create_open_clip("RN50", "openai")
    message = str(err.value)
    assert "RN50 weights 'openai'" in message and "HF_HUB_OFFLINE is set" in message
    assert "--model.pretrained PATH" in message and "RN50.pt" in message
    assert "\n" not in message and len(message) < 400
    with pytest.raises(WeightsUnavailableError, match="--model.scorer_pretrained PATH"):
        CLIPScorer("RN50", "openai")
    with pytest.raises(WeightsUnavailableError, match="--model.pretrained PATH"):
        create_backbone("ViT-B-16", "openai")
    with pytest.raises(WeightsUnavailableError, match="--model.clip_pretrained PATH"):
        GlobalLocalCLIP(SegmenterMaskSource(), clip_model="ViT-B-32", clip_pretrained="openai")
    assert offline == [], "no download may be attempted offline"


def test_hub_errors_become_one_short_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("ris.open_clip_models._offline_reason", lambda cfg: None)

    def fail(cfg, *args, **kwargs):
        raise OSError("[Errno -2] Name or service not known\nmore detail")

    monkeypatch.setattr(open_clip, "download_pretrained", fail)
    with pytest.raises(WeightsUnavailableError, match=r"download failed: OSError: \[Errno -2\] Name or service not "
                       r"known\); pass a local checkpoint file with --model.pretrained PATH"):
        create_open_clip("RN101", "openai")


def test_cached_tags_are_found_without_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, offline) -> None:
    hub = tmp_path / "hub"
    snapshot = hub / "models--org--tiny-rn.openai" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (hub / "models--org--tiny-rn.openai" / "refs").mkdir()
    (hub / "models--org--tiny-rn.openai" / "refs" / "main").write_text("abc123")
    torch.manual_seed(5)
    model = create_open_clip("tiny-RN-quickgelu").model
    save_state_dict(model, snapshot / "open_clip_pytorch_model.bin")
    tag_cfg = {"hf_hub": "org/tiny-rn.openai/", "quick_gelu": True}
    assert cached_tag_file(tag_cfg, hf_cache=hub) == snapshot / "open_clip_pytorch_model.bin"
    url_cache = tmp_path / "clip"
    url_cache.mkdir()
    (url_cache / "RN50.pt").write_bytes(b"x")
    url = "https://host/clip/models/0123/RN50.pt"
    assert cached_tag_file({"url": url}, url_cache=url_cache) == url_cache / "RN50.pt"
    assert cached_tag_file({"url": "https://host/RN101.pt"}, url_cache=url_cache) is None
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    real_cfg = open_clip.get_pretrained_cfg
    monkeypatch.setattr(open_clip, "get_pretrained_cfg",
                        lambda name, tag: tag_cfg if (name, tag) == ("tiny-RN", "openai") else real_cfg(name, tag))
    built = create_open_clip("tiny-RN", "openai")
    assert built.activation == "QuickGELU" and offline == []


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


WRONG_FILES = [
    ("random", bytes(range(7, 250)) * 40, "random or truncated bytes"),
    ("html", b"\n<!DOCTYPE html><html><head><title>Sign in</title></head><body>...</body></html>", "an HTML page"),
    ("empty", b"", "an empty file"),
]


@pytest.mark.parametrize(("kind", "content", "found"), WRONG_FILES, ids=[w[0] for w in WRONG_FILES])
def test_wrong_clip_and_coca_files_get_one_clear_error(tmp_path: Path, kind: str, content: bytes, found: str) -> None:
    path = _write(tmp_path / "RN50.pt", content)
    for arch in ("tiny-RN", "tiny-coca"):
        with pytest.raises(CheckpointError) as err:
            create_open_clip(arch, pretrained=str(path))
        message = str(err.value)
        assert message.startswith(f"{path}: expected {arch} weights (an OpenAI TorchScript archive")
        assert found in message and len(message) < 400


def test_state_dict_of_another_model_is_named(tmp_path: Path) -> None:
    sam = tmp_path / "sam_vit_h.pth"
    torch.save(build_tiny_sam().state_dict(), sam)
    with pytest.raises(CheckpointError, match=r"sam_vit_h.pth: expected tiny-RN weights .*found a SAM checkpoint"):
        create_open_clip("tiny-RN", pretrained=str(sam))
    vit = tmp_path / "vit.pt"
    torch.save(create_open_clip("tiny-ViT").model.state_dict(), vit)
    with pytest.raises(CheckpointError) as err:
        create_open_clip("tiny-RN", pretrained=str(vit))
    message = str(err.value)
    assert "found a CLIP checkpoint" in message and "missing keys (visual.attnpool" in message
    assert "unexpected keys" in message and len(message) < 700
    with pytest.raises(CheckpointError, match="found a CLIP checkpoint .* missing keys .*text_decoder"):
        create_open_clip("tiny-coca", pretrained=str(vit))


def test_read_state_dict_reports_pickles_it_refuses(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)  # a pickled module, not a state dict
    with pytest.raises(CheckpointError, match=r"module.pt: expected CLIP weights \(x\), found a torch zip file that "
                       r"cannot be read as weights \(UnpicklingError"):
        read_state_dict(path, "CLIP weights", "x")
    assert describe_state_dict({"a.b": torch.zeros(1), "c": torch.zeros(1)}) == (
        "a state dict of 2 tensors with top-level keys a, c"
    )
