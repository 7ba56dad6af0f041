"""Head nouns of the noun-phrase extractors (rule-based default, optional spaCy) and the noun prompt."""

from __future__ import annotations

import importlib.util

import pytest

from ris.noun_phrases import (
    RuleNounPhrases,
    SpacyNounPhrases,
    check_noun_phrases,
    make_noun_phrases,
    noun_phrase_provenance,
    noun_prompt,
)
from tests.fake_spacy import FakeDoc, save_test_pipeline

WORLD_NOUNS = ["circle", "disk", "square", "box", "star", "ring", "donut", "shape"]


# Real-style CoCa captions (lower-case, CC3M/COCO phrasing, BPE's trailing spaces) and their head nouns: the rule
# extractor's documented fallback must get these right (docs/method.md §5).
CAPTIONS = [
    ("a dog runs on the beach", "dog"),
    ("black and white photo of a dog", "dog"),
    ("a man riding a horse on the beach", "man"),
    ("two dogs playing in the snow", "dogs"),
    ("a red bus parked on the street", "bus"),
    ("a woman holds an umbrella", "woman"),
    ("people walking down the street", "people"),
    ("a close up of a cat", "cat"),
    ("an aerial view of the city", "city"),
    ("a group of people standing around a table", "people"),
    ("a herd of elephants walks through the grass", "elephants"),
    ("a plate of food with a fork", "plate"),
    ("a bowl of soup on a table", "bowl"),
    ("a little girl smiles at the camera", "girl"),
    ("actor attends the premiere of the film", "actor"),
    ("the sun sets over the mountains", "sun"),
    ("a bird flies over the water", "bird"),
    ("an old man walks down the street", "man"),
    ("a boy jumps into the pool", "boy"),
    ("children play in the park", "children"),
    ("a vase filled with flowers", "vase"),
    ("a laptop computer sitting on a desk", "computer"),
    ("a tennis player hits the ball", "player"),
    ("a baseball player swinging a bat", "player"),
    ("the bride and groom pose for a photo", "bride"),
    ("a cat sleeps on the couch", "cat"),
    ("a kitchen with white cabinets and a stove", "kitchen"),
    ("a train that is parked at the station", "train"),
    ("cars are parked on the side of the road", "cars"),
    ("a hot air balloon floats in the sky", "balloon"),
    ("a picture of a giraffe standing next to a tree", "giraffe"),
    ("portrait of a young woman", "woman"),
    ("a large building with a clock tower", "building"),
    ("a skier skis down the slope", "skier"),
    ("a woman talks on her cell phone", "woman"),
    ("the moon rises above the clouds", "moon"),
    ("a couple of people sitting on a bench", "people"),
    ("a man is surfing a wave", "man"),
    ("a cup of coffee and a book on a table", "cup"),
    ("milk and coffee together with milk ! ", "milk"),
    ("a pizza sitting on top of a pan", "pizza"),
    ("a stop sign on the corner of a street", "sign"),
    ("a fire hydrant painted red and white", "hydrant"),
    ("a yellow and blue train on the tracks", "train"),
    ("a black and white cat sitting on a chair", "cat"),
    ("a giraffe eats leaves from a tree", "giraffe"),
    ("an image of a car parked in front of a house", "car"),
    ("a dog and a cat lying on a bed", "dog"),
    ("a person on a motorcycle", "person"),
    ("a striped shirt", "shirt"),
    ("the left cup", "cup"),
    ("a dog on a couch ", "dog"),
    ("A Giraffe, standing tall", "giraffe"),
    ("a photo of a yellow star", "star"),
    ("a big striped red circle left of a blue star", "circle"),
    ("a red car drives down the road", "car"),
    ("the view from the top of the mountain", "view"),
    ("a man in a suit and tie", "man"),
    ("two women are walking together", "women"),
    ("a wooden table with chairs around it", "table"),
]


@pytest.mark.parametrize(("caption", "noun"), CAPTIONS, ids=[c for c, _ in CAPTIONS])
def test_rule_extractor_finds_the_head_noun_of_plain_captions(caption: str, noun: str) -> None:
    assert RuleNounPhrases().head_noun(caption) == noun


def test_caption_table_is_large_enough() -> None:
    assert len(CAPTIONS) >= 30 and len({c for c, _ in CAPTIONS}) == len(CAPTIONS)


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
    ) == ["star", "box", "shape", "thing", "disk"]


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


def test_missing_spacy_or_model_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "spacy" else real(name, *a))
    with pytest.raises(ImportError, match=r"needs spaCy: pip install 'pseudo-ris\[spacy\]' && python -m spacy "
                       r"download en_core_web_lg \(or use the rule-based fallback: rules\)"):
        make_noun_phrases("spacy")
    with pytest.raises(ImportError, match="needs spaCy"):
        check_noun_phrases("spacy:en_core_web_sm")
    monkeypatch.setattr(importlib.util, "find_spec", real)
    if real("spacy") is not None:
        with pytest.raises(ImportError, match=r"model 'en_core_web_nope' is not installed: python -m spacy download "
                           r"en_core_web_nope"):
            check_noun_phrases("spacy:en_core_web_nope")
    check_noun_phrases("rules")
    check_noun_phrases("rule")


def test_spacy_extractor_runs_the_official_rule_on_a_real_pipeline(tmp_path) -> None:
    pytest.importorskip("spacy")
    folder = save_test_pipeline(tmp_path / "pipeline")
    extractor = make_noun_phrases(f"spacy:{folder}")
    assert isinstance(extractor, SpacyNounPhrases)
    texts = ["a dog runs on the beach", "black and white photo of a dog", "man riding a horse"]
    # the official rule keeps "photo" where the rule-based fallback skips the picture frame (docs/method.md §5)
    assert extractor.head_nouns(texts) == ["dog", "photo", "man"]
    assert RuleNounPhrases().head_nouns(texts) == ["dog", "dog", "man"]
    provenance = noun_phrase_provenance(f"spacy:{folder}")
    assert provenance["extractor"] == "spacy" and provenance["model"] == str(folder)
    assert provenance["spacy_version"] and provenance["model_version"] == "0.0.0"
    assert noun_phrase_provenance("rules", ["b", "a", "b"]) == {"extractor": "rules", "known_nouns": ["a", "b"]}
