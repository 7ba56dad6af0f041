import math

import numpy as np
import pytest
import torch

from ris.pseudo.sampling import (
    contrast_weights,
    contrasted_probs,
    distinctive_probs,
    sample_from_probs,
    top_k_mask,
    top_p_mask,
)

NEG = float("-inf")


def _logits(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def _log_probs(*probs):
    return torch.tensor([[math.log(p) if p > 0 else NEG for p in probs]], dtype=torch.float64)


def test_top_k_keeps_ties_with_the_kth_score():
    remove = top_k_mask(_logits([3.0, 2.0, 2.0, 1.0, 0.0]), 2)
    assert remove.tolist() == [[False, False, False, True, True]]


def test_top_k_per_row_values_large_k_and_bad_k():
    logits = _logits([0.0, 5.0, 1.0, 3.0], [4.0, 3.0, 2.0, 1.0])
    remove = top_k_mask(logits, torch.tensor([1, 3]))
    assert remove.tolist() == [[True, False, True, True], [False, False, False, True]]
    assert not top_k_mask(logits, 100).any()
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        top_k_mask(logits, 0)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        top_k_mask(logits, torch.tensor([1, 2, 3]))


def test_top_k_with_eos_blocked_moves_the_cut_to_the_next_token():
    # EOS (index 1) would be second best; blocked at -inf, the 2 kept tokens are 0 and 2
    remove = top_k_mask(_logits([5.0, NEG, 4.0, 3.0]), 2)
    assert remove.tolist() == [[False, True, False, True]]
    # k larger than the finite tokens: nothing is marked, EOS keeps its -inf (probability 0)
    assert not top_k_mask(_logits([5.0, NEG, 4.0, 3.0]), 4).any()


def test_top_p_keeps_the_smallest_top_set_reaching_p():
    logits = _log_probs(0.5, 0.3, 0.15, 0.05)
    assert top_p_mask(logits, 0.6).tolist() == [[False, False, True, True]]  # 0.5 < 0.6 <= 0.8
    assert top_p_mask(logits, 0.3).tolist() == [[False, True, True, True]]  # the top token alone has 0.5
    assert top_p_mask(logits, 0.9).tolist() == [[False, False, False, True]]  # 0.8 < 0.9 <= 0.95
    assert top_p_mask(logits, 0.0).tolist() == [[False, True, True, True]]  # the top token is always kept


def test_top_p_reaching_one_removes_only_zero_probability_tokens():
    assert not top_p_mask(_log_probs(0.5, 0.3, 0.15, 0.05), 1.0).any()
    blocked = _log_probs(0.5, 0.0, 0.3, 0.2)  # index 1 = EOS blocked by the minimum length
    assert top_p_mask(blocked, 1.0).tolist() == [[False, True, False, False]]
    assert top_p_mask(blocked, 0.7).tolist() == [[False, True, False, True]]


def test_top_p_per_row_and_bad_p():
    logits = torch.cat([_log_probs(0.5, 0.3, 0.15, 0.05), _log_probs(0.05, 0.15, 0.3, 0.5)])
    remove = top_p_mask(logits, torch.tensor([0.6, 0.9]))
    assert remove.tolist() == [[False, False, True, True], [True, False, False, False]]
    with pytest.raises(ValueError, match=r"top_p must be in \[0, 1\]"):
        top_p_mask(logits, 1.5)


def _sorting_top_p(logits, p):
    """HF ``TopPLogitsWarper`` as written: full ascending sort and cumulative softmax."""
    ordered, order = logits.sort(dim=-1)
    cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative <= (1 - p).to(logits.dtype)[:, None]
    remove[:, -1] = False
    return remove.scatter(1, order, remove)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [0.1, 1.0, 4.0, 30.0])
def test_top_p_equals_the_sorting_warper_on_large_vocabularies(dtype, scale):
    gen = torch.Generator().manual_seed(int(scale * 10))
    logits = (torch.randn(12, 5000, generator=gen) * scale).to(dtype)  # more tokens than buckets: no full sort
    logits[:4, :50] = NEG  # blocked tokens
    logits[4:8] = logits[4:8].round()  # many ties
    p = torch.tensor([0.0, 0.1, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0, 0.3], dtype=torch.float64)
    expected = _sorting_top_p(logits, p)
    remove = top_p_mask(logits, p)
    kept_counts = (~remove).sum(dim=1)
    assert torch.equal(kept_counts, (~expected).sum(dim=1))
    # where values tie, which of the tied tokens at the boundary goes is the sort's arbitrary choice: compare values
    for row in range(12):
        assert torch.equal(logits[row][~remove[row]].sort().values, logits[row][~expected[row]].sort().values)


def test_contrast_weights_modes():
    sim = torch.tensor([[0.5, 0.25], [1.0, 0.0]], dtype=torch.float64)
    assert torch.equal(contrast_weights(sim, "mean"), sim / 2)
    weighted = contrast_weights(sim, "weighted", 0.1)
    expected = 0.1 * np.exp(sim.numpy()) / np.exp(sim.numpy()).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(weighted.numpy(), expected, rtol=1e-12)
    assert not contrast_weights(sim, "none").any()
    with pytest.raises(ValueError, match="contrast mode must be one of"):
        contrast_weights(sim, "max")


def _softmax(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x[np.isfinite(x)].max())
    return e / e.sum()


