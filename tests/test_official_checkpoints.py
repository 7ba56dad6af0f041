"""Official CRIS.pytorch / ETRIS checkpoints into ris.models (``ris import-checkpoint``, ``init_from``), and the
ETRIS Bridger built and initialised as the official one.

The official key names and full-size shapes are the spec's table (``tests/data/official_checkpoints``, measured
from the official architectures). Full size is checked on the meta device; the import path runs on tiny widths
with the full naming (open_clip configs with RN50 / ViT-B-16 depth), saved in the official file format.
"""

import json
import math
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ris.open_clip_models
from ris.checkpoint_import import import_checkpoint
from ris.cli import main as ris_main
from ris.models import CRIS, ETRIS
from ris.models.bridger import Bridger
from ris.models.official_checkpoints import (
    OFFICIAL_CONV_TRANSPOSE,
    infer_model,
    map_official_state_dict,
    official_name,
)
from ris.tokenizer import tokenize

DATA = Path(__file__).parent / "data"
OFFICIAL = json.loads((DATA / "official_checkpoints" / "state_dict_keys.json").read_text())
KINDS = {"cris_rn50": (CRIS, "RN50"), "etris_r50": (ETRIS, "RN50"), "etris_v16": (ETRIS, "ViT-B-16")}


def official_keys(kind: str) -> dict[str, list[int]]:
    return OFFICIAL[kind] if kind == "cris_rn50" else OFFICIAL[kind]["keys"]


@pytest.fixture
def meta_open_clip(monkeypatch):
    """open_clip builds on the meta device (full-size architectures without memory)."""
    create = open_clip.create_model
    monkeypatch.setattr(ris.open_clip_models.open_clip, "create_model",
                        lambda *a, **k: create(*a, **{**k, "device": "meta"}))


@pytest.mark.parametrize("kind", KINDS)
def test_every_official_key_maps_at_full_size(kind, meta_open_clip):
    keys = official_keys(kind)
    with torch.device("meta"):
        state = {f"module.{k}": torch.empty(shape) for k, shape in keys.items()}
        class_name, args = infer_model(state)
        cls, backbone = KINDS[kind]
        assert (class_name, args["backbone"], args["input_size"]) == (cls.__name__, backbone, 416)
        model = cls(**args)
        mapped, report = map_official_state_dict(state, model)
    assert report.complete, report.describe()
    assert report.unused == ["backbone.logit_scale"] and len(report.mapped) == len(keys) - 1 == len(mapped)
    assert set(mapped) == set(model.state_dict())
    # the only official ConvTranspose2d that is a Conv2d here: ETRIS-ViT's 1x1 neck projection of C5
    assert report.transposed == (["neck.projections.2.0.weight"] if kind == "etris_v16" else [])
    if kind != "cris_rn50":
        modules = dict(model.named_modules())
        for official in OFFICIAL[kind]["conv_transpose_modules"]:
            ours = official_name(f"{official}.weight", kind == "etris_v16").rsplit(".", 1)[0]
            expected = nn.Conv2d if official.startswith("neck.") and kind == "etris_v16" else nn.ConvTranspose2d
            assert type(modules[ours]) is expected, ours
        assert set(OFFICIAL[kind]["conv_transpose_modules"]) == set(OFFICIAL_CONV_TRANSPOSE[kind == "etris_v16"])


@pytest.mark.parametrize("kind", ["etris_r50", "etris_v16"])
def test_bridger_has_the_official_layer_types_and_initial_scale(kind):
    torch.manual_seed(0)
    vit = kind == "etris_v16"
    channels, strides = ((768, 768, 768), (16, 16, 16)) if vit else ((512, 1024, 2048), (8, 16, 32))
    bridger = Bridger(channels, strides, 512, "vit" if vit else "conv", 64, 8 if vit else 4)
    shapes = {k: v for k, v in official_keys(kind).items() if k.startswith("bridger.zoom")}
    for official, shape in shapes.items():
        if not official.endswith(".weight") or len(shape) != 4:
            continue
        module = official.rsplit(".", 1)[0]
        layer = bridger.get_submodule(module.removeprefix("bridger.") + ("" if vit else ".0"))
        if not isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            continue
        official_type = nn.ConvTranspose2d if module in OFFICIAL_CONV_TRANSPOSE[vit] else nn.Conv2d
        assert type(layer) is official_type and list(layer.weight.shape) == shape, module
        # Kaiming-normal (fan_out, ReLU) of the official layer: fan_out = weight.shape[0] * k * k
        expected = math.sqrt(2.0 / (shape[0] * shape[2] * shape[3]))
        assert float(layer.weight.detach().std()) == pytest.approx(expected, rel=0.05), module
    # the 1x1 ConvTranspose2d zooms compute the same map as a Conv2d with the transposed weight
    layer = bridger.zoom_out[1][0]
    x = torch.randn(2, 64, 3, 3)
    assert torch.allclose(layer(x), F.conv2d(x, layer.weight.transpose(0, 1)), atol=1e-5)


