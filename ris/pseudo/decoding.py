"""Decoding loops over any next-token model: multi-setting (distinctive) sampling and width-B beam search.

The loops talk to a :class:`StepModel`, which holds R rows (partial captions) and advances them one token at a time;
:class:`ris.pseudo.coca_decoder.CoCaRows` is the cached CoCa implementation, tests plug in hand-made tables.

Sampling (docs/method.md §4.4): every row has its own top-k or top-p setting; EOS is blocked while the prefix (SOT
included) is shorter than ``min_seq_len``; a row ends at EOS or PAD; EOS is forced as the ``seq_len``-th token.
Draws use pre-drawn uniforms ``(seq_len, R)`` (row r at prefix length n uses ``uniforms[n, r]``), so a row's caption
depends only on its own uniforms, not on how rows are batched or chunked.

Beam search (docs/method.md §4.3): the official group beam search (3 identical groups of 2 beams) equals a plain beam
search of width ``num_beams``; this reproduces the arithmetic of open_clip's loop with HF ``BeamSearchScorer``:

- candidate score = running sum of **raw logits** (no log-softmax) + the min-length-processed logit; the running
  sums start at 0 for beam 0 and −1e9 for the others; the top ``2·num_beams`` candidates of an item are taken;
- a candidate ending in EOS among the first ``num_beams`` ranks becomes a finished hypothesis with score
  ``sum / (n + a)``, n = the prefix length without EOS, SOT included; the pool keeps the ``num_beams`` best;
- an item is done when its pool is full and its worst kept score is ≥ (best candidate sum) / (n + b); done items
  stop decoding;
- at ``seq_len`` tokens the open beams of unfinished items join the pool with score ``sum / seq_len``; the caption is
  the best-scoring hypothesis (the last added among equal scores).

The offsets (a, b) depend on the transformers version the beam scorer came from (:data:`BEAM_SCORERS`, read from
the transformers sources of each release and checked against the releases' own ``BeamSearchScorer``, docs/method.md
§4.3):

- ``"4.31"`` (transformers 4.29–4.35; 4.31 is the official README's pin, the default): a = 0, b = 1 —
  ``process`` passes ``cur_len = n + 1`` to ``is_done`` while ``BeamHypotheses.add`` divides by the hypothesis
  length n. 4.27–4.28 compute the same for the first image of a batch, but add 1 more to the "done" divisor for
  every earlier image of the batch that is not done yet (not reproduced);
- ``"<=4.26"``: a = 0, b = 0 (``is_done`` got ``cur_len = n``); the official vendored open_clip 2.13 reads the
  scorer's pools with the ≤ 4.30 layout, so it ran with this rule or with 4.27–4.30's;
- ``">=4.36"`` (what open_clip ≥ 3 computes with a current transformers): a = 1, b = 1 — ``add`` divides by
  ``generated_len = cur_len − decoder_prompt_len = n + 1`` (open_clip passes no prompt length).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from ris.pseudo.sampling import (
    candidate_probs,
    contrasted_probs,
    sample_from_probs,
    top_k_mask,
    top_k_remove,
    top_p_mask,
    top_p_remove,
)
from ris.tokenizer import Tokenizer

BEAM_INIT = -1e9
BEAM_SCORERS: dict[str, tuple[int, int]] = {"<=4.26": (0, 0), "4.31": (0, 1), ">=4.36": (1, 1)}
"""transformers version of the beam scorer → offsets (a, b) of the hypothesis and "done" divisors (module doc)."""


@dataclass
class StepScores:
    """One step's scores of R rows as final hidden states, projected onto the vocabulary only where needed.

    The target logits are ``hidden @ projection`` and the summed contrast term is ``contrast @ projection``: the
    contrast is linear in the final hidden states (docs/method.md §8.2). Top-p rows need the contrast over the whole
    vocabulary (projected together with the target logits, in one product); a top-k row needs it only at its few
    kept tokens (:meth:`contrast_at`).

    Attributes:
        hidden: ``(R, D)`` the targets' final hidden states.
        projection: ``(D, V)`` the vocabulary projection.
        contrast: ``(R, D)`` contrast-weighted sum of the other images' final hidden states, or None.
    """

    hidden: Tensor
    projection: Tensor
    contrast: Tensor | None = None

    def project(self, contrast_rows: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The target logits ``(R, V)`` and the contrast term ``(n, V)`` of the rows ``contrast_rows`` ``(n,)``
        (None without contrast or rows)."""
        if self.contrast is None or contrast_rows is None:
            return self.hidden @ self.projection, None
        both = torch.cat([self.hidden, self.contrast[contrast_rows]]) @ self.projection
        rows = self.hidden.shape[0]
        return both[:rows], both[rows:]

    def contrast_at(self, rows: Tensor, tokens: Tensor) -> Tensor:
        """The contrast term of the rows ``rows`` ``(n,)`` at the token ids ``tokens`` ``(n, m)``: ``(n, m)``."""
        if self.contrast is None:
            raise ValueError("these scores have no contrast term")
        columns = self.projection.T[tokens]
        return torch.einsum("nd,nmd->nm", self.contrast[rows], columns)


