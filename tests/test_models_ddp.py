"""``ris fit`` under DDP (2 CPU processes, gloo) and exactly-once evaluation: the validation metrics logged by the
2-process run equal a single-process validation of the checkpoint it wrote."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ris.cli import build_cli
from ris.evaluation import Evaluator
from ris.open_clip_models import create_open_clip, save_local_dir
from ris.synthetic import world_tokenizer
from ris.synthetic.world import WorldPaths

REPO = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, paths: WorldPaths) -> Path:
    vocab = world_tokenizer()
    folder = save_local_dir(tmp_path / "vit", "tiny-ViT", create_open_clip("tiny-ViT", tokenizer=vocab).model, vocab)
    config = tmp_path / "tiny.yaml"
    config.write_text(f"""
model:
  class_path: ris.models.ETRIS
  init_args: {{backbone: "local-dir:{folder}", pretrained: null, input_size: 64, bridge_dim: 16, neck_dim: 32,
              neck_heads: 2, nhead: 2, dim_ffn: 32}}
data:
  class_path: ris.datamodules.RefCOCODataModule
  init_args: {{data_root: "{paths.refer_root}", word_length: 10, batch_size: 2, eval_batch_size: 1,
              val_splits: [test]}}
trainer:
  accelerator: cpu
  enable_progress_bar: false
  enable_model_summary: false
""")
    return config


def _logged_validation(metrics_csv: Path) -> dict[str, float]:
    rows = list(csv.DictReader(metrics_csv.open()))
    last = [r for r in rows if r.get("val/refcoco/test/mIoU")][-1]
    return {k: float(v) for k, v in last.items() if k.startswith("val/") and v}


def test_ddp_fit_then_single_process_validation_agree(tmp_path, monkeypatch, one_thread, tiny_world):
    config = _config(tmp_path, tiny_world)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ris",
            "fit",
            "--config",
            str(config),
            "--trainer.strategy",
            "ddp",
            "--trainer.devices",
            "2",
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.num_sanity_val_steps",
            "0",
            "--trainer.logger",
            "CSVLogger",
            "--trainer.logger.save_dir",
            str(run),
            "--trainer.logger.name",
            "ddp",
            "--trainer.callbacks+=ModelCheckpoint",
            "--trainer.callbacks.dirpath",
            str(run / "ckpt"),
            "--trainer.callbacks.filename",
            "last",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world_size=2" in proc.stderr or "distributed_backend=gloo" in proc.stderr
    ddp = _logged_validation(run / "ddp" / "version_0" / "metrics.csv")
    ckpt = run / "ckpt" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 2

    monkeypatch.setattr("sys.argv", ["ris"])
    cli = build_cli(
        [
            "validate",
            "--config",
            str(config),
            "--ckpt_path",
            str(ckpt),
            "--trainer.logger",
            "false",
            "--trainer.default_root_dir",
            str(tmp_path / "single"),
        ]
    )
    evaluator = next(c for c in cli.trainer.callbacks if isinstance(c, Evaluator))
    single = {f"val/{name}/{k}": v for name, values in evaluator.last_results.items() for k, v in values.items()}
    assert set(single) == set(ddp) and len(ddp) == 7
    assert (
        len(cli.datamodule.eval_datasets["validate"][0]) % 2 == 1
    )  # an odd set: a padding DistributedSampler would score one sample twice on 2 ranks
    for key, value in ddp.items():
        assert single[key] == pytest.approx(value, abs=1e-6), key
