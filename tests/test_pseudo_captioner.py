import importlib
import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ris.open_clip_models import create_open_clip
from ris.pseudo.captioner import CoCaCaptioner, DecodingSettings
from ris.pseudo.coca_decoder import CoCaDecoder
from ris.pseudo.decoding import (
    BEAM_SCORERS,
    StepScores,
    beam_search,
    dense_sample_step,
    sample_step,
    sample_tokens,
)
from ris.pseudo.reference import official_distinctive_sampling
from ris.pseudo.sampling import contrasted_probs, sample_from_probs, top_k_mask, top_p_mask
from ris.tokenizer import WordTokenizer

WORDS = ["a", "red", "blue", "green", "big", "small", "circle", "square", "star", "striped", "left", "right"]
SHORT = DecodingSettings(seq_len=9, min_seq_len=3)


def tiny_coca(tokenizer=None, dtype=torch.float64, seed=0):
    """tiny-coca with random weights; open_clip leaves the decoder's vocabulary projection uninitialised.

    The PAD column is zeroed (logit 0) so that random captions are rarely cut by a PAD at once.
    """
    torch.manual_seed(seed)
    built = create_open_clip("tiny-coca", tokenizer=tokenizer)
    projection = built.model.text_decoder.text_projection
    with torch.no_grad():
        projection.normal_(std=projection.shape[0] ** -0.5 * 3)
        projection[:, built.tokenizer.pad_id] = 0.0
    built.model.to(dtype)
    return built


@pytest.fixture(scope="module")
def word_coca():
    return tiny_coca(WordTokenizer(WORDS))


@pytest.fixture(scope="module")
def bpe_coca():
    return tiny_coca()


