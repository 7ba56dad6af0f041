"""The mini paper table's arithmetic (bench/synthetic_table.py): mean ± std over seeds, a claim holds only when it
holds at every seed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("synthetic_table", ROOT / "bench" / "synthetic_table.py")
table = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = table  # dataclasses look their module up
spec.loader.exec_module(table)

RUNS = {  # mIoU on A, on B (fractions of 1); oIoU = mIoU + 0.01
    "naive": (0.20, 0.05), "dcs_only": (0.24, 0.07), "filter_only": (0.25, 0.08), "dcs_filter": (0.30, 0.20),
    "etris_pseudo": (0.32, 0.18), "pseudo_gt_masks": (0.35, 0.21), "zero_shot_gl_clip": (0.28, 0.25),
    "sag_text_only": (0.22, 0.10), "supervised_100": (0.60, 0.10), "supervised_1": (0.05, 0.01),
    "finetuned_1": (0.33, 0.12), "supervised_10": (0.30, 0.05), "finetuned_10": (0.45, 0.15),
}


def seed_run(seed: int, shift: float = 0.0, **override: tuple[float, float]) -> table.SeedRun:
    runs = {**RUNS, **override}
    results = {name: {table.A: {"mIoU": a + shift, "oIoU": a + shift + 0.01},
                      table.B: {"mIoU": b + shift, "oIoU": b + shift + 0.01}} for name, (a, b) in runs.items()}
    totals = {k: {"masks": 10, "candidates": 440, "kept": 100} for k in ("dcs", "plain", "gt_masks")}
    return table.SeedRun(seed, results, {"dcs": 1.5, "plain": 1.1, "gt_masks": 1.6}, totals, 60.0)


def test_cells_are_mean_and_std_over_seeds_and_a_claim_needs_every_seed():
    text = table.render([seed_run(0), seed_run(1, shift=0.02, dcs_filter=(0.26, 0.20))], table.FAST, 5, fast=True)
    assert "| dcs_filter | 29.00 ± 1.41 | 30.00 ± 1.41 | 21.00 ± 1.41 | 22.00 ± 1.41 |" in text
    lines = text.splitlines()
    verdict = {line.rsplit(": **", 1)[0]: line for line in lines if line[:2] in {f"{i}." for i in range(1, 8)}}
    assert verdict["1. DCS candidates are more distinctive (mean DoS)"].endswith("**holds at every seed**")
    # seed 1: pseudo CRIS 28 < Global-Local CLIP 30 on A -> claim 3 fails there, so overall
    assert verdict["3. CRIS and ETRIS on pseudo-labels beat zero-shot Global-Local CLIP (mIoU and oIoU on A)"].endswith(
        "**does not hold at every seed**")
    assert any(line.startswith("   - seed 1: dcs_filter 28.00/29.00") and line.endswith("does not hold")
               for line in lines)
    # claim 7: drop pseudo 10 < supervised 50, and on B 20 > 10 at both seeds
    assert verdict["7. cross-domain A → B: the pseudo model loses less and beats the supervised one on B (mIoU)"] \
        .endswith("**holds at every seed**")
    assert "seed 0: 1.0 min, seed 1: 1.0 min" in text


def test_one_seed_has_no_std():
    assert table.mean_std([0.5]) == "0.50" and table.mean_std([1.0, 3.0]) == "2.00 ± 1.41"
