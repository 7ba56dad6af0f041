"""Head nouns of the noun-phrase extractors (rule-based default, optional spaCy) and the noun prompt."""

from __future__ import annotations

import importlib.util

import pytest

from ris.noun_phrases import RuleNounPhrases, SpacyNounPhrases, make_noun_phrases, noun_prompt
from tests.fake_spacy import FakeDoc

WORLD_NOUNS = ["circle", "disk", "square", "box", "star", "ring", "donut", "shape"]


@pytest.mark.parametrize(
    ("caption", "noun"),
    [
        ("a big striped red circle left of a blue star", "circle"),
        ("a man riding a horse on the beach", "man"),
        ("two dogs playing in the snow", "dogs"),
        ("a red bus parked on the street", "bus"),
        ("a woman holds an umbrella", "woman"),
        ("people walking down the street", "people"),
        ("a striped shirt", "shirt"),
        ("the left cup", "cup"),
        ("a dog on a couch ", "dog"),  # BPE decoding leaves a trailing space
        ("milk and coffee together with milk ! ", "milk"),
        ("A Giraffe, standing tall", "giraffe"),
        ("a photo of a yellow star", "photo"),  # the first chunk, as spaCy's rule would give
    ],
)
def test_rule_extractor_generic_heuristic(caption: str, noun: str) -> None:
    assert RuleNounPhrases().head_noun(caption) == noun


def test_rule_extractor_falls_back_to_the_whole_caption() -> None:
    extractor = RuleNounPhrases()
    assert extractor.head_noun(" on the table ") == "on the table"
    assert extractor.head_noun("") == ""
    assert extractor.head_nouns([", and then", "a cat"]) == [", and then", "cat"]


def test_rule_extractor_with_known_nouns() -> None:
    extractor = RuleNounPhrases(WORLD_NOUNS)
    assert extractor.head_nouns(
        [
            "a photo of a yellow star",
            "big box next to a red circle",
            "the small striped shape",
            "a photo of a green thing",
            "Disk",
        ]
    ) == ["star", "box", "shape", "photo", "disk"]


def test_spacy_rule_takes_the_first_root_and_returns_its_chunk_root_word() -> None:
    # "man riding a horse": root "riding" (1) is in no chunk; its first child "man" (0) is, chunk "a tall man"
    words = ["man", "riding", "a", "horse", ".", "dog", "running"]
    heads = [1, 1, 3, 1, 1, 6, 6]
    chunks = [([0], "a tall man"), ([2, 3], "a horse"), ([5], "the dog")]
    assert SpacyNounPhrases.head_noun_of(FakeDoc(words, heads, {1: [0, 3], 6: [5]}, chunks)) == "man"
    assert SpacyNounPhrases.target_phrase_of(FakeDoc(words, heads, {1: [0, 3], 6: [5]}, chunks)) == "the dog"
    # the first root's first child in no chunk: the whole text
    assert SpacyNounPhrases.head_noun_of(FakeDoc(words, heads, {1: [4]}, chunks)) == " ".join(words)
    # a root inside a chunk gives that chunk's root word
    assert SpacyNounPhrases.head_noun_of(FakeDoc(["big", "dog"], [1, 1], {}, [([0, 1], "big dog")])) == "dog"


def test_noun_prompt_rule() -> None:
    assert noun_prompt("dog") == "a photo of a dog"
    assert noun_prompt("apple") == "a photo of a apple"  # the official rule has no a/an agreement
    assert noun_prompt("the man on the left ") == "a photo of the man on the left"
    assert noun_prompt("An old car") == "a photo of An old car"
    assert noun_prompt("theatre") == "a photo of a theatre"


def test_make_noun_phrases() -> None:
    extractor = make_noun_phrases("rules", ["ring"])
    assert isinstance(extractor, RuleNounPhrases) and extractor.head_nouns(["a blue donut ring"]) == ["ring"]
    with pytest.raises(ValueError, match="unknown noun phrase extractor 'nltk'"):
        make_noun_phrases("nltk")


@pytest.mark.skipif(importlib.util.find_spec("spacy") is not None, reason="spaCy is installed")
def test_spacy_extractor_reports_missing_spacy() -> None:
    with pytest.raises(ImportError, match="pip install 'pseudo-ris\\[spacy\\]'"):
        make_noun_phrases("spacy")


def _spacy_model() -> str | None:
    if importlib.util.find_spec("spacy") is None:
        return None
    for name in ("en_core_web_lg", "en_core_web_sm"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


@pytest.mark.skipif(_spacy_model() is None, reason="no spaCy English model installed")
def test_spacy_extractor_official_rule() -> None:
    extractor = SpacyNounPhrases(_spacy_model() or "")
    assert extractor.head_nouns(["a man riding a horse on the beach", "two dogs playing in the snow"]) == [
        "man", "dogs"]
