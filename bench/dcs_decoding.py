"""Benchmark: our cached distinctive caption sampling vs a faithful re-implementation of the official loop.

The official sampler (method.md §4.4, §8.1) re-runs the whole prefix through the unimodal tower and the multimodal
decoder at every step, emits logits for all positions, recomputes the cross-attention keys/values of the image
tokens for every row, and decodes every active row once more per other mask (K − 1 extra decoder rows, with the
image tokens repeated). :func:`official_distinctive_sampling` does exactly that through open_clip's own ``text``
and ``text_decoder`` modules, with the official per-setting top-k / top-p warper loops. One deliberate difference:
tokens are drawn with the same inverse-CDF sampler and pre-drawn uniforms as ours (the official code calls
``torch.multinomial``), so that the two implementations can be compared token for token.

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
from torch import Tensor, nn

from ris.open_clip_models import create_open_clip
from ris.pseudo.captioner import CoCaCaptioner, DecodingSettings
from ris.pseudo.sampling import sample_from_probs
from ris.tokenizer import Tokenizer

log = logging.getLogger("dcs_decoding")


def _official_warp(logits: Tensor, setting: Tensor, top_k: Sequence[int], top_p: Sequence[float]) -> Tensor:
    """The official ``DependentTotalLogitsWarper``: one HF top-k / top-p warper per setting, rows by setting."""
    out = logits.clone()
    for index, value in enumerate([*top_k, *top_p]):
        rows = (setting == index).nonzero()[:, 0]
        if int(rows.numel()) == 0:
            continue
        scores = out[rows]
        if index < len(top_k):
            kth = torch.topk(scores, min(int(value), scores.shape[-1]))[0][..., -1, None]
            remove = scores < kth
        else:
            ordered, order = torch.sort(scores, descending=False)
            cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
            remove_sorted = cumulative <= (1 - value)
            remove_sorted[..., -1:] = False
            remove = remove_sorted.scatter(1, order, remove_sorted)
        out[rows] = scores.masked_fill(remove, float("-inf"))
    return out


@torch.inference_mode()
def official_distinctive_sampling(
    model: nn.Module,
    images: Tensor,
    tokenizer: Tokenizer,
    uniforms: Tensor,
    settings: DecodingSettings,
) -> Tensor:
    """The official sampler for the K crops of one crop type, un-cached.

    Args:
        model: an open_clip CoCa.
        images: ``(K, 3, S, S)`` crops.
        tokenizer: SOT / EOS / PAD ids.
        uniforms: ``(seq_len, settings · K)`` draws for the rows (setting-major: row = setting · K + mask).
        settings: top-k / top-p lists, lengths, temperature, contrast mode and bounds.

    Returns:
        ``(settings · K, seq_len)`` ids: SOT, content, EOS / PAD, then PAD.
    """
    s = settings
    sot, eos, pad = tokenizer.sot_id, tokenizer.eot_id, tokenizer.pad_id
    masks = images.shape[0]
    latent, image_embs = model._encode_image(images)
    similarity = latent @ latent.T
    count = len(s.top_k) + len(s.top_p)
    rows = count * masks
    target = torch.arange(rows) % masks
    setting = torch.arange(rows) // masks
    contrast = s.contrast != "none" and s.contrast_min_masks <= masks <= s.contrast_max_masks
    out = torch.full((rows, 1), sot, dtype=torch.long)
    while out.shape[1] < s.seq_len:
        cur_len = out.shape[1]
        active = ((out[:, -1] != eos) & (out[:, -1] != pad)).nonzero()[:, 0]
        if active.numel() == 0:
            break
        sample = torch.full((rows, 1), pad, dtype=torch.long)
        _, states = model._encode_text(out[active])
        logits = model.text_decoder(image_embs[target[active]], states)[:, -1]
        if cur_len < s.min_seq_len:
            logits[:, eos] = float("-inf")
        filtered = _official_warp(logits, setting[active], s.top_k, s.top_p)
        q = (filtered / s.temperature).softmax(dim=-1)
        probs = q
        if contrast:
            others = torch.stack([torch.cat([torch.arange(i), torch.arange(i + 1, masks)]) for i in target[active]])
            dep_image_embs = image_embs[others.reshape(-1)]
            dep_states = states.repeat_interleave(masks - 1, dim=0)
            other_logits = model.text_decoder(dep_image_embs, dep_states)[:, -1].view(len(active), masks - 1, -1)
            sims = similarity[target[active][:, None], others]
            if s.contrast == "mean":
                term = (sims[..., None] * other_logits).sum(dim=1) / (masks - 1)
            else:
                term = s.weighted_lambda * (sims.softmax(dim=1)[..., None] * other_logits).sum(dim=1)
            distinct = (filtered - term).masked_fill(filtered == float("-inf"), float("-inf"))
            probs = (distinct / s.temperature).softmax(dim=-1)
            probs[:, eos] = q[:, eos]
            if float(probs.sum()) <= 0:
                probs = q
        if cur_len + 1 == s.seq_len:  # the official loop computes this step, then forces EOS
            sample[active] = eos
        else:
            sample[active, 0] = sample_from_probs(probs, uniforms[cur_len, active])
        out = torch.cat([out, sample], dim=1)
    return torch.cat([out, torch.full((rows, s.seq_len - out.shape[1]), pad, dtype=torch.long)], dim=1)


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
