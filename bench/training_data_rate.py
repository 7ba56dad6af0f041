"""Benchmark: does CRIS training on the synthetic world ever wait on data, and what do its metrics cost?

With the demo's CRIS recipe (``configs/synthetic/cris.yaml`` through ``ris.demo.cris_args``) and its training data
(the world's GT train expressions, or ``--shards`` pseudo-label shards as in the demo), built by the CLI exactly as
``ris fit`` builds them, the bench measures side by side, alternating A B A B:

- A: the training data loader alone (its configured workers), samples/s over ``--batches`` batches;
- B: the training step alone (forward, loss, backward, optimizer step) on batches already in memory, samples/s;

and, on the validation set, the evaluation step (``predict_masks``) against ``RISMetrics.update`` on its masks.
It prints the medians, ``A / B`` (target ≥ 3) and the metric's share of an evaluation step (target < 2 %).

Run: ``.venv/bin/python bench/training_data_rate.py [--batches 20] [--rounds 2] [--threads 2] [--shards DIR]``
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from ris.cli import build_cli
from ris.demo import DemoSettings, cris_args, data_args, refer_set
from ris.metrics import RISMetrics
from ris.synthetic.world import WorldPaths, write_world
from ris.synthetic.zoo import synthetic_coca

log = logging.getLogger("training_data_rate")


def loader_rate(loader, batches: int) -> float:
    """Samples/s of iterating ``batches`` batches (the workers' start-up included, as at an epoch start)."""
    start, samples = time.perf_counter(), 0
    for batch in itertools.islice(loader, batches):
        samples += len(batch)
    return samples / (time.perf_counter() - start)


def step_rate(model, optimizer, batches: list) -> float:
    model.train()
    start, samples = time.perf_counter(), 0
    for index, batch in enumerate(batches):
        loss = model.training_step(batch, index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        samples += len(batch)
    return samples / (time.perf_counter() - start)


@torch.inference_mode()
def evaluation_costs(model, batches: list) -> tuple[float, float]:
    """Seconds of the evaluation steps and of ``RISMetrics.update`` on their masks."""
    model.eval()
    metric = RISMetrics()
    step = update = 0.0
    for batch in batches:
        start = time.perf_counter()
        masks = model.predict_masks(batch)
        step += time.perf_counter() - start
        start = time.perf_counter()
        metric.update(masks, batch.gt_masks)
        update += time.perf_counter() - start
    return step, update


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/training_data_rate", help="where the world is written (reused)")
    parser.add_argument("--shards", help="train on these pseudo-label shards (the demo) instead of GT expressions")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    warnings.filterwarnings("ignore", message=".*self.log.*")
    torch.set_num_threads(args.threads)
    settings = DemoSettings()
    world = WorldPaths.at(Path(args.out) / "world")
    if not world.settings.is_file():
        world = write_world(Path(args.out) / "world", **asdict(settings.world))
    coca = synthetic_coca(settings.world, settings.coca)
    cli = build_cli([
        *cris_args(settings, coca),
        *data_args(settings, world, Path(args.shards) if args.shards else None),
        "--data.init_args.val_sets", f"[{refer_set(world, 'val')}]",
        "--trainer.accelerator", "cpu",
    ], run=False)
    model, data = cli.model, cli.datamodule
    data.tokenizer, data.input_spec = model.tokenizer, model.input_spec  # what the trainer's model would give
    data.setup("fit")
    loader = data.train_dataloader()
    cached = list(itertools.islice(loader, args.batches))
    optimizer = model.configure_optimizers()["optimizer"]
    val = data.val_dataloader()
    val_batches = list(itertools.islice(val[0] if isinstance(val, list) else val, args.batches))
    log.info("CRIS (demo recipe), batch %d, %d threads, loader workers %s; load average %s", len(cached[0]),
             args.threads, getattr(loader, "num_workers", "?"), " ".join(f"{x:.2f}" for x in os.getloadavg()))
    loads, steps, ratios = [], [], []
    for _ in range(args.rounds):
        loads.append(loader_rate(loader, args.batches))
        steps.append(step_rate(model, optimizer, cached))
        step, update = evaluation_costs(model, val_batches)
        ratios.append(update / step)
    load, train = statistics.median(loads), statistics.median(steps)
    log.info("A, data loader alone: %s samples/s (median %.1f)", " ".join(f"{x:.1f}" for x in loads), load)
    log.info("B, training step alone: %s samples/s (median %.1f)", " ".join(f"{x:.1f}" for x in steps), train)
    log.info("A / B = %.1f (target >= 3)", load / train)
    log.info("RISMetrics.update / evaluation step: %s (median %.2f%%, target < 2%%)",
             " ".join(f"{100 * r:.2f}%" for r in ratios), 100 * statistics.median(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