# --- tiny widths, full naming -------------------------------------------------------------------------------------

TINY_CONFIGS = {
    "official-names-RN50": {"embed_dim": 64, "vision_cfg": {"image_size": 64, "layers": [3, 4, 6, 3], "width": 8,
                                                             "patch_size": None, "head_width": 64}},
    "official-names-ViT-B-16": {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 12, "width": 48,
                                                                "patch_size": 16, "head_width": 16}},
}
TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 12}
TINY = {
    "cris_rn50": (CRIS, "official-names-RN50", {"fpn_out": [16, 32, 64], "dim_ffn": 64}),
    "etris_r50": (ETRIS, "official-names-RN50", {"bridge_dim": 16, "neck_dim": 32, "dim_ffn": 32}),
    "etris_v16": (ETRIS, "official-names-ViT-B-16", {"bridge_dim": 16, "neck_dim": 32, "dim_ffn": 32}),
}


@pytest.fixture(scope="module")
def tiny_configs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("configs")
    for name, cfg in TINY_CONFIGS.items():
        (folder / f"{name}.json").write_text(json.dumps({**cfg, "text_cfg": TEXT}))
    open_clip.add_model_config(folder)


def _tiny(kind: str, **extra):
    cls, backbone, args = TINY[kind]
    torch.manual_seed(0)
    return cls(backbone=backbone, pretrained=None, text_pretrained=None, input_size=64, **args, **extra)


def official_file(kind: str, model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """Save ``model``'s weights under the official names and layouts in the official file format (DDP prefix,
    optimizer and scheduler state); returns the official state dict."""
    ours = model.state_dict()
    modules = dict(model.named_modules())
    vit = kind == "etris_v16"
    state = {}
    for key in official_keys(kind):
        name = official_name(key, vit)
        if name is None:
            state[key] = torch.tensor(math.log(100.0))
            continue
        tensor = ours[name].clone()
        official_module, our_module = key.rsplit(".", 1)[0], modules[name.rsplit(".", 1)[0]]
        if official_module in OFFICIAL_CONV_TRANSPOSE[vit] and isinstance(our_module, nn.Conv2d):
            tensor = tensor.transpose(0, 1).contiguous()
        state[key] = tensor
    assert set(state) == set(official_keys(kind))  # the full official naming
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[35], gamma=0.1)
    torch.save({"epoch": 7, "cur_iou": 0.41, "best_iou": 0.45, "prec": {"Pr@50": 0.5, "Pr@90": 0.1},
                "state_dict": {f"module.{k}": v for k, v in state.items()}, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict()}, path)
    return state


def _forward(model: nn.Module) -> torch.Tensor:
    torch.manual_seed(1)
    model.eval()
    with torch.no_grad():
        return model(torch.randn(2, 3, 64, 64), tokenize(model.tokenizer, ["a red box", "the dog on the left"], 8))


