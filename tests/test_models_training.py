"""Training machinery of the RIS models: LR recipe, init_from, evaluation logging, prediction, CLI checkpoints."""

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from ris.cli import main
from ris.datamodules import RefCOCODataModule
from ris.evaluation import Evaluator
from ris.models import CRIS, ETRIS
from ris.models.lr_schedule import ParamGroup, build_optimizer
from ris.open_clip_models import create_open_clip, save_local_dir
from ris.synthetic import world_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_world):
    root = tmp_path_factory.mktemp("models_world")
    paths = tiny_world
    vocab = world_tokenizer()
    folder = save_local_dir(root / "tiny-vit", "tiny-ViT", create_open_clip("tiny-ViT", tokenizer=vocab).model, vocab)
    return SimpleNamespace(root=root, refer=str(paths.refer_root), backbone=f"local-dir:{folder}")


def tiny_cris(world, **kwargs):
    args = {
        "backbone": world.backbone,
        "pretrained": None,
        "input_size": 64,
        "fpn_out": (16, 32, 64),
        "nhead": 2,
        "dim_ffn": 64,
    }
    return CRIS(**{**args, **kwargs})


def datamodule(world, **kwargs):
    args = {"data_root": world.refer, "input_size": 64, "word_length": 10, "batch_size": 4}
    return RefCOCODataModule(**{**args, **kwargs})


def trainer(**kwargs):
    args = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    return Trainer(**{**args, **kwargs})


def _lrs(milestones=(35,), epochs=(0, 1, 34, 35, 49), **kwargs):
    groups = [ParamGroup("head", [torch.nn.Parameter(torch.zeros(1))]),
              ParamGroup("backbone", [torch.nn.Parameter(torch.zeros(1))], 0.1)]
    optimizer, scheduler = build_optimizer(groups, lr=1e-4, milestones=milestones, **kwargs)
    seen = {}
    for epoch in range(max(epochs) + 1):
        if epoch in epochs:
            seen[epoch] = tuple(round(g["lr"], 12) for g in optimizer.param_groups)
        optimizer.step()
        scheduler.step()
    return seen


def test_recipe_schedule_and_the_cris_first_epoch_quirk():
    assert _lrs() == {0: (1e-4, 1e-5), 1: (1e-4, 1e-5), 34: (1e-4, 1e-5), 35: (1e-5, 1e-6), 49: (1e-5, 1e-6)}
    quirk = _lrs(full_lr_first_epoch=("backbone",))
    assert quirk[0] == (1e-4, 1e-4) and quirk[1] == (1e-4, 1e-5) and quirk[35] == (1e-5, 1e-6)
    cosine = _lrs(schedule="cosine", max_epochs=50, epochs=(0, 25, 50))
    assert cosine[0] == (1e-4, 1e-5) and cosine[25] == (5e-5, 5e-6) and cosine[50] == (0.0, 0.0)
    with pytest.raises(ValueError, match="needs trainer.max_epochs"):
        _lrs(schedule="cosine")
    with pytest.raises(TypeError, match="'Nadamm' is not a torch.optim optimizer"):
        _lrs(optimizer="Nadamm")
    assert _lrs(optimizer="torch.optim.SGD", optimizer_kwargs={"momentum": 0.9})[0] == (1e-4, 1e-5)


class _Snapshot(Callback):
    """Records the state a fit starts from."""

    def on_train_start(self, trainer, pl_module):
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        self.optimizer_state = dict(trainer.optimizers[0].state)
        self.lrs = [g["lr"] for g in trainer.optimizers[0].param_groups]
        self.epoch, self.step = trainer.current_epoch, trainer.global_step


def test_init_from_loads_weights_but_no_training_state(world, tmp_path):
    torch.manual_seed(0)
    source = tiny_cris(world, milestones=[1])
    fit = trainer(max_epochs=2)
    fit.fit(source, datamodule(world))
    ckpt = tmp_path / "pretrained.ckpt"
    fit.save_checkpoint(ckpt)
    stored = torch.load(ckpt, weights_only=True)
    assert stored["optimizer_states"][0]["state"] and stored["global_step"] > 0  # the file carries training state

    torch.manual_seed(1)
    target = tiny_cris(world, init_from=str(ckpt))
    assert not torch.equal(target.projector.txt.weight, source.projector.txt.weight)  # nothing loaded yet
    snapshot = _Snapshot()
    trainer(max_steps=1, callbacks=[snapshot]).fit(target, datamodule(world))
    for key, value in source.state_dict().items():
        assert torch.equal(snapshot.weights[key], value), key
    assert snapshot.optimizer_state == {} and (snapshot.epoch, snapshot.step) == (0, 0)
    assert snapshot.lrs == [1e-4, pytest.approx(1e-5)]  # fresh schedule, not the decayed one of the source