class StepModel(Protocol):
    """R partial captions that advance one token at a time, on ``device``."""

    device: torch.device

    def advance(self, tokens: Tensor, share: bool = True) -> StepScores:
        """Append ``tokens`` ``(R,)`` (the newest token of every row) and score the next position; ``share`` allows
        merging equal states (and host synchronisation), ``False`` asks for static shapes."""
        ...

    def select(self, rows: Tensor) -> None:
        """Keep the rows ``rows`` ``(R',)`` (indices into the current rows, repeats allowed), in that order."""
        ...


def block_eos(logits: Tensor, prefix_len: int, min_seq_len: int, eos_id: int) -> Tensor:
    """HF ``MinLengthLogitsProcessor``: EOS gets ``-inf`` while ``prefix_len < min_seq_len`` (in place)."""
    if prefix_len < min_seq_len:
        logits[:, eos_id] = float("-inf")
    return logits


def sample_step(
    logits: Tensor,
    scores: StepScores,
    top_p_contrast: Tensor | None,
    top_k: Tensor,
    top_p: Tensor,
    uniforms: Tensor,
    eos_id: int,
    temperature: float = 1.0,
) -> Tensor:
    """Draw the next token of every row (docs/method.md §4.4 steps 3–7) from its filtered, contrasted distribution.

    Rows with ``top_k > 0`` are top-k rows, the others top-p rows with ``top_p``. A top-k row is sampled on its kept
    tokens only (in vocabulary order, so the inverse-CDF draw is the same as over the whole vocabulary) and its
    contrast is projected onto those tokens alone; a top-p row uses the whole vocabulary.

    Args:
        logits: ``(R, V)`` raw target logits after the minimum-length rule.
        scores: the step's scores (for the top-k rows' contrast; ``scores.contrast`` None = no contrast).
        top_p_contrast: ``(n, V)`` the contrast term of the n top-p rows, in row order (None without contrast).
        top_k: ``(R,)`` long; top_p: ``(R,)`` float; uniforms: ``(R,)`` draws from U[0, 1).
        eos_id: the EOS token id.
        temperature: sampling temperature.

    Returns:
        ``(R,)`` long token ids.
    """
    token = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    by_k = top_k > 0
    rows = by_k.nonzero()[:, 0]
    if rows.numel():
        kept = ~top_k_mask(logits[rows], top_k[rows])
        counts = kept.sum(dim=1)
        row, column = kept.nonzero(as_tuple=True)
        slot = torch.arange(row.numel(), device=logits.device) - (counts.cumsum(0) - counts)[row]
        tokens = torch.zeros((rows.numel(), int(counts.max())), dtype=torch.long, device=logits.device)
        tokens[row, slot] = column
        remove = torch.arange(tokens.shape[1], device=logits.device) >= counts[:, None]
        term = None if scores.contrast is None else scores.contrast_at(rows, tokens)
        probs = candidate_probs(logits[rows].gather(1, tokens), term, remove, (tokens == eos_id) & ~remove, temperature)
        token[rows] = tokens.gather(1, sample_from_probs(probs, uniforms[rows])[:, None])[:, 0]
    rows = (~by_k).nonzero()[:, 0]
    if rows.numel():
        remove = top_p_mask(logits[rows], top_p[rows])
        probs = contrasted_probs(logits[rows], top_p_contrast, remove, eos_id, temperature)
        token[rows] = sample_from_probs(probs, uniforms[rows])
    return token


