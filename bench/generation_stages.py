"""Benchmark: images/s of ``ris generate`` on the synthetic world, split by stage.

Runs the demo's generation (``configs/generate/synthetic.yaml``: unsupervised segmenter masks, the synthetic CoCa
as captioner and as scorer) in-process over the first ``--images`` train images of a synthetic world, with a timer
around each stage's function:

| stage | function timed |
|---|---|
| mask proposals | ``ris.pseudo.generator.propose_masks`` (source + mask policy) |
| crops | ``make_crops`` for the captioner (the scorer's crops are inside "scoring") |
| crop encoding | ``CoCaCaptioner.encode_batch`` (CoCa image tower + cross-attention K/V) |
| beam search | ``CoCaCaptioner.beam_tokens`` |
| sampling (DCS) | ``CoCaCaptioner.sample_batch`` |
| scoring | ``CLIPScorer.score_image`` (its crops, image and text encoding, noun extraction, DoS/UoS/CoS) |
| writing | ``ShardWriter.add`` and ``ShardWriter.flush`` (records to shards, atomically) |

The rest (the Lightning loop, image decoding in the data loader, the caption texts, the summary and report) is
"other". The world is written once into ``--world`` (reused when present); the synthetic CoCa comes from the user
cache (trained in about a minute when absent).

Run: ``.venv/bin/python bench/generation_stages.py [--images 100] [--threads 1] [--device cpu]``
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch

log = logging.getLogger("generation_stages")

STAGES = {
    "mask proposals": ("ris.pseudo.generator", None, "propose_masks"),
    "crops": ("ris.pseudo.generator", None, "make_crops"),
    "crop encoding": ("ris.pseudo.captioner", "CoCaCaptioner", "encode_batch"),
    "beam search": ("ris.pseudo.captioner", "CoCaCaptioner", "beam_tokens"),
    "sampling (DCS)": ("ris.pseudo.captioner", "CoCaCaptioner", "sample_batch"),
    "scoring": ("ris.pseudo.distinctiveness", "CLIPScorer", "score_image"),
    "writing": ("ris.pseudo.shards.writer", "ShardWriter", "add"),
    "writing ": ("ris.pseudo.shards.writer", "ShardWriter", "flush"),
}


def timed(seconds: dict[str, float], stage: str, fn: Callable, device: str) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds[stage] += time.perf_counter() - start

    return wrapper


def instrument(seconds: dict[str, float], device: str) -> None:
    """Wrap every stage's function (module attribute or class method) with a timer."""
    import importlib

    for stage, (module_name, class_name, name) in STAGES.items():
        owner = importlib.import_module(module_name)
        if class_name is not None:
            owner = getattr(owner, class_name)
        setattr(owner, name, timed(seconds, stage, getattr(owner, name), device))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100, help="train images to generate for")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--world", default=None, help="world folder (default: a temporary one)")
    parser.add_argument("--tiny", action="store_true", help="smoke mode: a tiny world and a tiny untrained CoCa")
    parser.add_argument("--precision", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--images-per-decode", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    torch.set_num_threads(args.threads)

    from ris.demo import FAST, DemoSettings, generate_args
    from ris.synthetic.world import write_world
    from ris.synthetic.zoo import synthetic_coca

    settings = FAST if args.tiny else DemoSettings()
    scratch = Path(tempfile.mkdtemp(prefix="generation_stages_"))
    world_dir = Path(args.world) if args.world else scratch / "world"
    world = write_world(world_dir, **asdict(settings.world))
    coca = synthetic_coca(settings.world, settings.coca)
    out = scratch / "pseudo_labels"
    seconds: dict[str, float] = defaultdict(float)
    instrument(seconds, args.device)
    from ris.pseudo.generate_command import run

    accelerator = "gpu" if args.device.startswith("cuda") else "cpu"
    start = time.perf_counter()
    manifest = run([
        *generate_args(settings, world, coca, out),
        "--data.limit", str(args.images),
        "--trainer.accelerator", accelerator,
        "--trainer.enable_progress_bar", "false",
        "--model.precision", args.precision,
        "--model.images_per_decode", str(args.images_per_decode),
        "--output.report_images", "0",
    ])
    total = time.perf_counter() - start
    shutil.rmtree(scratch, ignore_errors=True)
    if manifest is None:
        log.error("ris generate did not finish")
        return 1
    totals = manifest["totals"]
    images = totals["images"]
    log.info("ris generate on the synthetic world: %d images, %d masks, %d candidates; device %s, %d thread(s), "
             "%s, load average %s", images, totals["masks"], totals["candidates"], args.device, args.threads,
             args.precision, " ".join(f"{x:.2f}" for x in os.getloadavg()))
    log.info("%-16s %9s %7s %10s", "stage", "seconds", "share", "images/s")
    seconds["writing"] += seconds.pop("writing ", 0.0)
    for stage in [*(s for s in STAGES if s != "writing "), "other"]:
        value = seconds[stage] if stage != "other" else total - sum(seconds.values())
        rate = images / value if value > 0 else float("inf")
        log.info("%-16s %9.2f %6.1f%% %10.2f", stage, value, 100 * value / total, rate)
    log.info("%-16s %9.2f %6.1f%% %10.2f", "total", total, 100.0, images / total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