def test_init_from_rejects_other_architectures(world, tmp_path):
    other = ETRIS(
        backbone=world.backbone,
        pretrained=None,
        input_size=64,
        bridge_dim=16,
        neck_dim=32,
        neck_heads=2,
        nhead=2,
        dim_ffn=32,
    )
    path = tmp_path / "etris.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(ValueError, match="etris.pt: weights do not fit CRIS"):
        tiny_cris(world).load_weights(path)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        tiny_cris(world).load_weights(tmp_path / "missing.ckpt")


def test_validation_logs_every_set_and_predict_returns_original_resolution(world):
    model = tiny_cris(world)
    data = datamodule(world, val_splits=["val", "test"], test_splits=["test"])
    validation = trainer()
    results = validation.validate(model, data, verbose=False)
    keys = set().union(*results)
    for name in ("refcoco/val", "refcoco/test"):
        assert {f"val/{name}/{m}" for m in ("oIoU", "mIoU", "Prec@0.5", "Prec@0.9")} <= keys
    evaluator = next(c for c in validation.callbacks if isinstance(c, Evaluator))
    assert evaluator.last_results["refcoco/val"]["mIoU"] == pytest.approx(results[0]["val/refcoco/val/mIoU"])

    data.setup("test")
    loader = data.test_dataloader()[0]
    predictions = trainer().predict(model, dataloaders=loader)
    batches = list(loader)
    assert len(predictions) == len(batches)
    for masks, batch in zip(predictions, batches):
        assert [tuple(m.shape) for m in masks] == [tuple(g.shape) for g in batch.gt_masks]
        assert all(m.dtype == torch.bool for m in masks)


def _cli(world, tmp_path, *args):
    model = [
        "--model",
        "CRIS",
        "--model.backbone",
        world.backbone,
        "--model.pretrained",
        "null",
        "--model.input_size",
        "64",
        "--model.fpn_out",
        "[16, 32, 64]",
        "--model.nhead",
        "2",
        "--model.dim_ffn",
        "64",
    ]
    data = [
        "--data",
        "RefCOCODataModule",
        "--data.data_root",
        world.refer,
        "--data.input_size",
        "64",
        "--data.word_length",
        "10",
        "--data.batch_size",
        "4",
        "--data.test_splits",
        "[val, test]",
    ]
    trainer_args = [
        "--trainer.accelerator",
        "cpu",
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.num_sanity_val_steps",
        "0",
        "--trainer.logger",
        "false",
    ]
    subcommand, *rest = args
    return main([subcommand, *(model if subcommand == "fit" else []), *data, *trainer_args, *rest])


def test_cli_resumes_fit_and_tests_from_checkpoint_hparams(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["ris"])
    _cli(
        world,
        tmp_path,
        "fit",
        "--trainer.max_epochs",
        "1",
        "--trainer.callbacks+=ModelCheckpoint",
        "--trainer.callbacks.dirpath",
        str(tmp_path / "ckpt"),
        "--trainer.callbacks.filename",
        "first",
    )
    first = tmp_path / "ckpt" / "first.ckpt"
    assert torch.load(first, weights_only=True)["hyper_parameters"]["_class_path"] == "ris.models.CRIS"

    _cli(
        world,
        tmp_path,
        "fit",
        "--ckpt_path",
        str(first),
        "--trainer.max_epochs",
        "2",
        "--trainer.callbacks+=ModelCheckpoint",
        "--trainer.callbacks.dirpath",
        str(tmp_path / "ckpt"),
        "--trainer.callbacks.filename",
        "second",
    )
    resumed = torch.load(tmp_path / "ckpt" / "second.ckpt", weights_only=True)
    first_state = torch.load(first, weights_only=True)
    assert resumed["epoch"] == 1 and resumed["global_step"] == 2 * first_state["global_step"]

    capsys.readouterr()
    _cli(world, tmp_path, "test", "--ckpt_path", str(tmp_path / "ckpt" / "second.ckpt"))  # no --model arguments
    out = capsys.readouterr().out  # the metrics table goes to stdout
    assert "| refcoco/val |" in out and "| refcoco/test |" in out