def dense_sample_step(
    logits: Tensor,
    scores: StepScores,
    k_rows: Tensor,
    p_rows: Tensor,
    k_max: int,
    top_k: Tensor,
    top_p: Tensor,
    uniforms: Tensor,
    eos_id: int,
    temperature: float = 1.0,
) -> Tensor:
    """:func:`sample_step` over the whole vocabulary for every row, without host synchronisation.

    The top-k rows ``k_rows`` and top-p rows ``p_rows`` (index tensors) and ``k_max`` (≥ every k) are known on the
    host; top-p uses a full sort. Same distribution as :func:`sample_step` (which projects a top-k row's contrast
    onto its kept tokens only and locates the top-p boundary by buckets): the same tokens in exact arithmetic.
    """
    remove = torch.empty(logits.shape, dtype=torch.bool, device=logits.device)
    if k_rows.numel():
        remove[k_rows] = top_k_remove(logits[k_rows], top_k[k_rows], k_max)
    if p_rows.numel():
        remove[p_rows] = top_p_remove(logits[p_rows], top_p[p_rows])
    contrast = None if scores.contrast is None else scores.contrast @ scores.projection
    probs = contrasted_probs(logits, contrast, remove, eos_id, temperature)
    return sample_from_probs(probs, uniforms)


def sample_tokens(
    model: StepModel,
    tokenizer: Tokenizer,
    top_k: Tensor,
    top_p: Tensor,
    uniforms: Tensor,
    seq_len: int = 30,
    min_seq_len: int = 5,
    temperature: float = 1.0,
    sync_every: int = 1,
) -> Tensor:
    """Sample one caption per row (docs/method.md §4.4 steps 1–7).

    With ``sync_every = 1`` (the CPU default) every step drops the finished rows, merges equal states
    (:class:`ris.pseudo.coca_decoder.CoCaRows`) and samples top-k rows on their kept tokens. With ``sync_every = N
    > 1`` (for GPUs) only every N-th step does that bookkeeping, which reads from the device; the steps between keep
    the rows in place (finished rows are fed on and their draws discarded), do not share states and sample over the
    whole vocabulary (:func:`dense_sample_step`): no host synchronisation. The tokens are the same either way (in
    exact arithmetic; float rounding of the different products can differ).

    Args:
        model: the R rows, freshly started (nothing appended yet).
        tokenizer: gives the SOT / EOS / PAD ids.
        top_k: ``(R,)`` long, the row's k, or 0 for a top-p row.
        top_p: ``(R,)`` float, the row's p (used where ``top_k == 0``).
        uniforms: ``(seq_len, R)`` draws from U[0, 1); row r uses ``uniforms[n, r]`` for its n-th token.
        seq_len: maximum caption length in tokens, SOT and EOS included.
        min_seq_len: EOS is blocked while the prefix is shorter than this.
        temperature: sampling temperature.
        sync_every: steps between the bookkeeping steps that synchronise with the device.

    Returns:
        ``(R, seq_len)`` long ids: SOT, content, then EOS (or the PAD that ended the row), then PAD.
    """
    if sync_every < 1:
        raise ValueError(f"sync_every must be >= 1, got {sync_every}")
    rows = top_k.shape[0]
    device = model.device
    k_max = int(top_k.max()) if rows else 0
    top_k, top_p, uniforms = top_k.to(device), top_p.to(device), uniforms.to(device)
    eos, pad = tokenizer.eot_id, tokenizer.pad_id
    out = torch.full((rows, seq_len), pad, dtype=torch.long, device=device)
    out[:, 0] = tokenizer.sot_id
    alive = torch.arange(rows, device=device)  # the model's rows, as rows of ``out``
    running = torch.ones(rows, dtype=torch.bool, device=device)
    last = out[:, 0]
    k_rows = p_rows = alive
    for prefix_len in range(1, seq_len):
        if prefix_len + 1 == seq_len:
            out[alive, prefix_len] = torch.where(running, eos, pad)
            break
        check = (prefix_len - 1) % sync_every == 0
        if check:
            if prefix_len > 1 and not bool(running.all()):
                keep = running.nonzero()[:, 0]
                if keep.numel() == 0:
                    break
                alive, running, last = alive[keep], running[keep], last[keep]
                model.select(keep)
            by_k = top_k[alive] > 0
            k_rows, p_rows = by_k.nonzero()[:, 0], (~by_k).nonzero()[:, 0]
        scores = model.advance(last, share=check)
        row_k, row_p, draws = top_k[alive], top_p[alive], uniforms[prefix_len, alive]
        if sync_every == 1:
            logits, top_p_contrast = scores.project(p_rows)
            block_eos(logits, prefix_len, min_seq_len, eos)
            token = sample_step(logits, scores, top_p_contrast, row_k, row_p, draws, eos, temperature)
        else:
            logits, _ = scores.project()
            block_eos(logits, prefix_len, min_seq_len, eos)
            token = dense_sample_step(logits, scores, k_rows, p_rows, k_max, row_k, row_p, draws, eos, temperature)
        token = torch.where(running, token, pad)
        out[alive, prefix_len] = token
        running = running & (token != eos) & (token != pad)
        last = token
    return out


