"""Benchmark: our cached distinctive caption sampling vs the official loop, and vs the FLOP floor of its own work.

The official loop is :func:`ris.pseudo.reference.official_distinctive_sampling` (docs/method.md §4.4, §8.1): un-cached,
the whole prefix re-run at every step, K − 1 extra decoder rows per active row for the contrast; tokens are drawn
with the same inverse-CDF sampler and pre-drawn uniforms as ours, so the two are compared token for token.

**The floor.** Our decoder records, per step, how many distinct prefixes (text tower + the decoder's first block)
and distinct (prefix, image) states (the other decoder blocks) it computed (:class:`ris.pseudo.coca_decoder.
StepWork`). From those counts the bench derives every matrix product of the step — the projections and MLPs of
every layer, the attention over the cached keys and the 255 image tokens, the vocabulary projection of the targets
and of the top-p rows' contrast — and times each distinct product shape with ``F.linear`` on this machine in the
same run (best of several calls; the attention products are timed at the rate of the step's MLP product). Their sum
is the time a perfect implementation of the same exact computation would need: ``ours / floor`` is how much of our
time is overhead. The same is done for the beam-search captions (which the official loop decodes 6× redundantly;
they are not timed on the official side).

With random weights, EOS may come at any step or never; to time a fixed amount of work both implementations get
``seq_len = steps + 2`` and ``min_seq_len = steps + 1``: EOS is blocked for ``steps`` sampled tokens and then forced.
Like open_clip's loop, the official sampler still runs the model for the forced token and discards the result; ours
skips that step (so the official loop runs ``steps + 1`` model steps, ours ``steps``). A row can still end early by
sampling the pad id (token 0, ``"!"`` in CLIP's BPE), identically in both.

Timings alternate A B A B (``--repeats`` rounds) and medians are printed; the machine state (load average) is
printed with them. ``--model synthetic-coca`` uses the synthetic world's trained CoCa (real-style captions, so the
prefix sharing is what real captions give); ``--precision bfloat16`` adds a run of ours under autocast and counts
its rows equal to float32.

Run: ``.venv/bin/python bench/dcs_decoding.py [--model coca_ViT-B-32] [--masks 5] [--steps 20] [--threads 1]``
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ris.open_clip_models import OpenCLIPModel, create_open_clip
from ris.pseudo.captioner import CoCaCaptioner, DecodingSettings
from ris.pseudo.coca_decoder import CoCaRows, StepWork
from ris.pseudo.reference import official_distinctive_sampling

log = logging.getLogger("dcs_decoding")


@dataclass
class Floor:
    """Matrix products of the cached computation, by shape ``(m, k, n)`` → multiply-adds' count of calls."""

    calls: dict[tuple[int, int, int], int] = field(default_factory=dict)
    attention: list[tuple[int, int]] = field(default_factory=list)  # (multiply-adds, m of the step's MLP product)

    def gemm(self, m: int, k: int, n: int, times: int = 1) -> None:
        if m:
            self.calls[(m, k, n)] = self.calls.get((m, k, n), 0) + times

    def flops(self) -> float:
        return 2.0 * (sum(m * k * n * c for (m, k, n), c in self.calls.items()) + sum(a for a, _ in self.attention))


