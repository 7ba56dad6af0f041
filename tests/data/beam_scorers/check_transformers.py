"""Check ``tables.json`` against a transformers release's own ``BeamSearchScorer``.

Drives the installed transformers' ``BeamSearchScorer`` and ``MinLengthLogitsProcessor`` with the loop open_clip's
CoCa beam search runs (raw logits plus beam sums, the best 2 · num_beams candidates, one beam group;
docs/method.md §4.3).
The toy model is the one in ``make_tables.py``, and the result is compared with every committed rule. Checked
releases: 4.26.1 reproduces ``<=4.26``; 4.29.2, 4.30.2, 4.31.0 and 4.35.2 reproduce ``4.31``; 4.36.2 and 4.57.6
reproduce ``>=4.36``, all 300 of 300 cases. 4.27.4 and 4.28.1 differ from ``4.31`` on 9 cases in one batch and
reproduce it with one item per batch (``--one-item-batches``).

Run from the repository root with the transformers release on the path:
``.venv/bin/python tests/data/beam_scorers/check_transformers.py [--one-item-batches]``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch

FOLDER = Path(__file__).resolve().parent
SOT, EOS = 1, 2
PAD = -1  # outside the toy vocabulary, whose ids 0 and 1 are ordinary tokens after SOT


def load_tables() -> tuple[dict, Callable[[int, tuple[int, ...]], list[float]]]:
    """The committed tables and the toy model of their generator script."""
    spec = importlib.util.spec_from_file_location("make_beam_tables", FOLDER / "make_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return json.loads((FOLDER / "tables.json").read_text()), module.toy_logits


def transformers_captions(cases: list[int], tables: dict, toy_logits: Callable) -> list[list[int]]:
    """Beam captions (SOT first, EOS dropped) of ``cases`` in one batch, scored by transformers' BeamSearchScorer."""
    from transformers import LogitsProcessorList, MinLengthLogitsProcessor
    from transformers.generation.beam_search import BeamSearchScorer

    beams, seq_len = tables["num_beams"], tables["seq_len"]
    batch = len(cases)
    scorer = BeamSearchScorer(batch_size=batch, num_beams=beams, device="cpu")
    processors = LogitsProcessorList([MinLengthLogitsProcessor(tables["min_seq_len"], eos_token_id=EOS)])
    input_ids = torch.full((batch * beams, 1), SOT, dtype=torch.long)
    beam_scores = torch.zeros(batch, beams, dtype=torch.float64)
    beam_scores[:, 1:] = -1e9
    beam_scores = beam_scores.view(-1)
    while True:
        logits = torch.tensor([toy_logits(cases[row // beams], tuple(input_ids[row].tolist()))
                               for row in range(batch * beams)], dtype=torch.float64)
        vocab = logits.shape[1]
        scores = (processors(input_ids, logits) + beam_scores[:, None]).view(batch, beams * vocab)
        top, tokens = torch.topk(scores, 2 * beams, dim=1, largest=True, sorted=True)
        indices, tokens = torch.div(tokens, vocab, rounding_mode="floor"), tokens % vocab
        out = scorer.process(input_ids, top, tokens, indices, pad_token_id=PAD, eos_token_id=EOS)
        beam_scores = out["next_beam_scores"]
        input_ids = torch.cat([input_ids[out["next_beam_indices"]], out["next_beam_tokens"][:, None]], dim=-1)
        if scorer.is_done or input_ids.shape[-1] >= seq_len:
            break
    sequences = scorer.finalize(input_ids, beam_scores, tokens, indices, pad_token_id=PAD, eos_token_id=EOS,
                                max_length=seq_len)["sequences"]
    captions = []
    for row in sequences.tolist():
        ids = [t for t in row if t != PAD]
        captions.append(ids[:-1] if ids[-1] == EOS else ids)
    return captions


def differences(one_item_batches: bool = False) -> dict[str, int]:
    """Per committed rule, how many cases the installed transformers' captions differ on."""
    tables, toy_logits = load_tables()
    cases = tables["cases"]
    if one_item_batches:
        ours = [transformers_captions([case], tables, toy_logits)[0] for case in cases]
    else:
        ours = transformers_captions(cases, tables, toy_logits)
    return {rule: sum(a != b for a, b in zip(ours, captions)) for rule, captions in tables["captions"].items()}


if __name__ == "__main__":
    import transformers

    print(f"transformers {transformers.__version__}, {len(load_tables()[0]['cases'])} cases")
    for rule, count in differences("--one-item-batches" in sys.argv).items():
        print(f"  differs from the {rule!r} table on {count} cases")
