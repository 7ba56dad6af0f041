"""Pure functions of distinctive caption sampling (docs/method.md §4.4–§4.5): token filters and the sampling
distribution.

All functions work on a batch of R rows over a vocabulary of V tokens and take per-row parameters, so that every
sampler setting of an image (5 top-k and 5 top-p values by default) runs in one batch.

- :func:`top_k_mask` / :func:`top_p_mask`: which tokens a setting removes (True = removed), with the semantics of
  HF ``TopKLogitsWarper`` / ``TopPLogitsWarper``.
- :func:`contrast_weights`: the weights ``w_rj`` of the other masks' logits in the contrast term
  ``c_r = Σ_j w_rj · ℓ_rj`` (``"mean"``: ``S_ij / (K − 1)``, the official sampler; ``"weighted"``:
  ``λ · softmax_j(S_ij)``, the vendored ``distinctive_generate``; ``"none"``: no contrast).
- :func:`contrasted_probs`: the sampling distribution from the target logits and an already-summed contrast term
  (the captioner folds the sum before the vocabulary projection); :func:`candidate_probs`: the same over a subset
  of candidate tokens.
- :func:`distinctive_probs`: the same from the other masks' logits and similarities (the reference form of Eq. 2).
- :func:`sample_from_probs`: inverse-CDF sampling with pre-drawn uniforms.
"""

from __future__ import annotations

import torch
from torch import Tensor

CONTRAST_MODES = ("mean", "weighted", "none")


