"""``bench/gpu_check.sh --device cpu``: the GPU bench script's smoke run at tiny sizes."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_run_prints_stage_rates_and_the_floor(tmp_path):
    env = {**os.environ, "PSEUDO_RIS_CACHE": str(tmp_path / "cache"), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--device", "cpu"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    for stage in ("mask proposals", "crop encoding", "beam search", "sampling (DCS)", "scoring", "writing", "total"):
        assert any(line.startswith(stage) and "%" in line for line in log.splitlines()), stage
    assert "images/s" in log
    assert "ours / floor" in log and "beam search (width 2" in log
    assert "bfloat16 autocast" in log and "rows equal to float32" in log


def test_gpu_check_rejects_unknown_arguments():
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--fast"], capture_output=True, text=True)
    assert done.returncode == 2 and "usage" in done.stderr
