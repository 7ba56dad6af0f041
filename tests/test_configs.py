"""Every committed top-level config parses (``ris fit --config X --print_config``); the model x dataset configs
compose with the trainer configs and instantiate with their checkpoint monitor matching a logged metric."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from open_clip.transformer import QuickGELU

from ris.cli import build_cli, main
from ris.evaluation import MONITOR
from tests.openai_archive import tiny_weight_files

from .sag_tiny import TINY_VIT, write_tiny_bert

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TOP_LEVEL = sorted(CONFIGS.glob("*.yaml"))
MODEL_DATASET = sorted(p for p in TOP_LEVEL if p.name.startswith(("cris-", "etris-", "sag-")))
CRIS_ETRIS = [p for p in MODEL_DATASET if not p.name.startswith("sag-")]
TRAINERS = sorted((CONFIGS / "trainer").glob("*.yaml"))
TRAINING = [*TOP_LEVEL, *sorted((CONFIGS / "semi").glob("cris_*.yaml"))]
TESTING = [*sorted((CONFIGS / "zero_shot").glob("*.yaml")), CONFIGS / "cross_domain" / "all_benchmarks.yaml",
           CONFIGS / "cross_domain" / "synthetic_world.yaml"]
OVERLAYS = {"clip_rn50.yaml": "global_local_clip_vit_b32.yaml", "pseudo_trained_etris.yaml": "pseudo_trained_cris.yaml"}


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
    assert checkpoint.monitor == MONITOR and data.eval_set_names("validate")
    assert next(g["lr"] for g in model.configure_optimizers()["optimizer"].param_groups) == 1e-4


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Per tiny architecture: an OpenAI-style TorchScript archive and an open_clip state dict of the same weights."""
    return tiny_weight_files(tmp_path_factory.mktemp("weights"))


@pytest.mark.parametrize("config", [p for p in MODEL_DATASET if not p.name.startswith("sag-")], ids=lambda p: p.name)
def test_paper_configs_follow_the_official_recipe_and_load_users_weight_files(config, tiny_weights):
    arch = "tiny-ViT" if "vitb16" in config.name else "tiny-RN"
    archive, state = tiny_weights[arch]
    models = {}
    for weights in (archive, state):
        cli = build_cli(["--config", str(config), "--model.init_args.backbone", arch, "--model.init_args.pretrained",
                         str(weights), "--trainer.logger", "false"], run=False)
        models[weights] = cli.model
        assert cli.datamodule.val_sentences == "first", "official validation: the first sentence of each ref"
        cris = config.name.startswith("cris")
        assert cli.model.hparams.get("full_backbone_lr_first_epoch", False) is cris
    from_archive, from_state = models[archive].backbone, models[state].backbone
    assert any(isinstance(m, QuickGELU) for m in from_archive.text.modules()), "OpenAI weights need QuickGELU"
    assert torch.equal(from_archive.text.token_embedding.weight, from_state.text.token_embedding.weight)


@pytest.mark.parametrize("config", TRAINING, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_training_configs_agree_on_logger_checkpoint_and_batch_convention(config, capsys):
    printed = _print_config(capsys, config)
    logger = printed["trainer"]["logger"]
    assert logger["class_path"] == "lightning.pytorch.loggers.CSVLogger"  # the logger `ris report` reads
    assert Path(logger["init_args"]["save_dir"]).parts[0] == "runs"
    (checkpoint,) = [c for c in printed["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
    assert {k: checkpoint["init_args"][k] for k in ("monitor", "mode", "save_last")} == {
        "monitor": MONITOR, "mode": "max", "save_last": True}
    header = config.read_text().split("seed_everything")[0]
    assert "Batch: data.batch_size is per process" in header
    batch = printed["data"]["init_args"]["batch_size"]
    if printed["model"]["class_path"] == "ris.models.CRIS" and "synthetic" not in config.name:
        assert batch == 8 and "8 x 8 GPUs (configs/trainer/ddp.yaml) = 64" in header
    if printed["model"]["class_path"] == "ris.models.ETRIS":
        assert batch == 32 and "32 x 1 GPU (configs/trainer/gpu.yaml) = 32" in header


@pytest.mark.parametrize("config", TESTING, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_test_configs_log_with_the_logger_report_reads(config, capsys):
    base = [CONFIGS / "zero_shot" / OVERLAYS[config.name]] if config.name in OVERLAYS else []
    with pytest.raises(SystemExit):
        main(["test", *(a for c in [*base, config] for a in ("--config", str(c))), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["logger"]["class_path"] == "lightning.pytorch.loggers.CSVLogger"
    assert Path(printed["trainer"]["logger"]["init_args"]["save_dir"]).parts[0] == "runs"


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
    assert checkpoint.monitor == MONITOR  # the first validation set's mIoU
    if "refcocog" in config.name:
        assert data.eval_set_names("validate") == ["refcocog-google/val"]
    optimizer = model.configure_optimizers()["optimizer"]
    assert type(optimizer).__name__ == "AdamW"
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == pytest.approx({"head": 1e-5, "backbone": 1e-6, "text": 1e-5})
    assert all(g["weight_decay"] == 1e-4 for g in optimizer.param_groups)
