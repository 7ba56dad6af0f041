"""Benchmark: quality and speed of the unsupervised segmenter (the CPU stand-in for SAM) on the synthetic world.

For each domain and image size, ``--scenes`` scenes are drawn (seeds 0…N−1); the segmenter's masks go through the
default :class:`~ris.pseudo.masks.MaskPolicy`, and against the ground-truth visible object masks we report

- **best IoU**: per object, the IoU of the best-matching proposal (0 without proposals), averaged over objects;
- **precision@0.5**: the fraction of proposals that match some object with IoU > 0.5;
- masks per image and milliseconds per image (segmenter only).

Run: ``.venv/bin/python bench/mask_proposals.py [--scenes 50] [--sizes 64 96]``; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

from ris.pseudo.masks import MaskPolicy, SegmenterMaskSource
from ris.synthetic.scene import DOMAINS, make_scene


def evaluate(domain: str, size: int, scenes: int, source: SegmenterMaskSource) -> dict[str, float]:
    """Best-IoU, precision@0.5, masks/image and ms/image over ``scenes`` scenes."""
    policy = MaskPolicy()
    best, hits, proposals, seconds = [], 0, 0, 0.0
    for seed in range(scenes):
        scene = make_scene(np.random.default_rng(seed), domain=domain, image_size=size)
        start = time.perf_counter()
        masks = policy.apply(source(scene.image, str(seed)), str(seed)).masks
        seconds += time.perf_counter() - start
        truth = [obj.mask for obj in scene.objects]
        best += [max(((t & m).sum() / (t | m).sum() for m in masks), default=0.0) for t in truth]
        hits += sum(max((t & m).sum() / (t | m).sum() for t in truth) > 0.5 for m in masks)
        proposals += len(masks)
    return {
        "best_iou": float(np.mean(best)),
        "precision": hits / max(proposals, 1),
        "masks": proposals / scenes,
        "ms": 1000 * seconds / scenes,
    }


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=50)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96])
    args = parser.parse_args(list(argv))
    source = SegmenterMaskSource()
    lines = [
        "| domain | image size | mean best IoU | precision@0.5 | masks / image | ms / image |",
        "|---|---|---|---|---|---|",
    ]
    for domain in DOMAINS:
        for size in args.sizes:
            r = evaluate(domain, size, args.scenes, source)
            lines.append(
                f"| {domain} | {size} | {r['best_iou']:.3f} | {r['precision']:.2f} | {r['masks']:.1f} | {r['ms']:.0f} |"
            )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
