"""One CRIS recipe on the synthetic world: ``ris fit`` with the demo's CRIS arguments plus overrides, then ``ris test``.

Trains on the world's ground-truth train expressions (the fully supervised yardstick) or on pseudo-label shards,
tests on the GT ``refcoco/test`` expressions and prints one line of metrics. Arguments after ``--`` are appended to
the ``ris fit`` command line, so they override the demo's recipe (``ris.demo.cris_args``):

    python bench/cris_recipe.py A --threads 1 -- --model.fpn_out "[32, 64, 128]" --model.dim_ffn 128
    python bench/cris_recipe.py D --shards runs/demo/pseudo_labels --epochs 12

The world (default ``WorldSettings``) is written under ``--out`` if it is not there yet.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ris.cli import build_cli
from ris.demo import DemoSettings, cris_args, data_args, fit, refer_set, test_args, trainer_args
from ris.report import read_run
from ris.synthetic.world import WorldPaths, write_world
from ris.synthetic.zoo import synthetic_coca


def main(argv: list[str]) -> int:
    own, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="run name (a folder under OUT/runs)")
    parser.add_argument("--out", default="runs/cris_recipe")
    parser.add_argument("--shards", help="train on these pseudo-label shards instead of the GT train expressions")
    parser.add_argument("--epochs", type=int, default=DemoSettings().epochs)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(own)
    torch.set_num_threads(args.threads)
    settings = replace(DemoSettings(), epochs=args.epochs)
    out = Path(args.out).resolve()
    world = WorldPaths.at(out / "world")
    if not world.settings.is_file():
        world = write_world(out / "world", **asdict(settings.world))
    coca = synthetic_coca(settings.world, settings.coca)
    runs = out / "runs"
    started = time.time()
    checkpoint = fit([
        *trainer_args(runs, args.name, settings.epochs),
        *cris_args(settings, coca),
        *extra,
        *data_args(settings, world, Path(args.shards) if args.shards else None),
    ])
    fit_seconds = time.time() - started
    test_sets = [refer_set(world, "test")]
    build_cli(test_args(["--ckpt_path", checkpoint], settings, world, test_sets, runs, f"{args.name}_test"))
    metrics = read_run(runs / f"{args.name}_test").metrics["refcoco/test"]
    print(args.name, " ".join(extra), json.dumps({k: round(100 * v, 2) for k, v in metrics.items()}),
          f"fit {fit_seconds / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
