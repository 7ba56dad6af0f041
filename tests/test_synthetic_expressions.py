import itertools

import numpy as np
import pytest

from ris.synthetic.expressions import (
    ADJECTIVES,
    LOCATION_PREFIX,
    NOUNS,
    RELATION_PHRASES,
    expression_count,
    location_word,
    minimal_description,
    referring_expressions,
    relation,
    web_captions,
)
from ris.synthetic.scene import Scene, SceneObject, make_scene
from ris.synthetic.vocabulary import world_tokenizer

LOCATION_WORDS = set(LOCATION_PREFIX)


def thing(i, category, color="red", size="big", pattern="plain", at=(10, 10)):
    x, y = at
    return SceneObject(i, category, color, size, pattern, (), np.zeros((1, 1), bool), (x - 2.0, y - 2.0, 4.0, 4.0))


def scene(*objects):
    return Scene(np.zeros((64, 64, 3), np.uint8), list(objects))


def random_scenes(domain, count):
    return [make_scene(np.random.default_rng([11, i]), domain, 64) for i in range(count)]


def true_words(obj):
    """Every adjective/noun that is true of ``obj``."""
    words = set(NOUNS[obj.category]) | {obj.color}
    for value in (obj.size, obj.pattern):
        words |= set(ADJECTIVES[value])
    return words


def test_a_unique_category_is_named_alone():
    s = scene(thing(0, "circle"), thing(1, "square", color="red"))
    assert minimal_description(s, s.objects[1], allow_location=True) == ([], None)
    for e in referring_expressions(s, s.objects[1], "refcoco", np.random.default_rng(0)):
        words = e.text.split()
        assert words[-1] in ("square", "box")
        assert e.category == "square"


def test_the_attribute_ruling_out_most_distractors_comes_first():
    target = thing(0, "circle", color="red", size="big")
    s = scene(
        target,
        thing(1, "circle", color="red", size="small"),
        thing(2, "circle", color="blue", size="big"),
        thing(3, "circle", color="green", size="big"),
        thing(4, "square", color="red", size="big"),
    )
    # colour rules out 2 circles, size 1: colour first, then size for the remaining small red circle.
    assert minimal_description(s, target, allow_location=True) == (["color", "size"], None)
    first = referring_expressions(s, target, "refcoco", np.random.default_rng(1))[0]
    assert "red" in first.text.split() and {"big", "large"} & set(first.text.split())
    assert first.location is None


def test_location_comes_last_and_never_in_refcoco_plus():
    left, right = thing(0, "star", at=(5, 30)), thing(1, "star", at=(50, 32))
    s = scene(left, right)
    assert minimal_description(s, left, allow_location=True) == ([], "left")
    assert minimal_description(s, right, allow_location=True) == ([], "right")
    assert minimal_description(s, left, allow_location=False) == ([], None)
    for seed in range(10):
        for e in referring_expressions(s, left, "refcoco", np.random.default_rng(seed)):
            assert "left" in e.text.split() and e.location == "left"
        for e in referring_expressions(s, left, "refcoco+", np.random.default_rng(seed)):
            assert not LOCATION_WORDS & set(e.text.split())
        for e in referring_expressions(s, left, "phrasecut", np.random.default_rng(seed)):
            assert e.text.endswith("on left side") and e.type == "verbose"


def test_location_words_pick_the_clearer_axis_and_the_middle():
    a, b, c = thing(0, "ring", at=(10, 10)), thing(1, "ring", at=(30, 12)), thing(2, "ring", at=(50, 11))
    assert location_word(b, [a, c]) == "middle"
    top, bottom = thing(0, "ring", at=(20, 5)), thing(1, "ring", at=(24, 50))
    assert location_word(top, [bottom]) == "top"  # the vertical gap (45) beats the horizontal one (4)


def adjective_values(words):
    """Canonical attribute values named by adjectives (``large`` -> ``big``)."""
    synonyms = {w: value for value, options in ADJECTIVES.items() for w in options}
    return {synonyms.get(w, w) for w in words}


def holds_location(obj, others, location):
    """Whether ``location`` is true of ``obj`` against ``others`` by a visible gap (the listener's reading)."""
    if not others:
        return True  # the adjectives already singled the object out; the location is redundant, never false
    x, y = obj.center
    gap = max(2.0, 0.25 * max(obj.bbox[2], obj.bbox[3]))
    xs, ys = [o.center[0] for o in others], [o.center[1] for o in others]
    return {
        "left": x <= min(xs) - gap, "right": x >= max(xs) + gap, "top": y <= min(ys) - gap,
        "bottom": y >= max(ys) + gap, "middle": len(others) == 2 and min(xs) < x < max(xs),
    }[location]


def resolve(s, e):
    """The objects of ``s`` a listener can take ``e`` to mean: its category, every adjective true, the location true
    against the other remaining candidates."""
    values = adjective_values(e.attributes)
    candidates = [o for o in s.objects if o.category == e.category and values <= {o.color, o.size, o.pattern}]
    if e.location is not None:
        candidates = [c for c in candidates if holds_location(c, [o for o in candidates if o is not c], e.location)]
    return candidates