class Architecture:
    """The shapes of a CoCa's text tower and multimodal decoder."""

    def __init__(self, built: OpenCLIPModel) -> None:
        model = built.model
        self.text_width = model.text.width
        self.text_layers = len(model.text.transformer.resblocks)
        self.text_mlp = model.text.transformer.resblocks[0].mlp.c_fc.out_features
        self.width = model.text_decoder.width
        self.layers = len(model.text_decoder.resblocks)
        self.mlp = model.text_decoder.resblocks[0].mlp.c_fc.out_features
        self.vocab = model.text_decoder.text_projection.shape[1]
        self.image_tokens = model.visual.attn_pool.query.shape[0] - 1 if hasattr(model.visual, "attn_pool") else 255

    def block(self, floor: Floor, m: int, width: int, mlp: int, keys: int, self_attention: bool) -> None:
        """One residual block for ``m`` states: in-projection(s), attention over ``keys``, out-projection, MLP."""
        floor.gemm(m, width, 3 * width if self_attention else width)
        floor.gemm(m, width, width)
        floor.gemm(m, width, mlp)
        floor.gemm(m, mlp, width)
        floor.attention.append((2 * m * keys * width, m))

    def step(self, floor: Floor, work: StepWork, vocab_rows: int) -> None:
        """The products of one decoding step (``vocab_rows`` = targets + top-p rows' contrast)."""
        for _ in range(self.text_layers):
            self.block(floor, work.nodes, self.text_width, self.text_mlp, work.length, True)
        self.block(floor, work.nodes, self.width, self.mlp, work.length, True)
        for layer in range(self.layers):
            if layer:
                self.block(floor, work.pairs, self.width, self.mlp, work.length, True)
            self.block(floor, work.pairs, self.width, self.mlp, self.image_tokens, False)
        floor.gemm(vocab_rows, self.width, self.vocab)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_floor(floor: Floor, dtype: torch.dtype, device: torch.device) -> tuple[float, float]:
    """Seconds the products of ``floor`` take on this machine, wall-clock and CPU time (best of 5 calls per shape;
    on a loaded machine the CPU time is the meaningful one)."""
    wall: dict[tuple[int, int, int], float] = {}
    cpu: dict[tuple[int, int, int], float] = {}
    for m, k, n in sorted(floor.calls):
        x, w = torch.randn(m, k, dtype=dtype, device=device), torch.randn(n, k, dtype=dtype, device=device)
        wall[(m, k, n)] = cpu[(m, k, n)] = float("inf")
        for _ in range(5):
            synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            F.linear(x, w)
            synchronize(device)
            wall[(m, k, n)] = min(wall[(m, k, n)], time.perf_counter() - start)
            cpu[(m, k, n)] = min(cpu[(m, k, n)], time.process_time() - start_cpu)

    def total(per_shape: dict[tuple[int, int, int], float]) -> float:
        seconds = sum(per_shape[s] * c for s, c in floor.calls.items())
        rates = {s[0]: per_shape[s] / (s[0] * s[1] * s[2]) for s in per_shape if s[1] < s[2]}
        for macs, m in floor.attention:  # at the rate of the step's widest product of the same m
            seconds += macs * rates.get(m, min(rates.values()))
        return seconds

    return total(wall), total(cpu)


def recorded_rows(captioner: CoCaCaptioner) -> list[CoCaRows]:
    """Make ``captioner`` keep every :class:`CoCaRows` it starts (their ``work`` lists)."""
    started: list[CoCaRows] = []
    rows = captioner.decoder.rows

    def keep(*args, **kwargs):
        started.append(rows(*args, **kwargs))
        return started[-1]

    captioner.decoder.rows = keep
    return started


