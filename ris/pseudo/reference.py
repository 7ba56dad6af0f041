"""The official distinctive caption sampler (Eq. 2, docs/method.md §4.4), re-implemented as a reference: the test oracle
of our cached decoder and the baseline of ``bench/dcs_decoding.py``.

This is our own faithful re-implementation of the official loop (docs/method.md §4.4, §8.1), not the official code: it
re-runs the whole prefix through the unimodal tower and the multimodal decoder at every step, emits logits for all
positions, recomputes the cross-attention keys/values of the image tokens for every row, and decodes every active
row once more per other mask (K − 1 extra decoder rows, with the image tokens repeated), through open_clip's own
``text`` and ``text_decoder`` modules, with the official per-setting top-k / top-p warper loops.

One deliberate difference: tokens are drawn with the same inverse-CDF sampler and pre-drawn uniforms as ours
(:func:`ris.pseudo.sampling.sample_from_probs`; the official code calls ``torch.multinomial``), so that the two
implementations can be compared token for token. Like open_clip's loop, it still runs the model for the step whose
token is forced to EOS by ``seq_len`` and discards the result.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ris.pseudo.captioner import DecodingSettings
from ris.pseudo.sampling import sample_from_probs
from ris.tokenizer import Tokenizer


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
