import pytest

from ris.synthetic.statistics import has_location_word, relation_span, style_statistics


@pytest.mark.parametrize(("text", "relation", "location"), [
    ("the red circle to the left of the blue star", (3, 7), False),
    ("a red circle left of the blue star", (3, 5), False),
    ("the big square below the small heart", (3, 4), False),
    ("red circle on the left", None, True),
    ("top box", None, True),
    ("the left square next to the ring", (3, 5), True),
    ("striped blue disk", None, False),
])
def test_relations_and_location_words_are_read_from_the_tokens(text, relation, location):
    tokens = text.split()
    assert relation_span(tokens) == relation
    assert has_location_word(tokens) is location


def test_style_statistics_count_per_object_and_split():
    def ref(split, image_id, *texts):
        return {"split": split, "image_id": image_id, "sentences": [{"tokens": t.split()} for t in texts]}

    refs = [ref("train", 1, "left circle", "the red circle"), ref("train", 1, "circle next to the star"),
            ref("val", 2, "big box")]
    stats = style_statistics(refs)
    assert (stats.refs, stats.sentences) == (3, 4)
    assert stats.words == pytest.approx((2 + 3 + 5 + 2) / 4)
    assert stats.location_share == 0.25 and stats.relation_share == 0.25
    assert stats.per_object == pytest.approx(4 / 3)
    assert stats.split_refs == {"train": 2, "val": 1, "test": 0}
    assert stats.split_images == {"train": 1, "val": 1, "test": 0}
