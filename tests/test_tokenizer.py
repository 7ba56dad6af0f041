import pytest

from ris.tokenizer import OpenCLIPTokenizer, Tokenizer, WordTokenizer, eot_positions, tokenize


def test_word_tokenizer_round_trip_and_specials(tmp_path):
    tok = WordTokenizer(["a", "red", "circle", "left"])
    assert isinstance(tok, Tokenizer)
    assert tok.vocab_size == 8
    ids = tok.encode("A red, circle!")
    assert ids == [4, 5, 3, 6, 3]  # punctuation is unknown
    assert tok.decode([tok.sot_id, 4, 5, 6, tok.eot_id, 0]) == "a red circle"
    path = tmp_path / "vocab.json"
    tok.save(path)
    assert WordTokenizer.load(path) == tok
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json"):
        WordTokenizer.load(tmp_path / "bad.json")


def test_tokenize_pads_and_truncates_with_eot_last():
    tok = WordTokenizer(["a", "b", "c", "d", "e"])
    out = tokenize(tok, ["a b", "a b c d e"], length=5)
    assert out.tolist() == [[1, 4, 5, 2, 0], [1, 4, 5, 6, 2]]
    assert eot_positions(out, tok).tolist() == [3, 4]
    with pytest.raises(ValueError, match=">= 2"):
        tokenize(tok, ["a"], 1)


def test_openclip_tokenizer_adapter_uses_bpe_ids():
    tok = OpenCLIPTokenizer("RN50")
    assert (tok.sot_id, tok.eot_id, tok.vocab_size) == (49406, 49407, 49408)
    ids = tokenize(tok, ["a red circle"], 8)
    assert ids[0, 0].item() == 49406 and ids[0, 4].item() == 49407
    assert tok.decode(ids[0].tolist()) == "a red circle"
    assert tok(["x"], context_length=6).shape == (1, 6)