def _official_vector(target, others, sims, remove, eos, temperature=1.0, mode="mean", lam=0.01):
    """The official un-normalised sampling vector of one row (docs/method.md §4.4), in numpy."""
    f = np.where(remove, -np.inf, target)
    q = _softmax(f / temperature)
    if len(others) == 0:
        return q, q, q
    others, sims = np.asarray(others), np.asarray(sims)
    if mode == "mean":
        c = (sims[:, None] * others).sum(axis=0) / len(sims)
    else:
        w = np.exp(sims) / np.exp(sims).sum()
        c = lam * (w[:, None] * others).sum(axis=0)
    d = np.where(remove, -np.inf, f - c)
    p = _softmax(d / temperature)
    vector = p.copy()
    vector[eos] = q[eos]
    return vector, p, q


@pytest.mark.parametrize("mode", ["mean", "weighted"])
@pytest.mark.parametrize("m", [0, 1, 2])
def test_distinctive_probs_matches_the_official_vector(m, mode):
    gen = torch.Generator().manual_seed(m)
    eos, vocab = 2, 7
    target = torch.randn(1, vocab, generator=gen, dtype=torch.float64) * 2
    others = torch.randn(1, m, vocab, generator=gen, dtype=torch.float64) * 2
    sims = torch.tensor([[0.9, 0.4][:m]], dtype=torch.float64)
    remove = torch.zeros(1, vocab, dtype=torch.bool)
    remove[0, [0, 5]] = True
    remove[0, eos] = False
    out = distinctive_probs(target, others, sims, remove, eos, temperature=0.7, mode=mode, weighted_lambda=0.5)
    vector, p, q = _official_vector(
        target[0].numpy(), others[0].numpy(), sims[0].numpy(), remove[0].numpy(), eos, 0.7, mode, 0.5
    )
    np.testing.assert_allclose(out[0].numpy(), vector / vector.sum(), rtol=1e-12, atol=1e-15)
    assert out[0, eos].item() == pytest.approx(q[eos] / (1 - p[eos] + q[eos]), rel=1e-12)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert out[0, 0].item() == 0.0 and out[0, 5].item() == 0.0
    if m == 0:
        np.testing.assert_allclose(out[0].numpy(), q, rtol=1e-12)


def test_distinctive_probs_blocked_eos_and_removed_tokens_stay_zero():
    eos = 1
    target = _logits([2.0, NEG, 1.0, 0.5, -1.0], [0.0, 3.0, 1.0, 0.5, -1.0])
    others = torch.tensor([[[1.0, 9.0, -2.0, 0.0, 4.0]], [[0.0, -9.0, 0.0, 0.0, 0.0]]], dtype=torch.float64)
    sims = torch.tensor([[0.8], [0.8]], dtype=torch.float64)
    remove = top_k_mask(target, 3)
    out = distinctive_probs(target, others, sims, remove, eos)
    assert out[0, eos].item() == 0.0  # blocked EOS stays impossible whatever the contrast
    assert out[0, 4].item() == 0.0 and out[1, 4].item() == 0.0  # removed tokens stay at 0
    assert torch.allclose(out.sum(dim=1), torch.ones(2, dtype=torch.float64))
    # row 1: the contrast would push EOS up (other logit -9) but EOS keeps its target-only probability q[EOS]
    q = torch.softmax(target[1].masked_fill(remove[1], NEG), dim=0)
    p = torch.softmax((target[1] - 0.8 * others[1, 0]).masked_fill(remove[1], NEG), dim=0)
    assert out[1, eos].item() == pytest.approx((q[eos] / (1 - p[eos] + q[eos])).item(), rel=1e-12)


def test_contrasted_probs_falls_back_to_target_distribution_when_the_vector_vanishes():
    # EOS is kept by top-k but its target probability underflows to 0 while the contrast makes p[EOS] = 1:
    # the official vector is all zeros; the row falls back to q.
    eos = 1
    target = torch.tensor([[0.0, -200.0, -300.0]], dtype=torch.float32)
    contrast = torch.tensor([[1000.0, -1000.0, 0.0]], dtype=torch.float32)
    remove = torch.tensor([[False, False, True]])
    out = contrasted_probs(target, contrast, remove, eos)
    assert out.tolist() == [[1.0, 0.0, 0.0]]
    assert torch.isfinite(out).all()


def test_sample_from_probs_is_an_inverse_cdf():
    probs = torch.tensor([[0.2, 0.0, 0.5, 0.3]] * 6, dtype=torch.float64)
    u = torch.tensor([0.0, 0.19, 0.2, 0.69, 0.71, 0.999], dtype=torch.float64)
    assert sample_from_probs(probs, u).tolist() == [0, 0, 2, 2, 3, 3]
    assert sample_from_probs(probs * 7, u).tolist() == [0, 0, 2, 2, 3, 3]  # unnormalised rows
    # a draw that rounds up to the total takes the last token of positive probability, never a zero one
    assert sample_from_probs(torch.tensor([[0.5, 0.5, 0.0]]), torch.tensor([1.0])).tolist() == [1]


def test_sample_from_probs_frequencies():
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3]]).expand(40000, -1)
    u = torch.rand(40000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(sample_from_probs(probs, u), minlength=4).double() / 40000
    assert counts[1].item() == 0.0
    assert torch.allclose(counts, torch.tensor([0.1, 0.0, 0.6, 0.3], dtype=torch.float64), atol=0.01)
