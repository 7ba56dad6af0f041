import itertools

import numpy as np
import pytest

from ris.synthetic.expressions import (
    ADJECTIVES,
    LOCATION_PREFIX,
    NOUNS,
    location_word,
    minimal_description,
    referring_expressions,
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


@pytest.mark.parametrize("style", ["refcoco", "refcoco+", "phrasecut"])
def test_expressions_are_true_and_distinguishing(style):
    for s in random_scenes("A" if style != "phrasecut" else "B", 40):
        for obj in s.objects:
            expressions = referring_expressions(s, obj, style, np.random.default_rng(obj.id))
            assert 1 <= len(expressions) <= 3
            assert len({e.text for e in expressions}) == len(expressions)
            for e in expressions:
                assert set(e.attributes) <= true_words(obj)
                words = set(e.text.split())
                assert words & set(NOUNS[obj.category])
                if style == "phrasecut":
                    assert "the" not in words
                if style == "refcoco+":
                    assert not LOCATION_WORDS & words
            attributes, location = minimal_description(s, obj, allow_location=style != "refcoco+")
            matching = [o for o in s.objects if o.category == obj.category
                        and all(getattr(o, a) == getattr(obj, a) for a in attributes)]
            if location is not None:
                assert location_word(obj, [o for o in matching if o.id != obj.id]) == location
            elif len(matching) > 1:
                # Still ambiguous only if no attribute can tell the rest apart and no location is allowed/decisive.
                others = [o for o in matching if o.id != obj.id]
                assert all((o.color, o.size, o.pattern) == (obj.color, obj.size, obj.pattern) for o in others)


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
    for domain, style in (("A", "refcoco"), ("A", "refcoco+"), ("B", "phrasecut")):
        for s in random_scenes(domain, 40):
            for obj in s.objects:
                texts = [e.text for e in referring_expressions(s, obj, style, rng)] + web_captions(s, obj, rng, 3)
                for text in texts:
                    assert tokenizer.unk_id not in tokenizer.encode(text), text
                    assert tokenizer.decode(tokenizer.encode(text)) == text