def sampling_floor(
    arch: Architecture, started: list[CoCaRows], tokens: torch.Tensor, masks: int, top_k: int, stops: tuple[int, ...]
) -> tuple[Floor, int, int, int]:
    """The floor of one sampling run, the (prefix, image) states computed, and the states one per (row, image)
    would be (all steps, and all but the first, which the previous code already shared)."""
    floor = Floor()
    ended = torch.zeros(tokens.shape[0], dtype=torch.bool)
    top_p_row = (torch.arange(tokens.shape[0]) // masks) % (tokens.shape[0] // masks) >= top_k
    computed = unshared = unshared_later = 0
    for rows in started:
        group = rows.images.shape[1]
        for step, work in enumerate(rows.work):
            arch.step(floor, work, work.rows + int((~ended & top_p_row).sum()))
            computed += work.pairs
            unshared += work.rows * group
            unshared_later += work.rows * group if step else work.pairs
            ended |= torch.isin(tokens[:, step + 1], torch.tensor(stops))
    return floor, computed, unshared, unshared_later


CPU_TIMES: list[float] = []  # process CPU seconds of every measured call, in order (robust on a loaded machine)


def measure(fn, repeats: int, device: torch.device) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        synchronize(device)
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
        CPU_TIMES.append(time.process_time() - cpu)
    return statistics.median(times), result


def build(model_name: str, dtype: torch.dtype) -> OpenCLIPModel:
    if model_name == "synthetic-coca":
        from ris.synthetic.zoo import synthetic_coca

        built = create_open_clip(synthetic_coca())
    else:
        built = create_open_clip(model_name)  # random init, including CoCa's vocabulary projection
    built.model.to(dtype)
    return built


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="coca_ViT-B-32")
    parser.add_argument("--masks", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--precision", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--repeats", type=int, default=2, help="A B rounds (medians are printed)")
    parser.add_argument("--skip-official", action="store_true", help="only ours, the floor and the beam search")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the official loop runs on the CPU only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    if device.type != "cpu" and not args.skip_official:
        parser.error("the official loop runs on the CPU only: add --skip-official")
    built = build(args.model, dtype)
    built.model.to(device)
    natural = args.model == "synthetic-coca"
    settings = DecodingSettings(beam=False) if natural else DecodingSettings(
        beam=False, seq_len=args.steps + 2, min_seq_len=args.steps + 1
    )
    captioner = CoCaCaptioner.from_model(built, settings)
    started = recorded_rows(captioner)
    crops = torch.randn(
        1, args.masks, 3, built.image_size, built.image_size, generator=torch.Generator().manual_seed(1)
    ).to(device, dtype)
    rows = (len(settings.top_k) + len(settings.top_p)) * args.masks
    uniforms = torch.rand((settings.seq_len, rows), generator=torch.Generator().manual_seed(args.seed))
    captioner.encode(crops)  # warm-up (first-call allocations), shared by both implementations
    log.info("load average before: %s", " ".join(f"{x:.2f}" for x in os.getloadavg()))

    def ours_run() -> torch.Tensor:
        started.clear()
        return captioner.sample_tokens(captioner.encode(crops), torch.Generator().manual_seed(args.seed))

    def official_run() -> torch.Tensor:
        return official_distinctive_sampling(built.model, crops[0], built.tokenizer, uniforms, settings)

    ours_times, official_times, ours_cpu, official_cpu, ours, reference = [], [], [], [], None, None
    for _ in range(args.repeats):
        t, ours = measure(ours_run, 1, device)
        ours_times.append(t)
        ours_cpu.append(CPU_TIMES[-1])
        if not args.skip_official:
            t, reference = measure(official_run, 1, device)
            official_times.append(t)
            official_cpu.append(CPU_TIMES[-1])
    encode_s, _ = measure(lambda: captioner.encode(crops), 3, device)
    encode_cpu = statistics.median(CPU_TIMES[-3:])
    arch = Architecture(built)
    tok = built.tokenizer
    floor, computed, unshared, unshared_later = sampling_floor(
        arch, started, ours, args.masks, len(settings.top_k), (tok.eot_id, tok.pad_id)
    )
    floor_s, floor_cpu = time_floor(floor, dtype, device)
    ours_s = statistics.median(ours_times)
    lengths = ((ours != tok.sot_id) & (ours != tok.eot_id) & (ours != tok.pad_id)).sum(dim=1)
    log.info(
        "model %s (%s), K=%d masks, %d settings, %s (%d rows, sampled tokens per row %d-%d), threads %d",
        args.model, args.dtype, args.masks, rows // args.masks,
        "natural lengths" if natural else f"{args.steps} steps", rows, int(lengths.min()), int(lengths.max()),
        args.threads,
    )
    log.info("ours: %s s (median %.2f s; of which encoding %.2f s)", " ".join(f"{t:.2f}" for t in ours_times),
             ours_s, encode_s)
    log.info(
        "(prefix, image) states computed: %d; one per (row, image): %d (%.1f%% saved); the same with the first step "
        "shared per image (the previous code): %d (%.1f%% saved)", computed, unshared,
        100 * (1 - computed / max(1, unshared)), unshared_later, 100 * (1 - computed / max(1, unshared_later)),
    )
    floor_ratio = (ours_s - encode_s) / floor_s
    floor_ratio_cpu = (statistics.median(ours_cpu) - encode_cpu) / floor_cpu
    log.info("floor (same products, this machine, best of 5 calls each): %.2f s wall, %.2f s CPU for %.1f GFLOP; "
             "ours / floor = %.2f wall-clock, %.2f CPU time (decoding only)", floor_s, floor_cpu, floor.flops() / 1e9,
             floor_ratio, floor_ratio_cpu)
    status = 0
    if not args.skip_official:
        official_s = statistics.median(official_times)
        equal = (ours == reference).all(dim=1)
        for row in (~equal).nonzero()[:, 0].tolist():
            step = int((ours[row] != reference[row]).nonzero()[0, 0])
            log.info("row %d differs from token %d on (%s rounding of two different computations)", row, step,
                     args.dtype)
        log.info("official loop: %s s (median %.2f s)", " ".join(f"{t:.2f}" for t in official_times), official_s)
        log.info("equal tokens: %d / %d rows", int(equal.sum()), rows)
        cpu_ratio = statistics.median(official_cpu) / statistics.median(ours_cpu)
        log.info("speed-up over the official loop: %.1fx wall-clock, %.1fx CPU time; ours / floor: %.2f wall-clock, "
                 "%.2f CPU time", official_s / ours_s, cpu_ratio, floor_ratio, floor_ratio_cpu)
        # float64 makes rounding differences negligible: every row must match
        status = 0 if bool(equal.all()) or args.dtype == "float32" else 1
    beam_report(built, args, dtype, crops, arch, device)
    if args.precision != "float32":
        low = CoCaCaptioner.from_model(built, settings, precision=args.precision)
        t, tokens = measure(
            lambda: low.sample_tokens(low.encode(crops), torch.Generator().manual_seed(args.seed)), 1, device
        )
        same = int((tokens == ours).all(dim=1).sum())
        same_tokens = float((tokens == ours).float().mean())
        log.info("%s autocast: %.2f s; rows equal to float32: %d / %d; tokens equal: %.1f%%", args.precision, t, same,
                 rows, 100 * same_tokens)
    log.info("load average after: %s", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return status


def beam_report(built: OpenCLIPModel, args: argparse.Namespace, dtype: torch.dtype, crops: torch.Tensor,
                arch: Architecture, device: torch.device) -> None:
    """Ours vs the floor for the beam-search caption of the K crops (``steps`` tokens, EOS blocked)."""
    settings = DecodingSettings(top_k=(), top_p=(), seq_len=args.steps + 2, min_seq_len=args.steps + 1)
    captioner = CoCaCaptioner.from_model(built, settings)
    started = recorded_rows(captioner)
    context = captioner.encode(crops)
    seconds, _ = measure(lambda: captioner.beam_tokens(context), 1, device)
    seconds_cpu = CPU_TIMES[-1]
    floor = Floor()
    for work in (w for rows in started for w in rows.work):
        arch.step(floor, work, work.rows)
    floor_s, floor_cpu = time_floor(floor, dtype, device)
    log.info("beam search (width %d, %d steps): ours %.2f s wall / %.2f s CPU, floor %.2f s / %.2f s for %.1f GFLOP; "
             "ours / floor = %.2f wall-clock, %.2f CPU time", settings.num_beams, args.steps, seconds, seconds_cpu,
             floor_s, floor_cpu, floor.flops() / 1e9, seconds / floor_s, seconds_cpu / floor_cpu)


if __name__ == "__main__":
    sys.exit(main())
