"""Generate ``tables.json``: width-2 beam-search captions of toy next-token models under each transformers rule.

An independent, deliberately plain implementation (Python floats and lists, one item at a time) of the beam
arithmetic of HF ``BeamSearchScorer`` as open_clip's loop uses it (docs/method.md §4.3), with the length divisors of
each transformers version, read from the transformers sources:

| rule | finished hypothesis: sum / … | "done" test: best sum / … | releases |
|---|---|---|---|
| ``<=4.26`` | n | n | ``BeamHypotheses.add`` divides by ``hyp.shape[-1]``; ``process`` passes ``cur_len = n`` |
| ``4.31`` | n | n + 1 | 4.29–4.35: ``process`` passes ``cur_len = input_ids.shape[-1] + 1`` |
| ``>=4.36`` | n + 1 | n + 1 | ``add(..., generated_len=cur_len - decoder_prompt_len)``, prompt length 0 |

4.27–4.28 compute the 4.31 rule for the first item of a batch only (their "done" divisor grows by one per
earlier item not yet done), so a one-item batch reproduces the ``4.31`` table.

n is the prefix length before the new token (SOT included, EOS excluded). Open beams at the maximum length join
the pool with sum / seq_len under every rule.

The toy model: logits of prefix p are drawn from ``random.Random(f"{case}:{p}")`` on a grid of 2**-14 in [-4, 4]
(sums are then exact in float32 and float64), with EOS raised as the prefix grows. Cases whose candidate ranking
has a tie are skipped, so the table does not depend on how an implementation orders equal scores.

Run from the repository root: ``.venv/bin/python tests/data/beam_scorers/make_tables.py``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

VOCAB = 10  # pad 0, sot 1, eos 2, then ordinary tokens
SOT, EOS = 1, 2
NUM_BEAMS = 2
SEQ_LEN = 12
MIN_SEQ_LEN = 3
CASES = 300
RULES = {"<=4.26": (0, 0), "4.31": (0, 1), ">=4.36": (1, 1)}
GRID = 2.0**-14


def toy_logits(case: int, prefix: tuple[int, ...]) -> list[float]:
    """The toy model's raw next-token logits after ``prefix`` (SOT first), one per token id."""
    rng = random.Random(f"{case}:{prefix}")
    logits = [round(rng.uniform(-4.0, 4.0) / GRID) * GRID for _ in range(VOCAB)]
    logits[EOS] += 0.5 * (len(prefix) - 4)
    return logits


class TieError(Exception):
    """Two candidates of one step, or two finished hypotheses, have the same score."""


def add(pool: list[tuple[float, tuple[int, ...]]], score: float, prefix: tuple[int, ...]) -> None:
    """Add a finished hypothesis; the pool keeps the ``NUM_BEAMS`` best."""
    if any(score == kept for kept, _ in pool):
        raise TieError(score)
    pool.append((score, prefix))
    if len(pool) > NUM_BEAMS:
        pool.remove(min(pool, key=lambda h: h[0]))


def beam_caption(case: int, hyp_offset: int, done_offset: int) -> list[int]:
    """The beam caption (SOT and content, no EOS) of toy model ``case`` under one rule."""
    beams = [((SOT,), 0.0), ((SOT,), -1e9)]
    pool: list[tuple[float, tuple[int, ...]]] = []  # finished hypotheses, in the order added
    for n in range(1, SEQ_LEN):
        candidates = []
        for beam, (prefix, total) in enumerate(beams):
            logits = toy_logits(case, prefix)
            if n < MIN_SEQ_LEN:
                logits[EOS] = float("-inf")
            candidates += [(total + value, beam, token) for token, value in enumerate(logits)]
        candidates.sort(key=lambda c: c[0], reverse=True)
        best = candidates[: 2 * NUM_BEAMS]
        if len({c[0] for c in best}) < len(best) or best[-1][0] == candidates[2 * NUM_BEAMS][0]:
            raise TieError(case)
        following = []
        for rank, (score, beam, token) in enumerate(best):
            if token == EOS:
                if rank < NUM_BEAMS:
                    add(pool, score / (n + hyp_offset), beams[beam][0])
                continue
            following.append((beams[beam][0] + (token,), score))
            if len(following) == NUM_BEAMS:
                break
        beams = following
        full = len(pool) == NUM_BEAMS
        if full and min(h[0] for h in pool) >= best[0][0] / (n + done_offset):
            break
        if n + 1 == SEQ_LEN:
            for prefix, total in beams:
                add(pool, total / SEQ_LEN, prefix)
    return list(max(pool, key=lambda h: h[0])[1])


def make_tables() -> dict:
    cases, captions = [], {rule: [] for rule in RULES}
    for case in range(10 * CASES):
        try:
            results = {rule: beam_caption(case, *offsets) for rule, offsets in RULES.items()}
        except TieError:
            continue
        cases.append(case)
        for rule, caption in results.items():
            captions[rule].append(caption)
        if len(cases) == CASES:
            break
    return {
        "vocab": VOCAB,
        "num_beams": NUM_BEAMS,
        "seq_len": SEQ_LEN,
        "min_seq_len": MIN_SEQ_LEN,
        "cases": cases,
        "captions": captions,
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("tables.json")
    out.write_text(json.dumps(make_tables()) + "\n")
    print(f"wrote {out}")
