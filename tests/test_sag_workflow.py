"""SaG through the command line on the tiny synthetic world: ``ris fit`` on human expressions and on pseudo-label
shards, ``ris test`` of the checkpoints, and ``ris report`` labelling both rows as text-supervised."""

from __future__ import annotations

import pickle

import pytest

from ris.cli import build_cli
from ris.report import read_run

from .sag_tiny import TINY_VIT, VIT_NAME
from .workflow_world import SIZE, clip_dir, make_world, trainer_args, write_pseudo_shards


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["ris"])


def sag_args(text_encoder: str) -> list[str]:
    """``ris`` arguments of a tiny SaG (random ViT of the real architecture, the world's tiny CoCa text tower)."""
    return [
        "--model", "SaG", "--model.vit", VIT_NAME, "--model.vit_pretrained", "null",
        "--model.vit_overrides", str(TINY_VIT).replace("'", '"'), "--model.input_size", str(SIZE),
        "--model.text_encoder", text_encoder, "--model.dim", "32", "--model.num_gaussians", "3",
        "--model.samples_per_gaussian", "2", "--model.iterations", "2", "--model.slot_head_dim", "8",
        "--model.interaction_head_dim", "8", "--model.fusion_head_dim", "8", "--model.loss_warmup", "2",
        "--trainer.gradient_clip_val", "0.1",
    ]


def test_fit_test_and_report_label_sag_rows_text_supervised(tmp_path, one_thread):
    world = make_world(tmp_path / "world")
    coca = clip_dir(tmp_path, "tiny-coca")
    shards = write_pseudo_shards(world, tmp_path / "shards")
    refer = ["--data.data_root", str(world.refer_root), "--data.word_length", "8", "--data.batch_size", "4"]
    checkpoints = {}
    for name, data in {
        "sag_human": ["--data", "RefCOCODataModule", *refer, "--data.val_splits", "[]", "--data.test_splits", "[]",
                      "--data.train_unit", "sentence"],
        "sag_pseudo": ["--data", "PseudoRISDataModule", "--data.shards", str(shards), "--data.word_length", "8",
                       "--data.batch_size", "4"],
    }.items():
        cli = build_cli(["fit", *sag_args(coca), *trainer_args(tmp_path / "runs", name, steps=2), *data])
        assert cli.trainer.global_step == 2
        checkpoints[name] = cli.trainer.checkpoint_callback.best_model_path
    for name, ckpt in checkpoints.items():
        build_cli(["test", "--ckpt_path", ckpt, *trainer_args(tmp_path / "runs", f"{name}_test"),
                   "--data", "RefCOCODataModule", *refer, "--data.val_splits", "[]", "--data.test_splits", "[test]"])
    human, pseudo = (read_run(tmp_path / "runs" / f"{n}_test") for n in checkpoints)
    assert human.kind == "text-supervised" and human.labeled_fraction == 1.0
    assert pseudo.kind == "pseudo, text only" and pseudo.labeled_fraction == 0.0
    refs = pickle.loads((world.refer_root / "refcoco" / "refs(unc).p").read_bytes())
    sentences = sum(len(r["sentences"]) for r in refs if r["split"] == "test")
    for run in (human, pseudo):
        test = run.metrics["refcoco/test"]
        assert test["samples"] == sentences and 0.0 <= test["mIoU"] <= 1.0
        assert test["Prec@0.5"] >= test["Prec@0.9"]
    from ris.report import main as report

    runs = [str(tmp_path / "runs" / f"{n}_test") for n in checkpoints]
    assert report([*runs, "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "results.md").read_text()
    assert "| sag_human_test | text-supervised | 100 |" in table
    assert "| sag_pseudo_test | pseudo, text only | 0 |" in table
    for name, run in (("sag_human_test", human), ("sag_pseudo_test", pseudo)):  # the table shows the run's values
        line = next(x for x in table.splitlines() if x.startswith(f"| {name} |"))
        shown = [float(c) for c in line.strip("|").split("|")[4:]]
        assert shown == [round(100 * run.metrics["refcoco/test"][k], 2) for k in ("oIoU", "mIoU")]
