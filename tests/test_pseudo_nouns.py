"""Head-noun extraction (rule-based default, optional spaCy) and the noun prompt."""

from __future__ import annotations

import importlib.util

import pytest

from ris.pseudo.nouns import RuleNounExtractor, SpacyNounExtractor, make_noun_extractor, noun_prompt

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
    assert RuleNounExtractor().head_noun(caption) == noun


def test_rule_extractor_falls_back_to_the_whole_caption() -> None:
    extractor = RuleNounExtractor()
    assert extractor.head_noun(" on the table ") == "on the table"
    assert extractor.head_noun("") == ""
    assert extractor([", and then", "a cat"]) == [", and then", "cat"]


def test_rule_extractor_with_known_nouns() -> None:
    extractor = RuleNounExtractor(WORLD_NOUNS)
    assert extractor(
        [
            "a photo of a yellow star",
            "big box next to a red circle",
            "the small striped shape",
            "a photo of a green thing",
            "Disk",
        ]
    ) == ["star", "box", "shape", "photo", "disk"]


def test_noun_prompt_rule() -> None:
    assert noun_prompt("dog") == "a photo of a dog"
    assert noun_prompt("apple") == "a photo of a apple"  # the official rule has no a/an agreement
    assert noun_prompt("the man on the left ") == "a photo of the man on the left"
    assert noun_prompt("An old car") == "a photo of An old car"
    assert noun_prompt("theatre") == "a photo of a theatre"


def test_make_noun_extractor() -> None:
    extractor = make_noun_extractor("rules", ["ring"])
    assert isinstance(extractor, RuleNounExtractor) and extractor(["a blue donut ring"]) == ["ring"]
    with pytest.raises(ValueError, match="unknown noun extractor 'nltk'"):
        make_noun_extractor("nltk")


@pytest.mark.skipif(importlib.util.find_spec("spacy") is not None, reason="spaCy is installed")
def test_spacy_extractor_reports_missing_spacy() -> None:
    with pytest.raises(ImportError, match="pip install 'pseudo-ris\\[spacy\\]'"):
        make_noun_extractor("spacy")


def _spacy_model() -> str | None:
    if importlib.util.find_spec("spacy") is None:
        return None
    for name in ("en_core_web_lg", "en_core_web_sm"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


@pytest.mark.skipif(_spacy_model() is None, reason="no spaCy English model installed")
def test_spacy_extractor_official_rule() -> None:
    extractor = SpacyNounExtractor(_spacy_model() or "")
    assert extractor(["a man riding a horse on the beach", "two dogs playing in the snow"]) == ["man", "dogs"]