def crops(types, masks, dtype=torch.float64, seed=1):
    return torch.randn(types, masks, 3, 64, 64, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def full_logits(model, image_embs, tokens):
    """open_clip's own full forward: logits of all positions ``(R, L, V)``."""
    _, states = model._encode_text(tokens)
    return model.text_decoder(image_embs, states)


@pytest.mark.parametrize("which", ["word", "bpe"])
def test_cached_step_logits_match_open_clip_forward(which, word_coca, bpe_coca):
    built = tiny_coca(WordTokenizer(WORDS) if which == "word" else None, dtype=torch.float32)
    model, tok = built.model, built.tokenizer
    images = crops(1, 3, torch.float32)[0]
    tokens = torch.randint(3, tok.vocab_size, (3, 7), generator=torch.Generator().manual_seed(2))
    tokens[:, 0] = tok.sot_id
    tokens[1, 3] = tok.pad_id  # open_clip masks pad keys (legacy shifted layout): the cache must too
    weights = torch.tensor([[0.0, 0.5, 0.25], [0.1, 0.0, 0.3], [0.2, 0.7, 0.0]])
    decoder = CoCaDecoder(model)
    with torch.inference_mode():
        _, image_embs = model._encode_image(images)
        reference = model(images, tokens, output_labels=False)["logits"]
        per_image = torch.stack([full_logits(model, image_embs[j].expand(3, -1, -1), tokens) for j in range(3)], 1)
        context = decoder.encode(images)
        plain = decoder.rows(context, torch.arange(3)[:, None], torch.zeros(3, dtype=torch.long), None, 9)
        contrast = decoder.rows(context, torch.arange(3).expand(3, 3), torch.arange(3), weights, 9)
        for position in range(tokens.shape[1]):
            logits, none = plain.advance(tokens[:, position]).project(torch.arange(3))
            assert none is None
            torch.testing.assert_close(logits, reference[:, position], rtol=0, atol=2e-5)
            scores = contrast.advance(tokens[:, position])
            logits, term = scores.project(torch.tensor([2, 0]))
            torch.testing.assert_close(logits, reference[:, position], rtol=0, atol=2e-5)
            expected = torch.einsum("rj,rjv->rv", weights, per_image[:, :, position])
            torch.testing.assert_close(term, expected[[2, 0]], rtol=0, atol=2e-5)
            columns = torch.tensor([[0, 5], [7, 7], [3, 1]])
            at = scores.contrast_at(torch.arange(3), columns)
            torch.testing.assert_close(at, expected.gather(1, columns), rtol=0, atol=2e-5)
    assert reference.abs().max() > 0.5  # the logits are not trivially zero


def greedy_reference(model, images, tok, seq_len, min_seq_len):
    """Un-cached greedy decoding: full-prefix recompute, all-position logits, one row at a time."""
    _, image_embs = model._encode_image(images)
    out = []
    for row in range(images.shape[0]):
        ids = [tok.sot_id]
        while len(ids) < seq_len:
            if len(ids) + 1 == seq_len:
                ids.append(tok.eot_id)
                break
            logits = full_logits(model, image_embs[row : row + 1], torch.tensor([ids]))[0, -1].clone()
            if len(ids) < min_seq_len:
                logits[tok.eot_id] = float("-inf")
            ids.append(int(logits.argmax()))
            if ids[-1] in (tok.eot_id, tok.pad_id):
                break
        out.append(ids + [tok.pad_id] * (seq_len - len(ids)))
    return torch.tensor(out)


@pytest.mark.parametrize("which", ["word", "bpe"])
def test_cached_greedy_equals_uncached_greedy(which, word_coca, bpe_coca):
    built = word_coca if which == "word" else bpe_coca
    images = crops(1, 4)[0]
    decoder = CoCaDecoder(built.model)
    with torch.inference_mode():
        rows = decoder.rows(
            decoder.encode(images), torch.arange(4)[:, None], torch.zeros(4, dtype=torch.long), None, 12
        )
        ours = sample_tokens(
            rows,
            built.tokenizer,
            torch.ones(4, dtype=torch.long),
            torch.ones(4, dtype=torch.float64),
            torch.rand(12, 4),
            seq_len=12,
            min_seq_len=3,
        )
        reference = greedy_reference(built.model, images, built.tokenizer, 12, 3)
    assert torch.equal(ours, reference)
    assert len({tuple(r) for r in ours.tolist()}) > 1


@pytest.mark.parametrize(("which", "mode"), [("word", "mean"), ("word", "weighted"), ("word", "none"), ("bpe", "mean")])
def test_sampling_equals_the_official_uncached_loop(mode, which, word_coca, bpe_coca):
    built = word_coca if which == "word" else bpe_coca
    settings = replace(SHORT, contrast=mode, weighted_lambda=2.0, beam=False, temperature=0.9)
    if which == "bpe":  # fewer settings: sorting 49408 logits per row is the cost here
        settings = replace(settings, top_k=(5, 13), top_p=(0.4, 0.8))
    captioner = CoCaCaptioner.from_model(built, settings)
    images = crops(2, 3)
    ours = captioner.sample_tokens(captioner.encode(images), torch.Generator().manual_seed(5))
    rows = (len(settings.top_k) + len(settings.top_p)) * 3
    uniforms = torch.rand((settings.seq_len, 2 * rows), generator=torch.Generator().manual_seed(5))
    reference = torch.cat(
        [
            official_distinctive_sampling(
                built.model, images[t], built.tokenizer, uniforms[:, t * rows : (t + 1) * rows], settings
            )
            for t in range(2)
        ]
    )
    assert torch.equal(ours, reference)
    assert len({tuple(r) for r in ours.tolist()}) > rows  # the rows really differ
    if mode != "none":  # the contrast changes some samples
        plain = CoCaCaptioner.from_model(built, replace(settings, contrast="none"))
        assert not torch.equal(plain.sample_tokens(plain.encode(images), torch.Generator().manual_seed(5)), ours)


def test_contrast_only_within_the_mask_count_bounds(word_coca):
    images = crops(1, 3)

    def tokens(**changes):
        captioner = CoCaCaptioner.from_model(word_coca, replace(SHORT, beam=False, **changes))
        return captioner.sample_tokens(captioner.encode(images), torch.Generator().manual_seed(3))

    plain = tokens(contrast="none")
    assert not torch.equal(tokens(), plain)
    assert torch.equal(tokens(contrast_max_masks=2), plain)  # K = 3 > max
    assert torch.equal(tokens(contrast_min_masks=4, contrast_max_masks=5), plain)  # K = 3 < min


def test_chunking_does_not_change_the_samples(word_coca):
    images = crops(2, 3)
    settings = replace(SHORT, beam=False)
    whole = CoCaCaptioner.from_model(word_coca, settings)
    chunked = CoCaCaptioner.from_model(word_coca, settings, max_pairs=7)
    a = whole.sample_tokens(whole.encode(images), torch.Generator().manual_seed(9))
    b = chunked.sample_tokens(chunked.encode(images), torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    assert whole.beam_tokens(whole.encode(images)) == chunked.beam_tokens(chunked.encode(images))


def beam_reference(model, image, tok, num_beams, seq_len, min_seq_len):
    """Un-cached width-B beam search on raw-logit sums, HF BeamSearchScorer arithmetic of transformers 4.31
    (hypotheses divide by the prefix length n, the "done" test by n + 1)."""
    _, image_embs = model._encode_image(image[None])
    beams = [([tok.sot_id], 0.0 if b == 0 else -1e9) for b in range(num_beams)]
    finished = []  # (score, ids), at most num_beams kept
    for length in range(1, seq_len):
        scores = []
        for ids, total in beams:
            logits = full_logits(model, image_embs, torch.tensor([ids]))[0, -1].clone()
            if length < min_seq_len:
                logits[tok.eot_id] = float("-inf")
            scores.append(logits + total)
        flat, vocab = torch.cat(scores), scores[0].shape[0]
        candidates = [(float(flat[i]), i // vocab, i % vocab) for i in flat.argsort(descending=True)[: 2 * num_beams]]
        new = []
        for rank, (score, b, v) in enumerate(candidates):
            if v == tok.eot_id:
                if rank < num_beams:
                    finished.append((score / length, beams[b][0]))
                    finished = sorted(finished, key=lambda f: f[0])[-num_beams:]
                continue
            new.append(([*beams[b][0], v], score))
            if len(new) == num_beams:
                break
        beams = new
        if len(finished) == num_beams and finished[0][0] >= candidates[0][0] / (length + 1):
            return max(finished, key=lambda f: f[0])[1]
    finished += [(total / seq_len, ids) for ids, total in beams]
    return max(finished, key=lambda f: f[0])[1]


@pytest.mark.parametrize("which", ["word", "bpe"])
def test_beam_search_equals_uncached_reference(which, word_coca, bpe_coca):
    built = word_coca if which == "word" else bpe_coca
    captioner = CoCaCaptioner.from_model(built, replace(SHORT, seq_len=10, min_seq_len=4))
    images = crops(1, 5, seed=4)
    ours = captioner.beam_tokens(captioner.encode(images))
    with torch.inference_mode():
        reference = [beam_reference(built.model, image, built.tokenizer, 2, 10, 4) for image in images[0]]
    assert ours == reference
    assert all(len(ids) >= 4 for ids in ours)  # SOT + at least min_seq_len - 1 content tokens


class TableRows:
    """A StepModel whose logits are a table of prefixes (default: all tokens at -100)."""

    device = torch.device("cpu")

    def __init__(self, rows, table, vocab):
        self.prefixes = [() for _ in range(rows)]
        self.table, self.vocab = table, vocab

    def advance(self, tokens):
        self.prefixes = [p + (int(t),) for p, t in zip(self.prefixes, tokens)]
        logits = torch.full((len(self.prefixes), self.vocab), -100.0)
        for row, prefix in enumerate(self.prefixes):
            for token, value in self.table(prefix).items():
                logits[row, token] = value
        return StepScores(logits, torch.eye(self.vocab))

    def select(self, rows):
        self.prefixes = [self.prefixes[int(r)] for r in rows]


TOK = WordTokenizer(["a", "b", "c", "d"])  # pad 0, sot 1, eos 2, unk 3, a 4, b 5, c 6, d 7
A, B, C = 4, 5, 6


def run_beam(table, seq_len=10, min_seq_len=1, num_beams=2, scorer="4.31"):
    rows = TableRows(num_beams, table, TOK.vocab_size)
    return beam_search(rows, TOK, 1, num_beams, seq_len, min_seq_len, scorer)[0]


def test_beam_divides_by_the_length_without_eos():
    # "a"+EOS: sum 10, "b c"+EOS: sum 14. Divisor without EOS (transformers <= 4.35): 10/2 = 5 > 14/3 -> "a";
    # counting EOS (transformers >= 4.36) gives 10/3 < 14/4 -> "b c".
    table = {(1,): {A: 10, B: 9}, (1, A): {2: 0}, (1, B): {C: 3}, (1, B, C): {2: 2}}
    assert run_beam(lambda p: table.get(p, {})) == [1, A]
    assert run_beam(lambda p: table.get(p, {}), scorer="<=4.26") == [1, A]
    assert run_beam(lambda p: table.get(p, {}), scorer=">=4.36") == [1, B, C]


def test_beam_ignores_eos_candidates_ranked_below_the_beam_width():
    # EOS right after SOT (sum 8, score 8/1) ranks 3rd among the candidates: not a hypothesis
    table = {(1,): {A: 10, B: 9, 2: 8}, (1, A): {2: 0}, (1, B): {2: -1}}
    assert run_beam(lambda p: table.get(p, {})) == [1, A]


def test_beam_respects_the_minimum_length():
    def table(prefix):
        return {2: 5.0, A: 1.0}

    assert run_beam(table, min_seq_len=5) == [1, A, A, A, A]
    assert run_beam(table, min_seq_len=3) == [1, A, A]


def test_beam_without_eos_returns_the_best_open_beam_at_max_length():
    def table(prefix):
        return {A: 1.0, B: 0.5, 2: -1000.0}

    assert run_beam(table, seq_len=5) == [1, A, A, A, A]


def _beam_tables():
    """The committed beam tables and the toy model of their generator script (tests/data/beam_scorers/)."""
    folder = Path(__file__).parent / "data" / "beam_scorers"
    spec = importlib.util.spec_from_file_location("make_beam_tables", folder / "make_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return json.loads((folder / "tables.json").read_text()), module.toy_logits


class ToyRows:
    """A StepModel over the generator script's toy logits; rows of all cases at once (case = item)."""

    device = torch.device("cpu")

    def __init__(self, cases, num_beams, toy_logits):
        self.rows = [(case, ()) for case in cases for _ in range(num_beams)]
        self.toy_logits = toy_logits

    def advance(self, tokens):
        self.rows = [(case, prefix + (int(t),)) for (case, prefix), t in zip(self.rows, tokens)]
        logits = torch.tensor([self.toy_logits(case, prefix) for case, prefix in self.rows], dtype=torch.float64)
        return StepScores(logits, torch.eye(logits.shape[1], dtype=torch.float64))

    def select(self, rows):
        self.rows = [self.rows[int(r)] for r in rows]


@pytest.mark.parametrize("scorer", list(BEAM_SCORERS))
def test_beam_search_reproduces_each_transformers_rule(scorer):
    tables, toy_logits = _beam_tables()
    assert set(tables["captions"]) == set(BEAM_SCORERS)
    tok = WordTokenizer([f"w{i}" for i in range(tables["vocab"] - 4)])  # pad 0, sot 1, eos 2, unk 3, ...
    assert tok.vocab_size == tables["vocab"]
    cases = tables["cases"]
    model = ToyRows(cases, tables["num_beams"], toy_logits)
    ours = beam_search(
        model, tok, len(cases), tables["num_beams"], tables["seq_len"], tables["min_seq_len"], scorer=scorer
    )
    assert ours == tables["captions"][scorer]
    others = [rule for rule in BEAM_SCORERS if rule != scorer]
    for other in others:  # the rules really differ on these cases
        assert sum(a != b for a, b in zip(ours, tables["captions"][other])) > 50


def _rule_of(version: str) -> tuple[str, bool]:
    """The committed rule a transformers release computes, and whether only one-item batches follow it."""
    major, minor = (int(part) for part in version.split(".")[:2])
    if (major, minor) >= (4, 36):
        return ">=4.36", False
    if (major, minor) >= (4, 29):
        return "4.31", False
    if (major, minor) >= (4, 27):
        return "4.31", True
    return "<=4.26", False


def test_the_installed_transformers_beam_scorer_reproduces_its_table():
    """The committed tables come from an independent generator; transformers' own BeamSearchScorer, driven by
    open_clip's loop, gives the table of its release's rule (tests/data/beam_scorers/check_transformers.py)."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("transformers.generation.beam_search", exc_type=ImportError)
    if not hasattr(importlib.import_module("transformers.generation.beam_search"), "BeamSearchScorer"):
        pytest.skip(f"transformers {transformers.__version__} has no BeamSearchScorer")
    spec = importlib.util.spec_from_file_location(
        "check_beam_tables", Path(__file__).parent / "data" / "beam_scorers" / "check_transformers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rule, one_item = _rule_of(transformers.__version__)
    counts = module.differences(one_item_batches=one_item)
    assert counts[rule] == 0, (transformers.__version__, counts)
    assert all(count > 50 for other, count in counts.items() if other != rule)


def test_the_default_beam_scorer_is_the_pinned_transformers_4_31():
    assert DecodingSettings().beam_scorer == "4.31"
    with pytest.raises(ValueError, match="beam_scorer must be one of"):
        DecodingSettings(beam_scorer="4.57")


def test_caption_api_shapes_order_and_determinism(word_coca):
    captioner = CoCaCaptioner.from_model(word_coca, SHORT)
    assert captioner.sampler_names() == [
        "beam",
        "top_k=5",
        "top_k=7",
        "top_k=9",
        "top_k=11",
        "top_k=13",
        "top_p=0.4",
        "top_p=0.5",
        "top_p=0.6",
        "top_p=0.7",
        "top_p=0.8",
    ]
    assert (captioner.image_size, captioner.tokenizer) == (64, word_coca.tokenizer)
    images = crops(4, 2)
    captions = captioner.caption(images, torch.Generator().manual_seed(0))
    assert [len(c) for c in captions] == [2] * 4 and all(len(c) == 11 for t in captions for c in t)
    assert captions == captioner.caption(images, torch.Generator().manual_seed(0))
    assert captions != captioner.caption(images, torch.Generator().manual_seed(1))
    words = set(WORDS) | {"<unk>"}
    assert all(set(text.split()) <= words and text == text.strip() for t in captions for c in t for text in c)
    # column order: beam first, then the samples in sampler_names order, rows (crop type, mask)
    context = captioner.encode(images)
    beam = [decoded_text(captioner, ids) for ids in captioner.beam_tokens(context)]
    samples = captioner.sample_tokens(context, torch.Generator().manual_seed(0))
    assert [captions[t][k][0] for t in range(4) for k in range(2)] == beam
    assert captions[3][1][7] == decoded_text(captioner, samples[(3 * 10 + 6) * 2 + 1].tolist())


def decoded_text(captioner, ids):
    """Independent decoding of sampled ids: the content before the first EOS / PAD."""
    content = []
    for token in ids[1:]:
        if token in (captioner.tokenizer.eot_id, captioner.tokenizer.pad_id):
            break
        content.append(token)
    return captioner.tokenizer.decode(content)


def test_empty_captions_stay_empty():
    # a decoder whose every position prefers PAD (then EOS): samples end at once, the beam is all pads
    built = tiny_coca(WordTokenizer(WORDS))
    dec = built.model.text_decoder
    with torch.no_grad():
        dec.ln_final.weight.zero_()
        dec.ln_final.bias.zero_()
        dec.ln_final.bias[0] = 1.0
        dec.text_projection.zero_()
        dec.text_projection[0, 0] = 10.0
        dec.text_projection[0, 2] = 9.0
    captions = CoCaCaptioner.from_model(built, SHORT).caption(crops(1, 2), torch.Generator().manual_seed(0))
    assert captions == [[[""] * 11, [""] * 11]]


def test_loading_a_checkpoint_file_through_the_constructor_is_bit_exact(tmp_path, word_coca):
    built = tiny_coca(WordTokenizer(WORDS), dtype=torch.float32, seed=3)
    path = tmp_path / "coca.pt"
    torch.save(built.model.state_dict(), path)
    vocab = tmp_path / "vocab.json"
    built.tokenizer.save(vocab)
    loaded = CoCaCaptioner("tiny-coca", pretrained=str(path), tokenizer=str(vocab), settings=SHORT)
    original = built.model.state_dict()
    assert all(torch.equal(original[k], v) for k, v in loaded.built.model.state_dict().items())
    assert loaded.tokenizer == built.tokenizer and (loaded.tokenizer.sot_id, loaded.tokenizer.eot_id) == (1, 2)
    images = crops(1, 2, torch.float32)
    expected = CoCaCaptioner.from_model(built, SHORT).caption(images, torch.Generator().manual_seed(0))
    assert loaded.caption(images, torch.Generator().manual_seed(0)) == expected


def test_bad_inputs_name_what_is_wrong(word_coca):
    captioner = CoCaCaptioner.from_model(word_coca, SHORT)
    with pytest.raises(ValueError, match=r"crops must have shape \(T>0, K>0, 3, 64, 64\), got \(2, 3, 64, 64\)"):
        captioner.caption(torch.zeros(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r"got \(1, 0, 3, 64, 64\)"):
        captioner.caption(torch.zeros(1, 0, 3, 64, 64))
    with pytest.raises(TypeError, match="tiny-ViT: not a usable CoCa captioner"):
        CoCaCaptioner("tiny-ViT")
    with pytest.raises(ValueError, match="seq_len 40 exceeds the context length 32"):
        CoCaCaptioner.from_model(word_coca, DecodingSettings(seq_len=40))
    with pytest.raises(ValueError, match="top_k values must be >= 1.*contrast must be one of"):
        DecodingSettings(top_k=(0, 5), contrast="max")
    with pytest.raises(ValueError, match="need 0 <= min_seq_len < seq_len"):
        DecodingSettings(seq_len=5, min_seq_len=5)
    with pytest.raises(ValueError, match="no sampler"):
        DecodingSettings(beam=False, top_k=(), top_p=())


@pytest.mark.parametrize("with_contrast", [True, False])
def test_sample_step_on_candidates_equals_the_whole_vocabulary(with_contrast):
    """Top-k rows sample on their kept tokens only; the draw must equal the whole-vocabulary computation."""
    gen = torch.Generator().manual_seed(4)
    rows, vocab, width, eos = 40, 300, 16, 2
    hidden, projection, weighted = (
        torch.randn(rows, width, generator=gen, dtype=torch.float64),
        torch.randn(width, vocab, generator=gen, dtype=torch.float64),
        torch.randn(rows, width, generator=gen, dtype=torch.float64),
    )
    top_k = torch.tensor([1, 3, 5, 13, 0] * 8)
    top_p = torch.full((rows,), 0.7, dtype=torch.float64)
    uniforms = torch.rand(rows, generator=gen, dtype=torch.float64)
    scores = StepScores(hidden, projection, weighted if with_contrast else None)
    logits, top_p_contrast = scores.project((top_k == 0).nonzero()[:, 0])
    logits[::3, eos] += 4  # EOS often among the candidates
    logits[1::7, eos] = float("-inf")  # and sometimes blocked
    logits[5] = logits[5].round()  # ties with the k-th score
    token = sample_step(logits, scores, top_p_contrast, top_k, top_p, uniforms, eos, temperature=0.8)
    remove = torch.where((top_k > 0)[:, None], top_k_mask(logits, top_k.clamp(min=1)), top_p_mask(logits, top_p))
    dense = weighted @ projection if with_contrast else None
    expected = sample_from_probs(contrasted_probs(logits, dense, remove, eos, 0.8), uniforms)
    assert torch.equal(token, expected)
    assert (token == eos).any() and not remove.gather(1, token[:, None]).any()
    k_rows, p_rows = (top_k > 0).nonzero()[:, 0], (top_k == 0).nonzero()[:, 0]
    sync_free = dense_sample_step(logits, scores, k_rows, p_rows, 13, top_k, top_p, uniforms, eos, temperature=0.8)
    assert torch.equal(sync_free, expected)