def _per_row(value: float | Tensor, rows: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``value`` as a ``(rows,)`` tensor (a scalar is broadcast)."""
    out = torch.as_tensor(value, dtype=dtype, device=device)
    if out.dim() == 0:
        return out.expand(rows)
    if out.shape != (rows,):
        raise ValueError(f"per-row parameter must be a scalar or have shape ({rows},), got {tuple(out.shape)}")
    return out


def top_k_mask(logits: Tensor, k: int | Tensor) -> Tensor:
    """Tokens removed by top-k filtering (HF ``TopKLogitsWarper``).

    Args:
        logits: ``(R, V)`` scores (``-inf`` allowed, e.g. EOS blocked by the minimum length).
        k: a positive int or a ``(R,)`` long tensor of per-row values; values above V keep everything.

    Returns:
        ``(R, V)`` bool, True where the score is below the k-th largest score of its row (ties with the k-th score
        are kept, so more than k tokens can survive).
    """
    rows, vocab = logits.shape
    ks = _per_row(k, rows, torch.long, logits.device)
    if bool((ks < 1).any()):
        raise ValueError(f"top_k must be >= 1, got {ks.tolist()}")
    return top_k_remove(logits, ks, int(ks.max()))


def top_k_remove(logits: Tensor, ks: Tensor, k_max: int) -> Tensor:
    """:func:`top_k_mask` without checks or host synchronisation: ``ks`` ``(R,)`` long >= 1, ``k_max >= ks.max()``
    known on the host."""
    vocab = logits.shape[1]
    ks = ks.clamp(max=vocab)
    ordered = logits.topk(min(k_max, vocab), dim=-1).values
    kth = ordered.gather(1, (ks - 1)[:, None])
    return logits < kth


# top-p buckets: probabilities grouped by the leading bits of their float32 pattern (monotone for values >= 0)
_BUCKET_SHIFT = 18
_BUCKETS = (0x3F800000 >> _BUCKET_SHIFT) + 1  # the bucket of 1.0 is the last


def top_p_mask(logits: Tensor, p: float | Tensor) -> Tensor:
    """Tokens removed by nucleus filtering (HF ``TopPLogitsWarper``, ``min_tokens_to_keep=1``).

    Sort ascending, take the cumulative softmax and remove the tokens whose cumulative probability is ``<= 1 − p``;
    the top token is always kept. Equivalently: keep the smallest top set whose mass is ``>= p``. With ``p = 1`` only
    zero-probability tokens (``-inf`` scores) are removed.

    Vocabularies larger than the bucket count (CLIP's 49,408 BPE tokens) avoid the full sort: the probabilities are
    summed per bucket of their leading float bits (buckets are ordered like the values), the cumulative bucket
    masses locate the bucket holding the boundary, and only that bucket's tokens are sorted. Cumulative sums run in
    float64 and are rounded to the logits' dtype before the comparison, as torch's CPU ``cumsum`` does, so the result
    equals the sorting implementation up to the summation order of float64 sums. Small vocabularies are sorted.

    Args:
        logits: ``(R, V)`` scores.
        p: a float in [0, 1] or a ``(R,)`` tensor of per-row values.

    Returns:
        ``(R, V)`` bool, True = removed.
    """
    rows, _ = logits.shape
    ps = _per_row(p, rows, torch.float64, logits.device)
    if bool(((ps < 0) | (ps > 1)).any()):
        raise ValueError(f"top_p must be in [0, 1], got {ps.tolist()}")
    threshold = (1 - ps).to(logits.dtype)[:, None]
    if logits.shape[1] <= _BUCKETS:
        return top_p_remove(logits, ps)
    probs = logits.softmax(dim=-1)
    bucket = (probs.float().view(torch.int32) >> _BUCKET_SHIFT).long().clamp_(0, _BUCKETS - 1)  # NaN: last
    mass = torch.zeros((rows, _BUCKETS), dtype=torch.float64, device=logits.device)
    below = mass.scatter_add_(1, bucket, probs.double()).cumsum(dim=1)  # mass of the buckets <= b
    over = below.to(logits.dtype) > threshold
    boundary = torch.where(over.any(dim=1), over.int().argmax(dim=1), _BUCKETS)[:, None]
    base = below.gather(1, (boundary - 1).clamp(0, _BUCKETS - 1)).where(boundary > 0, 0.0)
    remove = bucket < boundary
    in_boundary = bucket == boundary
    count = in_boundary.sum(dim=1, keepdim=True)
    width = int(count.max())
    if width:
        values, index = probs.masked_fill(~in_boundary, float("inf")).topk(width, dim=1, largest=False)
        cumulative = (base + values.double().cumsum(dim=1)).to(logits.dtype)
        valid = torch.arange(width, device=logits.device) < count
        row = torch.arange(rows, device=logits.device)[:, None].expand_as(index)
        remove[row[valid], index[valid]] = (cumulative <= threshold)[valid]
    emptied = remove.all(dim=1).nonzero()[:, 0]  # the top token is always kept
    remove[emptied, probs[emptied].argmax(dim=1)] = False
    return remove


def top_p_remove(logits: Tensor, ps: Tensor) -> Tensor:
    """:func:`top_p_mask` by a full sort, without checks or host synchronisation (``ps`` ``(R,)`` in [0, 1])."""
    threshold = (1 - ps).to(logits.dtype)[:, None]
    ordered, order = logits.sort(dim=-1)
    remove_sorted = ordered.softmax(dim=-1).cumsum(dim=-1) <= threshold
    remove_sorted[:, -1] = False
    return remove_sorted.scatter(1, order, remove_sorted)


def contrast_weights(similarity: Tensor, mode: str = "mean", weighted_lambda: float = 0.01) -> Tensor:
    """Weights of the other masks' logits in the contrast term.

    Args:
        similarity: ``(R, M)`` cosine similarities ``S_ij`` of each row's target mask i to its M other masks j.
        mode: ``"mean"`` → ``S_ij / M`` (docs/method.md §4.4: the mean over the K − 1 others of similarity-weighted
            logits); ``"weighted"`` → ``λ · softmax_j(S_ij)`` (§4.5); ``"none"`` → zeros.
        weighted_lambda: λ of the weighted mode.

    Returns:
        ``(R, M)`` weights ``w_rj`` with ``c_r = Σ_j w_rj · ℓ_rj``.
    """
    if mode not in CONTRAST_MODES:
        raise ValueError(f"contrast mode must be one of {CONTRAST_MODES}, got {mode!r}")
    if mode == "none" or similarity.shape[1] == 0:
        return torch.zeros_like(similarity)
    if mode == "mean":
        return similarity / similarity.shape[1]
    return weighted_lambda * similarity.softmax(dim=1)


def contrasted_probs(
    target_logits: Tensor, contrast: Tensor | None, remove: Tensor, eos_id: int, temperature: float = 1.0
) -> Tensor:
    """The sampling distribution of distinctive caption sampling, given the summed contrast term.

    With ``f = target_logits`` set to ``-inf`` on ``remove``, ``q = softmax(f / T)`` (the target-only distribution)
    and ``p = softmax((f − contrast) / T)`` (removed tokens stay at ``-inf``), the official sampler draws from
    ``p`` with ``p[EOS]`` replaced by ``q[EOS]`` and no renormalisation. This returns that vector normalised to sum
    1, i.e. ``P(EOS) = q[EOS] / (1 − p[EOS] + q[EOS])``: the same distribution under sampling. A row whose vector
    sums to 0 (``p`` concentrated on an EOS whose target probability underflowed) falls back to ``q``.

    Args:
        target_logits: ``(R, V)`` raw target logits after the minimum-length rule (EOS may be ``-inf``).
        contrast: ``(R, V)`` contrast term ``c_r`` or None (plain filtered sampling, ``p = q``).
        remove: ``(R, V)`` bool, tokens removed by top-k / top-p (True = removed).
        eos_id: the EOS token id.
        temperature: T.

    Returns:
        ``(R, V)`` probabilities, each row summing to 1; removed tokens have probability exactly 0.
    """
    eos = torch.zeros_like(remove)
    eos[:, eos_id] = True
    return candidate_probs(target_logits, contrast, remove, eos, temperature)


def candidate_probs(
    target_logits: Tensor, contrast: Tensor | None, remove: Tensor, eos: Tensor, temperature: float = 1.0
) -> Tensor:
    """:func:`contrasted_probs` over any ``(R, C)`` set of candidate columns, EOS marked per row by ``eos``.

    The decoding loop calls it with each top-k row's few kept tokens as the columns, so the contrast term is only
    projected for them; ``eos`` ``(R, C)`` bool is True at the EOS column (all False where EOS is no candidate).
    """
    filtered = target_logits.masked_fill(remove, float("-inf"))
    q = (filtered / temperature).softmax(dim=-1)
    if contrast is None:
        return q
    distinct = (filtered - contrast).masked_fill(remove, float("-inf"))
    p = (distinct / temperature).softmax(dim=-1).where(~eos, q)
    total = p.sum(dim=-1, keepdim=True)
    valid = torch.isfinite(total) & (total > 0)
    return torch.where(valid, p / total.where(valid, torch.ones_like(total)), q)


def distinctive_probs(
    target_logits: Tensor,
    other_logits: Tensor,
    similarity: Tensor,
    remove: Tensor,
    eos_id: int,
    temperature: float = 1.0,
    mode: str = "mean",
    weighted_lambda: float = 0.01,
) -> Tensor:
    """Distinctive caption sampling distribution (the paper's Eq. 2 as the official code runs it, docs/method.md §4.4).

    Args:
        target_logits: ``(R, V)`` raw logits of each row's target mask, after the minimum-length rule.
        other_logits: ``(R, M, V)`` raw logits of the same prefix decoded with each of the M other masks' image
            tokens (no minimum-length rule, no filtering). ``M = 0`` gives plain filtered sampling.
        similarity: ``(R, M)`` cosine similarities of the target mask to the other masks.
        remove: ``(R, V)`` bool, tokens removed by the row's top-k / top-p setting on the target logits.
        eos_id: the EOS token id.
        temperature: T.
        mode: ``"mean"`` (default, §4.4), ``"weighted"`` (§4.5) or ``"none"``.
        weighted_lambda: λ of the weighted mode.

    Returns:
        ``(R, V)`` probabilities summing to 1 per row (see :func:`contrasted_probs`).
    """
    if other_logits.shape[1] == 0 or mode == "none":
        return contrasted_probs(target_logits, None, remove, eos_id, temperature)
    weights = contrast_weights(similarity, mode, weighted_lambda).to(other_logits.dtype)
    contrast = torch.einsum("rm,rmv->rv", weights, other_logits)
    return contrasted_probs(target_logits, contrast, remove, eos_id, temperature)


def sample_from_probs(probs: Tensor, uniforms: Tensor) -> Tensor:
    """Draw one token per row by inverse-CDF sampling.

    Token v is drawn iff ``cdf[v − 1] <= u · cdf[V − 1] < cdf[v]`` (cumulative sums in float64), so tokens of
    probability 0 are never drawn and rows need not be normalised. (A draw that rounds up to the total takes the
    last token of positive probability.)

    Args:
        probs: ``(R, V)`` non-negative weights.
        uniforms: ``(R,)`` draws from U[0, 1).

    Returns:
        ``(R,)`` long token ids.
    """
    cdf = probs.to(torch.float64).cumsum(dim=-1)
    target = uniforms.to(torch.float64)[:, None] * cdf[:, -1:]
    token = torch.searchsorted(cdf, target, right=True)[:, 0]
    positions = torch.arange(probs.shape[1], device=probs.device)
    last_positive = torch.where(probs > 0, positions, 0).amax(dim=-1)
    return torch.minimum(token, last_positive)
