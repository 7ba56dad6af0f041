"""Control facts of the synthetic world, measured before any claim (docs/synthetic_table.md, "Control facts").

Facts true of real data that the world and the RIS recipe must reproduce; none of them is a claim of the paper:

1. fully supervised CRIS beats zero-shot Global-Local CLIP clearly (RefCOCO val: 70.3 vs 31.8 mIoU, 2.2×);
2. supervised CRIS is trained to convergence within the budget: its validation curve flattens;
3. the baseline's oracle ceiling (the best of its proposals per expression) and its pick accuracy (how often it
   chooses a best proposal), which bound what proposal picking can reach.

Everything is chosen on the world's **val** split; the test split is scored once, at the end, and printed beside.

    python bench/synthetic_controls.py --out runs/synthetic_controls --seed 0 --epochs 36 --val-every 3
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from tqdm import tqdm

from ris.cli import build_cli
from ris.demo import (
    FAST,
    DemoSettings,
    baseline_model_args,
    cris_args,
    data_args,
    fit,
    refer_set,
    test_args,
    trainer_args,
)
from ris.report import read_run
from ris.synthetic.world import write_world
from ris.synthetic.zoo import synthetic_coca

log = logging.getLogger("synthetic_controls")
PLATEAU = 1.0
"""Convergence: the last three validation points of the curve lie within this many mIoU points."""


def val_curve(run: Path) -> list[tuple[int, float]]:
    """``(epoch, val mIoU %)`` of a CSVLogger run folder, in epoch order."""
    (metrics,) = sorted(run.glob("version_*/metrics.csv"))[-1:]
    with metrics.open() as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("val/mIoU")]
    return [(int(r["epoch"]) + 1, 100 * float(r["val/mIoU"])) for r in rows]


def baseline_picks(settings: DemoSettings, coca: str, world, split: str) -> dict[str, float]:
    """Oracle ceiling (mean best-proposal IoU) and pick accuracy of Global-Local CLIP on ``split`` of domain A."""
    args = test_args(baseline_model_args(settings, coca), settings, world, [refer_set(world, split)],
                     Path("/nonexistent"), "picks")[1:]
    cli = build_cli([*args, "--trainer.logger", "false"], run=False)
    model, data = cli.model, cli.datamodule
    cli.trainer.strategy.connect(model)
    data.trainer = cli.trainer
    data.setup("test")
    picks = []
    loaders = data.test_dataloader()
    for loader in loaders if isinstance(loaders, list) else [loaders]:
        for batch in tqdm(loader, desc=f"baseline picks ({split})", unit="batch"):
            picks += [p for p, pad in zip(model.picks(batch), batch.padding) if not pad]
    with_proposals = [p for p in picks if p.proposals > 0 and p.best_iou > 0]
    return {
        "expressions": len(picks),
        "oracle_mIoU": 100 * sum(p.best_iou for p in picks) / len(picks),
        "chosen_mIoU": 100 * sum(p.chosen_iou for p in picks) / len(picks),
        "pick_accuracy": 100 * sum(p.picked_best for p in with_proposals) / max(len(with_proposals), 1),
        "mean_proposals": sum(p.proposals for p in picks) / len(picks),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/synthetic_controls")
    parser.add_argument("--seed", type=int, default=0, help="world seed")
    parser.add_argument("--epochs", type=int, default=36, help="epochs of the supervised CRIS curve")
    parser.add_argument("--val-every", type=int, default=3, help="validation period of the curve (epochs)")
    parser.add_argument("--fast", action="store_true", help="the demo's tiny --fast sizes (a smoke test)")
    parser.add_argument("--markdown", help="also write the result block to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.time()
    settings = FAST if args.fast else DemoSettings()
    settings = replace(settings, world=replace(settings.world, seed=args.seed))
    out = Path(args.out).resolve() / f"seed{args.seed}"
    runs = out / "runs"
    world = write_world(out / "world", **asdict(settings.world))
    coca = synthetic_coca(settings.world, settings.coca)
    sets = {"val": refer_set(world, "val"), "test": refer_set(world, "test")}

    picks = {split: baseline_picks(settings, coca, world, split) for split in sets}
    build_cli(test_args(baseline_model_args(settings, coca), settings, world, list(sets.values()), runs, "gl_clip"))
    baseline = read_run(runs / "gl_clip").metrics

    name = "supervised_curve"
    checkpoint = fit([
        *trainer_args(runs, name), "--trainer.max_epochs", str(args.epochs),
        "--trainer.check_val_every_n_epoch", str(args.val_every),
        *cris_args(settings, coca, epochs=args.epochs), *data_args(settings, world),
    ])
    curve = val_curve(runs / name)
    build_cli(test_args(["--ckpt_path", checkpoint], settings, world, list(sets.values()), runs, "supervised"))
    supervised = read_run(runs / "supervised").metrics

    tail = [v for _, v in curve[-3:]]
    converged = len(tail) == 3 and max(tail) - min(tail) <= PLATEAU
    block = render(args, settings, picks, baseline, supervised, curve, converged, time.time() - started)
    print(block)
    if args.markdown:
        Path(args.markdown).write_text(block)
    return 0


def render(args, settings, picks, baseline, supervised, curve, converged, seconds) -> str:
    def pct(metrics: dict, split: str, key: str) -> float:
        return 100 * metrics[f"refcoco/{split}"][key]

    lines = [
        f"### Control facts, world seed {args.seed}",
        "",
        f"Command: `python bench/synthetic_controls.py --seed {args.seed} --epochs {args.epochs} "
        f"--val-every {args.val_every}`{' --fast' if args.fast else ''} ({seconds / 60:.1f} min on 2 CPU cores; "
        f"world {asdict(settings.world)}; recipe configs/synthetic/cris.yaml with the milestone at 3/4 of the "
        "epochs). Numbers in percent; val chooses, test is shown beside.",
        "",
        "| | val mIoU | val oIoU | test mIoU | test oIoU |",
        "|---|---:|---:|---:|---:|",
    ]
    rows = (("zero-shot Global-Local CLIP", baseline), (f"supervised CRIS, {args.epochs} ep", supervised))
    for label, metrics in rows:
        lines.append(f"| {label} | {pct(metrics, 'val', 'mIoU'):.2f} | {pct(metrics, 'val', 'oIoU'):.2f} | "
                     f"{pct(metrics, 'test', 'mIoU'):.2f} | {pct(metrics, 'test', 'oIoU'):.2f} |")
    lines.append(f"| baseline oracle ceiling (best of {picks['val']['mean_proposals']:.1f} proposals per expression) | "
                 f"{picks['val']['oracle_mIoU']:.2f} | | {picks['test']['oracle_mIoU']:.2f} | |")
    ratio = pct(supervised, "val", "mIoU") / max(pct(baseline, "val", "mIoU"), 1e-9)
    curve_text = ", ".join(f"{e}: {v:.1f}" for e, v in curve)
    lines += [
        "",
        f"- Supervised / zero-shot mIoU on val: **{ratio:.2f}×** (RefCOCO val: 70.3 / 31.8 = 2.2×).",
        f"- Baseline pick accuracy (a best proposal chosen, among expressions with an overlapping proposal): "
        f"val {picks['val']['pick_accuracy']:.1f} %, test {picks['test']['pick_accuracy']:.1f} %.",
        f"- Supervised val mIoU by epoch: {curve_text} — "
        + ("converged (last three points within "
           f"{PLATEAU:g})" if converged else f"**not converged** (last three points spread more than {PLATEAU:g})")
        + ".",
        "",
    ]
    if any(math.isnan(v) for _, v in curve):
        lines.append("- The curve holds NaN values: the run diverged.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