@pytest.mark.parametrize("style", ["refcoco", "refcoco+", "refcocog", "phrasecut"])
def test_expressions_are_true_and_distinguishing(style):
    domain = "B" if style == "phrasecut" else "A"
    for s in random_scenes(domain, 40):
        objects = s.objects if style == "phrasecut" else s.referred
        for obj in objects:
            expressions = referring_expressions(s, obj, style, np.random.default_rng(obj.id))
            assert 1 <= len(expressions) <= 4
            assert len({e.text for e in expressions}) == len(expressions)
            for e in expressions:
                assert set(e.attributes) <= true_words(obj)
                words = set(e.text.split())
                assert words & set(NOUNS[obj.category])
                assert resolve(s, e) == [obj], e.text
                if style == "phrasecut":
                    assert "the" not in words
                if style == "refcoco+":
                    assert not LOCATION_WORDS & words and e.location is None
                if e.relation is not None:
                    assert style == "refcocog"
                    other = s.objects[e.relatum]
                    assert other is not obj and relation(obj, other, s) == e.relation
                    assert any(p in e.text for p in RELATION_PHRASES[e.relation])
                    assert e.text.split()[-1] in NOUNS[other.category]


def test_each_style_speaks_as_its_dataset():
    """Location words in a realistic share of RefCOCO-style expressions (RefCOCO is known for positional cues), none in
    RefCOCO+; RefCOCOg-style ones are long and mostly relate the object to another; lengths near 3.5 and 8.4 words."""
    texts = {style: [] for style in ("refcoco", "refcoco+", "refcocog")}
    for s in random_scenes("A", 80):
        for obj in s.referred:
            for style, out in texts.items():
                out += referring_expressions(s, obj, style, np.random.default_rng([obj.id, len(out)]))
    location = {style: np.mean([e.location is not None for e in es]) for style, es in texts.items()}
    words = {style: np.mean([len(e.text.split()) for e in es]) for style, es in texts.items()}
    assert 0.3 <= location["refcoco"] <= 0.7 and location["refcoco+"] == 0
    assert np.mean([e.relation is not None for e in texts["refcocog"]]) >= 0.6
    assert not any(e.relation for style in ("refcoco", "refcoco+") for e in texts[style])
    assert 3.0 <= words["refcoco"] <= 4.0
    assert 7.0 <= words["refcocog"] <= 10.0
    assert words["refcoco+"] < words["refcoco"] < words["refcocog"]


def test_relations_read_the_geometry():
    s = scene(thing(0, "circle", at=(10, 30)), thing(1, "star", at=(50, 32)), thing(2, "ring", at=(12, 60)),
              thing(3, "heart", at=(11, 31)))
    a, star, ring, heart = s.objects
    assert relation(a, star, s) == "left" and relation(star, a, s) == "right"
    assert relation(a, ring, s) == "above" and relation(ring, a, s) == "below"
    assert relation(a, heart, s) == "near"  # within the visible gap on both axes, and close
    far = scene(thing(0, "circle", at=(10, 10)), thing(1, "star", at=(11, 11)))
    assert relation(*far.objects, far) == "near"


def test_expression_counts_follow_the_datasets():
    rng = np.random.default_rng(0)
    means = {style: np.mean([expression_count(style, rng) for _ in range(2000)]) for style in ("refcoco", "refcocog")}
    assert means["refcoco"] == pytest.approx(2.84, abs=0.1)  # RefCOCO: 142,210 expressions / 50,000 objects
    assert means["refcocog"] == pytest.approx(1.9, abs=0.05)


def test_web_captions_are_true_but_ignore_the_distractors():
    alone = scene(thing(0, "heart", color="pink", size="small", pattern="striped", at=(8, 8)),
                  thing(1, "heart", color="blue", at=(55, 55)))
    captions = web_captions(alone, alone.objects[0], np.random.default_rng(0), n=40)
    assert len(captions) == 40
    allowed = true_words(alone.objects[0]) | {"a", "photo", "of", "shape"}
    for caption in captions:
        assert set(caption.split()) <= allowed  # the far-away heart is never mentioned
    assert any(c.split()[-1] == "heart" and len(c.split()) <= 2 for c in captions)  # often not distinctive
    close = scene(thing(0, "circle", at=(20, 20)), thing(1, "square", color="blue", at=(24, 22)))
    mentions = [c for c in web_captions(close, close.objects[0], np.random.default_rng(1), n=60)
                if {"next", "near", "with"} & set(c.split())]
    assert 5 <= len(mentions) <= 40


def test_articles_agree():
    s = scene(thing(0, "arrow", color="orange"))
    for caption in web_captions(s, s.objects[0], np.random.default_rng(2), n=50):
        words = caption.split()
        for article, nxt in itertools.pairwise(words):
            if article in ("a", "an") and nxt not in ("photo",):
                assert (article == "an") == (nxt[0] in "aeiou"), caption


def test_unknown_style_is_rejected():
    s = scene(thing(0, "circle"))
    with pytest.raises(ValueError, match="unknown expression style 'refclef'"):
        referring_expressions(s, s.objects[0], "refclef")


def test_world_tokenizer_covers_everything_the_world_says():
    tokenizer = world_tokenizer()
    assert tokenizer == world_tokenizer()
    assert tokenizer.encode("a photo of a circle") == [4, 7, 8, 4, 9]
    rng = np.random.default_rng(3)
    for domain, style in (("A", "refcoco"), ("A", "refcoco+"), ("A", "refcocog"), ("B", "phrasecut")):
        for s in random_scenes(domain, 40):
            for obj in s.objects:
                texts = [e.text for e in referring_expressions(s, obj, style, rng)] + web_captions(s, obj, rng, 3)
                for text in texts:
                    assert tokenizer.unk_id not in tokenizer.encode(text), text
                    assert tokenizer.decode(tokenizer.encode(text)) == text
