"""The LitData copy of the shards (``ris optimize``, ``PseudoRISDataModule(litdata=...)``): what it holds, a 2-process
DDP fit that sees every sample once per epoch, and a mid-epoch resume through a Lightning checkpoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image

from ris.cli import main as ris_main
from ris.datamodules import PseudoRISDataModule
from ris.models import CRIS
from ris.pseudo.shards import ImageResult, ShardWriter, merge_manifests
from ris.pseudo.shards.litdata_copy import METADATA, litdata_dataset, optimize_shards
from tests.test_pseudo_export import _record

REPO = Path(__file__).resolve().parents[1]
MODEL = {"backbone": "tiny-RN", "pretrained": None, "input_size": 32, "fpn_out": (16, 32, 64), "nhead": 2,
         "dim_ffn": 32}


def write_shards(root: Path, images: int = 8, mute: bool = False) -> Path:
    """``images`` 12x16 images with 2 masks each (sample ids ``"{i}:{k}"``), 2 images per shard; with ``mute`` one
    more image whose only mask has empty captions."""
    (root / "images").mkdir(parents=True)
    writer = ShardWriter(root / "shards", 0, {"test": "litdata"}, images_per_shard=2, image_root=str(root / "images"))
    mask = np.zeros((12, 16), bool)
    mask[2:6, 3:9] = True
    for i in range(images):
        Image.fromarray(np.full((12, 16, 3), 10 * i, np.uint8)).save(root / "images" / f"{i}.png")
        writer.add(ImageResult(str(i), [_record(str(i), k, mask, ["a red circle", "blue"], [2.0, 0.1])
                                        for k in range(2)]))
    if mute:
        writer.add(ImageResult("mute", [_record("mute", 0, mask, ["", " "], [2.0, 2.0])]))
    writer.flush()
    merge_manifests(root / "shards", progress=False)
    return root / "shards"


class SeenSamples(Callback):
    """Appends ``[rank, epoch, sample ids]`` of every training batch to ``out/seen-r{rank}.jsonl``; with ``kill``,
    raises before the step after ``kill`` optimizer steps (a killed run)."""

    def __init__(self, out: str, kill: int | None = None) -> None:
        self.out, self.kill = Path(out), kill

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.kill is not None and trainer.global_step == self.kill:
            raise RuntimeError("simulated kill")
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / f"seen-r{trainer.global_rank}.jsonl", "a") as handle:
            handle.write(json.dumps([trainer.global_rank, trainer.current_epoch, list(batch.sample_id)]) + "\n")


def seen(out: Path) -> list[list]:
    return [json.loads(line) for path in sorted(out.glob("seen-r*.jsonl")) for line in path.read_text().splitlines()]


ALL = sorted(f"{i}:{k}" for i in range(8) for k in range(2))


def test_optimize_copies_the_records_with_captions_and_refuses_damaged_shards(tmp_path, capsys):
    shards = write_shards(tmp_path, mute=True)
    assert ris_main(["optimize", str(shards), "--out", str(tmp_path / "lit")]) == 0
    assert "16 records" in capsys.readouterr().out
    metadata = json.loads((tmp_path / "lit" / METADATA).read_text())
    assert metadata["records"] == 16 and metadata["image_root"] == str(tmp_path / "images")
    dataset = litdata_dataset(str(tmp_path / "lit"), lambda record: record.sample_id, shuffle=False)
    assert sorted(dataset[i] for i in range(len(dataset))) == ALL  # the caption-less mask is not copied
    damaged = shards / "shard-r000-000001.jsonl"
    damaged.write_bytes(damaged.read_bytes()[:-10])
    with pytest.raises(ValueError, match="1 missing or damaged shard.*shard-r000-000001.jsonl.*--skip-damaged"):
        optimize_shards(str(shards), str(tmp_path / "lit2"))
    assert optimize_shards(str(shards), str(tmp_path / "lit2"), skip_damaged=True)["records"] == 12


def _fit(tmp_path: Path, name: str, workers: int, kill: int | None = None, ckpt: Path | None = None) -> list[list]:
    torch.manual_seed(0)
    dm = PseudoRISDataModule(shards=str(tmp_path / "shards"), litdata=str(tmp_path / "lit"), batch_size=2,
                             word_length=6, num_workers=workers)
    callbacks = [SeenSamples(str(tmp_path / name), kill),
                 ModelCheckpoint(dirpath=tmp_path / name / "ckpt", every_n_train_steps=3, save_top_k=-1,
                                 filename="{step}")]
    trainer = Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=callbacks, limit_val_batches=0, num_sanity_val_steps=0)
    try:
        trainer.fit(CRIS(**MODEL), dm, ckpt_path=ckpt)
    except RuntimeError as err:
        assert "simulated kill" in str(err)
    return seen(tmp_path / name)


@pytest.mark.parametrize("workers", [0, 2])
def test_mid_epoch_resume_through_a_lightning_checkpoint_continues_the_epoch(tmp_path, workers, one_thread):
    write_shards(tmp_path)
    full = _fit(tmp_path, "full", workers)  # prepare_data writes the LitData copy from the shards
    assert (tmp_path / "lit" / METADATA).is_file()
    for epoch in (0, 1):
        assert sorted(i for _, e, ids in full if e == epoch for i in ids) == ALL
    first = _fit(tmp_path, "first", workers, kill=5)  # killed before its 6th step, after the checkpoint of step 3
    checkpoint = tmp_path / "first" / "ckpt" / "step=3.ckpt"
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["step=3.ckpt"]
    resumed = _fit(tmp_path, "resumed", workers, ckpt=checkpoint)
    state = torch.load(checkpoint, weights_only=False)["loops"]["fit_loop"]["state_dict"]
    assert state["combined_loader"][0]["num_samples_yielded"] == 6
    # the resumed run continues epoch 0 after its 3rd batch and then runs epoch 1: batch for batch the uninterrupted run
    assert first[:3] + resumed == full


def test_two_process_ddp_fit_sees_every_sample_once_per_epoch(tmp_path):
    write_shards(tmp_path)
    optimize_shards(str(tmp_path / "shards"), str(tmp_path / "lit"))
    config = tmp_path / "fit.yaml"
    config.write_text(json.dumps({
        "model": {"class_path": "ris.models.CRIS", "init_args": MODEL | {"fpn_out": [16, 32, 64]}},
        "data": {"class_path": "ris.datamodules.PseudoRISDataModule",
                 "init_args": {"shards": str(tmp_path / "shards"), "litdata": str(tmp_path / "lit"), "batch_size": 2,
                               "word_length": 6, "num_workers": 2}},
        "trainer": {"accelerator": "cpu", "strategy": "ddp", "devices": 2, "max_epochs": 2, "logger": False,
                    "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False,
                    "limit_val_batches": 0, "num_sanity_val_steps": 0,
                    "callbacks": [{"class_path": "tests.test_pseudo_litdata.SeenSamples",
                                   "init_args": {"out": str(tmp_path / "seen")}}]},
    }))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "ris", "fit", "--config", str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = seen(tmp_path / "seen")
    for epoch in (0, 1):
        per_rank = {rank: [i for r, e, ids in rows if r == rank and e == epoch for i in ids] for rank in (0, 1)}
        assert len(per_rank[0]) == len(per_rank[1]) == 8
        assert sorted(per_rank[0] + per_rank[1]) == ALL  # every sample exactly once over the two ranks
