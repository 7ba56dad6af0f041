import json
import pickle
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from ris.cli import main
from ris.datamodules.labeled import select_labeled_images
from tests.workflow_world import SIZE, clip_dir, cris_args, trainer_args, write_pseudo_shards

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "semi"


class Probe(Callback):
    """Records what a fit starts from and which samples it trains on, into the JSON file ``out``."""

    def __init__(self, out: str, reference: str | None = None) -> None:
        self.out = out
        self.reference = reference
        self.record: dict = {"batches": []}

    def on_train_start(self, trainer, pl_module) -> None:
        optimizer = trainer.optimizers[0]
        self.record["global_step"] = trainer.global_step
        self.record["optimizer_state_entries"] = len(optimizer.state)
        self.record["lrs"] = [group["lr"] for group in optimizer.param_groups]
        if self.reference:
            saved = torch.load(self.reference, map_location="cpu", weights_only=True)["state_dict"]
            current = pl_module.state_dict()
            self.record["weights_equal_checkpoint"] = all(torch.equal(current[k], v) for k, v in saved.items())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.record["batches"].append(
            {"dataset": batch.dataset, "image_id": batch.image_id, "sample_id": batch.sample_id, "text": batch.text}
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if "first_adam_step" not in self.record:
            state = trainer.optimizers[0].state
            self.record["first_adam_step"] = [int(s["step"]) for s in state.values()][:1]

    def on_train_end(self, trainer, pl_module) -> None:
        Path(self.out).write_text(json.dumps(self.record))


def probe(out: Path, reference: Path | None = None) -> str:
    init = {"out": str(out)} | ({"reference": str(reference)} if reference else {})
    return "--trainer.callbacks+=" + json.dumps({"class_path": "tests.test_semi_supervised.Probe", "init_args": init})


TINY_CRIS = [
    "--model.init_args.pretrained", "null", "--model.init_args.input_size", str(SIZE),
    "--model.init_args.fpn_out", "[16, 32, 64]", "--model.init_args.nhead", "2", "--model.init_args.dim_ffn", "32",
    "--model.init_args.num_layers", "1",
]
CPU = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.enable_progress_bar", "false",
       "--trainer.enable_model_summary", "false", "--trainer.limit_val_batches", "0", "--trainer.max_epochs", "1"]


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_world):
    root = tmp_path_factory.mktemp("semi")
    world = tiny_world
    backbone = clip_dir(root / "models", "tiny-RN")
    shards = write_pseudo_shards(world, root / "shards")
    return root, world, backbone, shards


@pytest.fixture(autouse=True)
def cli_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ris"])


@pytest.fixture(scope="module")
def pseudo_checkpoint(env):
    root, _, backbone, shards = env
    args = ["fit", *cris_args(backbone), "--data", "PseudoRISDataModule", "--data.shards", str(shards),
            "--data.input_size", str(SIZE), "--data.word_length", "8", "--data.batch_size", "4",
            *trainer_args(root / "runs", "pseudo", steps=2)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["ris"])
        assert main(args) == 0
    (ckpt,) = (root / "runs" / "pseudo").rglob("*.ckpt")
    return ckpt


def test_finetune_loads_weights_only_and_trains_on_exactly_the_labelled_images(env, pseudo_checkpoint):
    root, world, backbone, _ = env
    saved = torch.load(pseudo_checkpoint, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2 and int(saved["optimizer_states"][0]["state"][0]["step"]) == 2
    out = root / "finetune.json"
    args = [
        "fit", "--config", str(CONFIGS / "cris_finetune.yaml"), "--config", str(CONFIGS / "labeled_10pct.yaml"),
        "--data.init_args.labeled_fraction", "0.3",
        "--model.init_args.backbone", backbone, *TINY_CRIS, "--model.init_args.init_from", str(pseudo_checkpoint),
        "--data.init_args.data_root", str(world.refer_root), "--data.init_args.input_size", str(SIZE),
        "--data.init_args.word_length", "8", "--data.init_args.batch_size", "32",
        "--trainer.logger.init_args.save_dir", str(root / "runs" / "finetune"), *CPU, probe(out, pseudo_checkpoint),
    ]
    assert main(args) == 0
    record = json.loads(out.read_text())
    assert record["weights_equal_checkpoint"] is True
    assert record["global_step"] == 0 and record["optimizer_state_entries"] == 0
    assert record["first_adam_step"] == [1], "a fresh optimizer: Adam's step counter starts at 1, not 3"
    assert record["lrs"] == [pytest.approx(1e-4), pytest.approx(1e-5)]
    refs = pickle.loads((world.refcoco / "refs(unc).p").read_bytes())
    train_images = {r["image_id"] for r in refs if r["split"] == "train"}
    selected = set(select_labeled_images(train_images, 0.3, 0))
    assert len(selected) == 3
    seen = Counter((int(i), s) for b in record["batches"] for i, s in zip(b["image_id"], b["sample_id"]))
    expected = {(r["image_id"], str(r["ref_id"])) for r in refs if r["split"] == "train" and r["image_id"] in selected}
    assert set(seen) == expected and set(seen.values()) == {1}, "one epoch = every labelled region once, no other"
    assert (root / "runs" / "finetune" / "labeled_10pct" / "version_0" / "config.yaml").is_file()


def test_joint_config_mixes_sources_in_ratio_and_is_reproducible_by_seed(env):
    root, world, backbone, shards = env
    records = []
    for run in range(2):
        out = root / f"joint{run}.json"
        args = [
            "fit", "--config", str(CONFIGS / "cris_joint.yaml"), "--config", str(CONFIGS / "labeled_100pct.yaml"),
            "--model.init_args.backbone", backbone, *TINY_CRIS,
            "--data.init_args.input_size", str(SIZE), "--data.init_args.word_length", "8",
            "--data.init_args.batch_size", "4",
            "--data.init_args.pseudo.init_args.shards", str(shards),
            "--data.init_args.pseudo.init_args.input_size", str(SIZE),
            "--data.init_args.pseudo.init_args.word_length", "8",
            "--data.init_args.labeled.init_args.data_root", str(world.refer_root),
            "--data.init_args.labeled.init_args.input_size", str(SIZE),
            "--data.init_args.labeled.init_args.word_length", "8",
            "--trainer.logger.init_args.save_dir", str(root / "runs" / f"joint{run}"), *CPU,
            "--trainer.max_steps", "3", probe(out),
        ]
        assert main(args) == 0
        records.append(json.loads(out.read_text()))
    batches = records[0]["batches"]
    assert len(batches) == 3
    assert all(Counter(b["dataset"]) == Counter({"refcoco": 2, "pseudo": 2}) for b in batches)
    assert records[0]["batches"] == records[1]["batches"], "same seed, same samples and captions"