@pytest.mark.parametrize("kind", TINY)
def test_import_checkpoint_lands_every_key_and_runs(kind, tiny_configs, tmp_path, one_thread):
    reference = _tiny(kind)
    source = tmp_path / "best_model.pth"
    official_file(kind, reference, source)
    out = tmp_path / "imported.ckpt"
    _, backbone, _ = TINY[kind]
    assert ris_main(["import-checkpoint", str(source), "--out", str(out), "--backbone", backbone,
                     "--set", "input_size=64"]) == 0
    checkpoint = torch.load(out, weights_only=True)
    expected = reference.state_dict()
    assert set(checkpoint["state_dict"]) == set(expected)
    assert all(torch.equal(checkpoint["state_dict"][k], v) for k, v in expected.items())
    hparams = dict(checkpoint["hyper_parameters"])
    cls = TINY[kind][0]
    assert hparams.pop("_class_path") == f"ris.models.{cls.__name__}" and hparams["pretrained"] is None
    assert checkpoint["imported_from"]["epoch"] == 7 and checkpoint["imported_from"]["best_iou"] == 0.45
    rebuilt = cls(**hparams)
    rebuilt.load_state_dict(checkpoint["state_dict"])
    logits = _forward(rebuilt)
    assert torch.isfinite(logits).all() and torch.equal(logits, _forward(reference))
    # --model.init_from takes the official file directly, through the same mapping
    fresh = _tiny(kind, init_from=str(source))
    fresh.load_weights(source)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in expected.items())


def test_official_conv_transpose_weight_keeps_its_map(tiny_configs, tmp_path):
    reference = _tiny("etris_v16")
    state = official_file("etris_v16", reference, tmp_path / "official.pth")
    weight = state["neck.f5_proj.0.weight"]  # official ConvTranspose2d (in, out, 1, 1)
    x = torch.randn(1, weight.shape[0], 4, 4)
    imported, _ = import_checkpoint(tmp_path / "official.pth", tmp_path / "x.ckpt", "official-names-ViT-B-16")
    model = _tiny("etris_v16")
    model.load_state_dict(imported["state_dict"])
    assert torch.allclose(model.neck.projections[2][0](x), F.conv_transpose2d(x, weight), atol=1e-5)


def test_imported_checkpoint_runs_ris_test(tiny_configs, tmp_path, one_thread, capsys):
    source = tmp_path / "official.pth"
    official_file("cris_rn50", _tiny("cris_rn50"), source)
    out = tmp_path / "imported.ckpt"
    import_checkpoint(source, out, "official-names-RN50", {"input_size": 64})
    config = Path(__file__).resolve().parents[1] / "configs" / "zero_shot" / "official_checkpoint.yaml"
    assert ris_main([
        "test", "--config", str(config), "--ckpt_path", str(out), "--data.data_root", str(DATA / "refer"),
        "--data.word_length", "8", "--data.test_splits", '["testB"]',
        "--data.test_sets", "[]", "--trainer.accelerator", "cpu", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
    ]) == 0
    out = capsys.readouterr().out  # the metrics table is the last thing on stdout
    assert out.count("| set |") == 1 and out.strip().splitlines()[-1].startswith("| refcoco/testB |")


def test_unmapped_and_missing_keys_are_reported(tiny_configs, tmp_path):
    state = official_file("cris_rn50", _tiny("cris_rn50"), tmp_path / "ok.pth")
    del state["proj.txt.bias"]
    state["neck.extra.weight"] = torch.zeros(3)
    state["neck.txt_proj.0.weight"] = torch.zeros(5, 5)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as err:
        import_checkpoint(tmp_path / "bad.pth", tmp_path / "x.ckpt", "official-names-RN50")
    text = str(err.value)
    assert "unmapped neck.extra.weight (3,) -> neck.extra.weight (no such key)" in text
    assert "unmapped neck.txt_proj.0.weight (5, 5) -> neck.txt_proj.0.weight (shape (64, 64))" in text
    assert "missing projector.txt.bias" in text and not (tmp_path / "x.ckpt").exists()


def test_non_official_and_unsafe_files_get_clear_errors(tiny_configs, tmp_path):
    model = _tiny("cris_rn50")
    torch.save({"state_dict": model.state_dict()}, tmp_path / "ours.ckpt")
    with pytest.raises(ValueError, match="not an official CRIS.pytorch / ETRIS checkpoint"):
        import_checkpoint(tmp_path / "ours.ckpt", tmp_path / "x.ckpt")
    state = official_file("cris_rn50", model, tmp_path / "ok.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "cur_iou": np.float64(0.4)},
               tmp_path / "numpy.pth")
    with pytest.raises(ValueError, match="--unsafe-load"):
        import_checkpoint(tmp_path / "numpy.pth", tmp_path / "x.ckpt", "official-names-RN50")
    import_checkpoint(tmp_path / "numpy.pth", tmp_path / "x.ckpt", "official-names-RN50", unsafe=True)
    assert (tmp_path / "x.ckpt").is_file()
