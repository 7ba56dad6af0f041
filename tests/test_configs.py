"""Every committed top-level config parses (``ris fit --config X --print_config``); the model x dataset configs
compose with the trainer configs and instantiate with their checkpoint monitor matching a logged metric."""

import json
from pathlib import Path

import pytest
import yaml

from ris.cli import build_cli, main

from .sag_tiny import TINY_VIT, write_tiny_bert

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TOP_LEVEL = sorted(CONFIGS.glob("*.yaml"))
MODEL_DATASET = sorted(p for p in TOP_LEVEL if p.name.startswith(("cris-", "etris-", "sag-")))
CRIS_ETRIS = [p for p in MODEL_DATASET if not p.name.startswith("sag-")]
TRAINERS = sorted((CONFIGS / "trainer").glob("*.yaml"))


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    """LightningCLI warns when pytest's own arguments sit beside ``args``."""
    monkeypatch.setattr("sys.argv", ["ris"])


def _print_config(capsys, *configs: Path) -> dict:
    with pytest.raises(SystemExit) as exc:
        main(["fit", *(arg for c in configs for arg in ("--config", str(c))), "--print_config"])
    assert exc.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_the_expected_configs_exist():
    names = {p.stem for p in MODEL_DATASET}
    for model in ("cris-rn50", "etris-vitb16"):
        assert {f"{model}_refcoco", f"{model}_refcoco+", f"{model}_refcocog-umd"} <= names
    assert {"sag-vits16_refcoco", "sag-vits16_refcoco+", "sag-vits16_refcocog-google"} <= names  # SaG's G-Ref split
    assert {p.stem for p in TRAINERS} >= {"gpu", "ddp", "cpu"}


@pytest.mark.parametrize("config", TOP_LEVEL, ids=lambda p: p.name)
def test_every_config_prints(config, capsys):
    printed = _print_config(capsys, config)
    assert printed["model"]["class_path"].startswith("ris.models.")
    assert printed["data"]["class_path"].startswith("ris.datamodules.")


@pytest.mark.parametrize("trainer", TRAINERS, ids=lambda p: p.name)
@pytest.mark.parametrize("config", MODEL_DATASET, ids=lambda p: p.name)
def test_model_dataset_configs_compose_with_trainer_configs(config, trainer, capsys):
    printed = _print_config(capsys, config, trainer)
    expected = yaml.safe_load(trainer.read_text())["trainer"]
    assert {k: printed["trainer"][k] for k in expected} == expected
    assert printed["trainer"]["max_epochs"] == expected.get("max_epochs", 50)  # the recipe unless overridden
    assert len(printed["trainer"]["callbacks"]) == 2


@pytest.mark.parametrize("config", CRIS_ETRIS, ids=lambda p: p.name)
def test_model_dataset_configs_instantiate_and_monitor_a_logged_metric(config):
    small = "tiny-ViT" if "vitb16" in config.name else "tiny-RN"
    cli = build_cli(
        [
            "--config",
            str(config),
            "--model.init_args.backbone",
            small,
            "--model.init_args.pretrained",
            "null",
            "--trainer.logger",
            "false",
        ],
        run=False,
    )
    model, data = cli.model, cli.datamodule
    assert type(model).__name__ == ("ETRIS" if config.name.startswith("etris") else "CRIS")
    assert model.hparams.input_size == 416 and data.input_size is None, "the input size is set once, on the model"
    assert data.resolve_input_spec() == model.input_spec
    assert data.word_length == (22 if "refcocog" in config.name else 17)
    checkpoint = next(c for c in cli.trainer.callbacks if type(c).__name__ == "ModelCheckpoint")
    assert checkpoint.monitor == f"val/{data.eval_set_names('validate')[0]}/mIoU"
    assert next(g["lr"] for g in model.configure_optimizers()["optimizer"].param_groups) == 1e-4


@pytest.mark.parametrize("config", [p for p in MODEL_DATASET if p.name.startswith("sag-")], ids=lambda p: p.name)
def test_sag_configs_instantiate_with_the_recipe_and_monitor_a_logged_metric(config, tmp_path):
    """SaG at full input size on a tiny ViT (same timm architecture) and a tiny BERT folder."""
    write_tiny_bert(tmp_path / "bert")
    cli = build_cli(
        [
            "--config", str(config),
            "--model.init_args.vit_pretrained", "null",
            "--model.init_args.vit_overrides", json.dumps(TINY_VIT),
            "--model.init_args.text_encoder", str(tmp_path / "bert"),
            "--trainer.logger", "false",
        ],
        run=False,
    )
    model, data = cli.model, cli.datamodule
    assert type(model).__name__ == "SaG" and model.supervision == "text"
    assert model.input_spec.size == 384 and model.input_spec.resize == "squash" and data.input_size is None
    cli.trainer.strategy.connect(model)  # what fit does before the datamodule's setup
    data.trainer = cli.trainer
    assert data.resolve_input_spec() == model.input_spec
    assert (model.hparams.num_gaussians, model.hparams.samples_per_gaussian, model.hparams.iterations) == (18, 2, 6)
    assert model.eval_noise == "fixed" and data.train_unit == "sentence"
    assert data.word_length == (32 if "refcocog" in config.name else 20)
    assert cli.trainer.gradient_clip_val == 0.1 and cli.trainer.max_epochs == 50
    checkpoint = next(c for c in cli.trainer.callbacks if type(c).__name__ == "ModelCheckpoint")
    assert checkpoint.monitor == f"val/{data.eval_set_names('validate')[0]}/mIoU"
    if "refcocog" in config.name:
        assert data.eval_set_names("validate") == ["refcocog-google/val"]
    optimizer = model.configure_optimizers()["optimizer"]
    assert type(optimizer).__name__ == "AdamW"
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == pytest.approx({"head": 1e-5, "backbone": 1e-6, "text": 1e-5})
    assert all(g["weight_decay"] == 1e-4 for g in optimizer.param_groups)
