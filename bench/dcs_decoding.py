"""Benchmark: our cached distinctive caption sampling vs a faithful re-implementation of the official loop.

The official loop is :func:`ris.pseudo.reference.official_distinctive_sampling` (method.md §4.4, §8.1): un-cached,
the whole prefix re-run at every step, K − 1 extra decoder rows per active row for the contrast; tokens are drawn
with the same inverse-CDF sampler and pre-drawn uniforms as ours, so the two are compared token for token.

With random weights, EOS may come at any step or never; to time a fixed amount of work both implementations get
``seq_len = steps + 2`` and ``min_seq_len = steps + 1``: EOS is blocked for ``steps`` sampled tokens and then forced.
Like open_clip's loop, the official sampler still runs the model for the forced token and discards the result; ours
skips that step (so the official loop runs ``steps + 1`` model steps, ours ``steps``). A row can still end early by
sampling the pad id (token 0, ``"!"`` in CLIP's BPE), identically in both.

Run: ``.venv/bin/python bench/dcs_decoding.py [--model coca_ViT-B-32] [--masks 3] [--steps 10] [--threads 1]``
(one thread by default: it compares the work of the two sides; see ``docs/benchmarks.md`` for two threads)
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

import torch

from ris.open_clip_models import create_open_clip
from ris.pseudo.captioner import CoCaCaptioner, DecodingSettings
from ris.pseudo.reference import official_distinctive_sampling

log = logging.getLogger("dcs_decoding")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="coca_ViT-B-32")
    parser.add_argument("--masks", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    built = create_open_clip(args.model)  # random init, including CoCa's vocabulary projection
    dtype = getattr(torch, args.dtype)
    built.model.to(dtype)
    settings = DecodingSettings(beam=False, seq_len=args.steps + 2, min_seq_len=args.steps + 1)
    captioner = CoCaCaptioner.from_model(built, settings)
    crops = torch.randn(
        1, args.masks, 3, built.image_size, built.image_size, generator=torch.Generator().manual_seed(1)
    ).to(dtype)
    rows = (len(settings.top_k) + len(settings.top_p)) * args.masks
    uniforms = torch.rand((settings.seq_len, rows), generator=torch.Generator().manual_seed(args.seed))

    captioner.encode(crops)  # warm-up (first-call allocations), shared by both implementations

    start, cpu = time.perf_counter(), time.process_time()
    ours = captioner.sample_tokens(captioner.encode(crops), torch.Generator().manual_seed(args.seed))
    ours_s, ours_cpu = time.perf_counter() - start, time.process_time() - cpu
    log.info("ours (cached): %.2f s wall, %.2f s CPU", ours_s, ours_cpu)

    start, cpu = time.perf_counter(), time.process_time()
    reference = official_distinctive_sampling(built.model, crops[0], built.tokenizer, uniforms, settings)
    reference_s, reference_cpu = time.perf_counter() - start, time.process_time() - cpu
    log.info("official loop (re-implementation): %.2f s wall, %.2f s CPU", reference_s, reference_cpu)

    equal = (ours == reference).all(dim=1)
    equal_rows = int(equal.sum())
    for row in (~equal).nonzero()[:, 0].tolist():
        step = int((ours[row] != reference[row]).nonzero()[0, 0])
        log.info("row %d differs from token %d on (%s rounding of two different computations)", row, step, args.dtype)
    tok = built.tokenizer
    lengths = ((ours != tok.sot_id) & (ours != tok.eot_id) & (ours != tok.pad_id)).sum(dim=1)
    log.info(
        "model %s, K=%d masks, %d settings, %d steps (%d rows, sampled tokens per row %d-%d), threads %d",
        args.model,
        args.masks,
        rows // args.masks,
        args.steps,
        rows,
        int(lengths.min()),
        int(lengths.max()),
        args.threads,
    )
    log.info("equal tokens: %d / %d rows", equal_rows, rows)
    log.info("speed-up: %.1fx wall-clock, %.1fx CPU time", reference_s / ours_s, reference_cpu / ours_cpu)
    # float64 makes rounding differences negligible: every row must match; float32 rows may part on a rounding tie
    return 0 if equal_rows == rows or args.dtype == "float32" else 1


if __name__ == "__main__":
    sys.exit(main())
