"""Exactly-once evaluation on any set size (docs/data.md §4.4): ``ris test`` on 2 gloo processes scores sets of 1, 2
and 3 sentences, each sentence once, with the metrics of a single-process run."""

import csv
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ris.cli import build_cli
from ris.datamodules.exactly_once import PaddedEvaluationSampler, PaddedEvaluationSet
from ris.evaluation import Evaluator
from tests.workflow_world import clip_dir, cris_args

REPO = Path(__file__).resolve().parents[1]
SIZES = (1, 2, 3)


def small_refer_root(world_refer: Path, out: Path, sentences: int) -> Path:
    """A refer root whose ``test`` split holds exactly ``sentences`` sentences (images shared with the world)."""
    refs = pickle.loads((world_refer / "refcoco" / "refs(unc).p").read_bytes())
    kept, left = [], sentences
    for ref in (r for r in refs if r["split"] == "test"):
        if left == 0:
            break
        take = min(left, len(ref["sentences"]))
        kept.append({**ref, "sentences": ref["sentences"][:take], "sent_ids": ref["sent_ids"][:take]})
        left -= take
    (out / "refcoco").mkdir(parents=True)
    (out / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(kept))
    (out / "refcoco" / "instances.json").symlink_to(world_refer / "refcoco" / "instances.json")
    (out / "images").symlink_to(world_refer / "images")
    return out


@dataclass
class _Sample:
    index: int
    padding: bool = False


@pytest.mark.parametrize("size,world", [(1, 2), (2, 2), (3, 2), (1, 3), (5, 3), (0, 2)])
def test_padded_sampler_gives_every_rank_equal_work_and_each_sample_once(size, world):
    data = list(range(size))
    per_rank = [list(PaddedEvaluationSampler(data, num_replicas=world, rank=r)) for r in range(world)]
    assert len({len(indices) for indices in per_rank}) == 1
    assert all(len(indices) >= 1 for indices in per_rank) or size == 0
    real = sorted(i for indices in per_rank for i in indices if i < size)
    assert real == data  # every sample exactly once
    padded = PaddedEvaluationSet([_Sample(i) for i in data])
    assert all(padded[i].padding == (i >= size) for indices in per_rank for i in indices)


def _logged(metrics_csv: Path) -> dict[str, float]:
    rows = list(csv.DictReader(metrics_csv.open()))
    return {k: float(v) for row in rows for k, v in row.items() if k.startswith("test/") and v}


def test_ddp_test_on_sets_smaller_than_the_process_count(tmp_path, tiny_world, monkeypatch, one_thread):
    backbone = clip_dir(tmp_path / "models", "tiny-RN")
    sets = ", ".join(
        f"{{dataset: refcoco, data_root: {small_refer_root(tiny_world.refer_root, tmp_path / f'n{n}', n)}, "
        f"split: test, name: n{n}}}"
        for n in SIZES
    )
    common = [
        "test", *cris_args(backbone),
        "--data", "RefCOCODataModule", "--data.data_root", str(tiny_world.refer_root), "--data.word_length", "8",
        "--data.test_splits", "[]", "--data.test_sets", f"[{sets}]", "--data.eval_batch_size", "2",
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "ris", *common, "--trainer.strategy", "ddp", "--trainer.devices", "2",
         "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(tmp_path / "runs"),
         "--trainer.logger.name", "ddp"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world_size=2" in proc.stderr or "distributed_backend=gloo" in proc.stderr
    assert "| n1/test |" in proc.stdout and proc.stdout.rstrip().endswith("| 3 |")  # the table, printed last
    ddp = _logged(tmp_path / "runs" / "ddp" / "version_0" / "metrics.csv")
    assert {n: ddp[f"test/n{n}/test/samples"] for n in SIZES} == {n: float(n) for n in SIZES}

    monkeypatch.setattr("sys.argv", ["ris"])
    cli = build_cli([*common, "--trainer.logger", "false", "--trainer.devices", "1", "--trainer.default_root_dir",
                     str(tmp_path / "single")])
    evaluator = next(c for c in cli.trainer.callbacks if isinstance(c, Evaluator))
    single = {f"test/{name}/{k}": v for name, values in evaluator.last_results.items() for k, v in values.items()}
    assert single.keys() == ddp.keys()
    for key, value in ddp.items():
        assert single[key] == pytest.approx(value, abs=1e-6), key