@dataclass
class _Hypotheses:
    """HF ``BeamHypotheses`` (length_penalty 1, early_stopping False): the best finished captions of one item."""

    size: int
    beams: list[tuple[float, list[int]]] = field(default_factory=list)
    worst: float = 1e9

    def add(self, tokens: list[int], score: float) -> None:
        if len(self.beams) < self.size or score > self.worst:
            self.beams.append((score, tokens))
            if len(self.beams) > self.size:
                ranked = sorted((s, i) for i, (s, _) in enumerate(self.beams))
                del self.beams[ranked[0][1]]
                self.worst = ranked[1][0]
            else:
                self.worst = min(score, self.worst)

    def is_done(self, best_sum: float, length: int) -> bool:
        return len(self.beams) >= self.size and self.worst >= best_sum / length

    def best(self) -> list[int]:
        """The best-scoring caption; among equal scores the last added (HF sorts stably and pops the last)."""
        best = self.beams[0]
        for beam in self.beams[1:]:
            if beam[0] >= best[0]:
                best = beam
        return best[1]


def beam_search(
    model: StepModel,
    tokenizer: Tokenizer,
    items: int,
    num_beams: int = 2,
    seq_len: int = 30,
    min_seq_len: int = 5,
    scorer: str = "4.31",
) -> list[list[int]]:
    """Width-``num_beams`` beam search on raw-logit sums (module docstring has the exact arithmetic).

    Args:
        model: ``items · num_beams`` freshly started rows, row ``i · num_beams + b`` = beam b of item i.
        tokenizer: gives the SOT / EOS ids.
        items: number of images.
        num_beams: beam width.
        seq_len: maximum length in tokens, SOT included.
        min_seq_len: EOS is blocked while the prefix is shorter than this.
        scorer: the transformers version whose length divisors are used (:data:`BEAM_SCORERS`).

    Returns:
        per item, the best caption's ids: SOT and content, without EOS.
    """
    if scorer not in BEAM_SCORERS:
        raise ValueError(f"beam scorer must be one of {list(BEAM_SCORERS)}, got {scorer!r}")
    hyp_offset, done_offset = BEAM_SCORERS[scorer]
    eos = tokenizer.eot_id
    pools = [_Hypotheses(num_beams) for _ in range(items)]
    alive = list(range(items))
    seqs = [[[tokenizer.sot_id]] * num_beams for _ in range(items)]
    sums = torch.full((items, num_beams), BEAM_INIT, dtype=torch.float64)
    sums[:, 0] = 0.0
    last = torch.full((items * num_beams,), tokenizer.sot_id, dtype=torch.long)
    for prefix_len in range(1, seq_len):
        logits, _ = model.advance(last.to(model.device)).project()
        block_eos(logits, prefix_len, min_seq_len, eos)
        vocab = logits.shape[1]
        running = sums[alive].to(logits.dtype).reshape(-1, 1).to(logits.device)
        scores = (logits + running).reshape(len(alive), num_beams * vocab)
        top, index = scores.topk(2 * num_beams, dim=1, largest=True, sorted=True)
        top, index = top.cpu().tolist(), index.cpu().tolist()
        parents: list[int] = []
        tokens: list[int] = []
        still: list[int] = []
        for slot, item in enumerate(alive):
            chosen = 0
            new_seqs, new_sums = [], []
            for rank, (score, flat) in enumerate(zip(top[slot], index[slot])):
                beam, token = divmod(flat, vocab)
                if token == eos:
                    if rank < num_beams:
                        pools[item].add(seqs[item][beam], score / (prefix_len + hyp_offset))
                    continue
                new_seqs.append([*seqs[item][beam], token])
                new_sums.append(score)
                parents.append(slot * num_beams + beam)
                tokens.append(token)
                chosen += 1
                if chosen == num_beams:
                    break
            seqs[item] = new_seqs
            sums[item] = torch.tensor(new_sums, dtype=torch.float64)
            if not pools[item].is_done(top[slot][0], prefix_len + done_offset):
                still.append(slot)
        if prefix_len + 1 == seq_len or not still:
            for slot in still:
                item = alive[slot]
                for beam in range(num_beams):
                    pools[item].add(seqs[item][beam], float(sums[item, beam]) / seq_len)
            break
        keep = [slot * num_beams + beam for slot in still for beam in range(num_beams)]
        parent_rows = torch.tensor(parents, dtype=torch.long).view(len(alive), num_beams)[still].reshape(-1)
        last = torch.tensor(tokens, dtype=torch.long)[keep]
        alive = [alive[slot] for slot in still]
        model.select(parent_rows.to(model.device))
    return [pool.best() for pool in pools]
