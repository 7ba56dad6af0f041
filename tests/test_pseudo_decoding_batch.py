"""The fast decoding paths: shared states, images decoded together, the sync-free (GPU) loop, autocast."""

from dataclasses import replace

import pytest
import torch

from ris.pseudo.captioner import CoCaCaptioner
from ris.pseudo.coca_decoder import CoCaRows
from ris.pseudo.reference import official_distinctive_sampling
from ris.tokenizer import WordTokenizer
from tests.test_pseudo_captioner import SHORT, WORDS, crops, tiny_coca


@pytest.fixture(scope="module")
def word_coca():
    return tiny_coca(WordTokenizer(WORDS))


def official(built, images, settings, seed):
    """The official loop per crop type, with the uniforms our captioner draws from ``seed``."""
    types, masks = images.shape[:2]
    rows = (len(settings.top_k) + len(settings.top_p)) * masks
    uniforms = torch.rand((settings.seq_len, types * rows), generator=torch.Generator().manual_seed(seed))
    tok = built.tokenizer
    parts = [uniforms[:, t * rows : (t + 1) * rows] for t in range(types)]
    samples = [official_distinctive_sampling(built.model, images[t], tok, u, settings) for t, u in enumerate(parts)]
    return torch.cat(samples)


@pytest.mark.parametrize("sync_every", [1, 3, 100])
def test_every_bookkeeping_interval_gives_the_official_tokens(word_coca, sync_every, one_thread):
    settings = replace(SHORT, beam=False, seq_len=10)
    captioner = CoCaCaptioner.from_model(word_coca, settings, sync_every=sync_every)
    images = crops(2, 3)
    ours = captioner.sample_tokens(captioner.encode(images), torch.Generator().manual_seed(5))
    assert torch.equal(ours, official(word_coca, images, settings, 5))
    ends = (ours == word_coca.tokenizer.eot_id) | (ours == word_coca.tokenizer.pad_id)
    assert bool(ends[:, 1:-1].any())  # some rows end early: the finished-row handling is exercised


def test_equal_prefixes_are_computed_once(word_coca, one_thread):
    # top_k = 1 rows are greedy: the three k = 1 settings of a mask always hold the same prefix
    settings = replace(SHORT, beam=False, top_k=(1, 1, 1), top_p=(), seq_len=8, min_seq_len=7)
    captioner = CoCaCaptioner.from_model(word_coca, settings)
    images = crops(1, 3)
    context = captioner.encode(images)
    rows_seen = []
    original = CoCaRows.advance

    def spy(self, tokens, share=True):
        scores = original(self, tokens, share)
        rows_seen.append(self.work[-1])
        return scores

    CoCaRows.advance = spy
    try:
        ours = captioner.sample_tokens(context, torch.Generator().manual_seed(0))
    finally:
        CoCaRows.advance = original
    assert torch.equal(ours, official(word_coca, images, settings, 0))
    first = rows_seen[0]
    assert (first.rows, first.nodes, first.pairs) == (9, 1, 3)  # SOT once, one state per image
    for work in rows_seen[1:]:  # 3 masks × 3 identical rows: at most 3 prefixes, each against the 3 images
        assert work.rows == 9 and work.nodes <= 3 and work.pairs <= 9
    assert len({tuple(r) for r in ours.tolist()}) <= 3


def test_images_decoded_together_get_their_own_captions(word_coca, one_thread):
    captioner = CoCaCaptioner.from_model(word_coca, SHORT, max_pairs=40)
    a, b, c = crops(4, 3, seed=1), crops(4, 1, seed=2), crops(4, 2, seed=3)  # contrast, none, contrast
    alone = [captioner.caption(x, torch.Generator().manual_seed(i)) for i, x in enumerate((a, b, c))]
    together = captioner.caption_batch([a, b, c], [torch.Generator().manual_seed(i) for i in range(3)])
    assert together == alone
    assert [len(x) for x in together] == [4, 4, 4] and [len(x[0]) for x in together] == [3, 1, 2]


SYNCS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "nonzero")


def _has_bool_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


def test_no_host_synchronisation_between_the_bookkeeping_steps(word_coca, monkeypatch, one_thread):
    """Every call that reads a device tensor on the host (or has a data-dependent shape) is counted per step."""
    sync_every = 4
    settings = replace(SHORT, beam=False, seq_len=14, min_seq_len=12)
    captioner = CoCaCaptioner.from_model(word_coca, settings, sync_every=sync_every)
    context = captioner.encode(crops(2, 3))
    events: list[tuple[str, object]] = []
    depth = [0]

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            if depth[0] == 0:
                events.append(("sync", name))
            depth[0] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1

        return wrapper

    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
    for name in ("unique", "nonzero", "bincount", "masked_select"):
        monkeypatch.setattr(torch, name, counted(name, getattr(torch, name)))
    getitem, setitem = torch.Tensor.__getitem__, torch.Tensor.__setitem__

    def get(self, index):
        if depth[0] == 0 and _has_bool_index(index):
            events.append(("sync", "bool index"))
        return getitem(self, index)

    def put(self, index, value):
        if depth[0] == 0 and _has_bool_index(index):
            events.append(("sync", "bool index"))
        return setitem(self, index, value)

    monkeypatch.setattr(torch.Tensor, "__getitem__", get)
    monkeypatch.setattr(torch.Tensor, "__setitem__", put)
    original = CoCaRows.advance

    def advance(self, tokens, share=True):
        events.append(("advance", share))
        return original(self, tokens, share)

    monkeypatch.setattr(CoCaRows, "advance", advance)
    ours = captioner.sample_tokens(context, torch.Generator().manual_seed(2))
    monkeypatch.undo()

    steps = [share for kind, share in events if kind == "advance"]
    assert steps == [(n - 1) % sync_every == 0 for n in range(1, settings.seq_len - 1)]
    # syncs per step: between the end of one step's sampling and the next step's model call
    per_step, current = [], None
    for kind, what in events:
        if kind == "advance":
            if current is not None:
                per_step.append(current)
            current = {"share": what, "syncs": 0}
        elif current is not None:
            current["syncs"] += 1
    for step, following in zip(per_step, per_step[1:] + [None]):
        if not step["share"] and (following is None or not following["share"]):
            assert step["syncs"] == 0, f"host synchronisation in a sync-free step: {step}"
    assert sum(step["syncs"] for step in per_step) > 0  # the hook does see the bookkeeping steps' reads
    assert torch.equal(ours, official(word_coca, crops(2, 3), settings, 2))


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_autocast_decodes_with_low_precision_states(precision, one_thread):
    built = tiny_coca(WordTokenizer(WORDS), dtype=torch.float32)
    captioner = CoCaCaptioner.from_model(built, SHORT, precision=precision)
    context = captioner.encode(crops(1, 3, torch.float32))
    assert context.cross_kv[0][0].dtype == getattr(torch, precision)
    assert context.latent.dtype == torch.float32
    tokens = captioner.sample_tokens(context, torch.Generator().manual_seed(0))
    full = CoCaCaptioner.from_model(built, SHORT)
    reference = full.sample_tokens(full.encode(crops(1, 3, torch.float32)), torch.Generator().manual_seed(0))
    assert tokens.shape == reference.shape and bool((tokens[:, 0] == built.tokenizer.sot_id).all())
    assert int((tokens == reference).all(dim=1).sum()) >= 1  # low precision changes some rows, not all
    with pytest.raises(ValueError, match="precision must be one of"):
        CoCaCaptioner.from_model(built, SHORT, precision="int8")
