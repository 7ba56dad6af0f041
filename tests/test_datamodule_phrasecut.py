import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ris.datamodules import PhraseCutDataModule, PhraseCutSet, RefCOCOSet
from ris.formats.phrasecut import COCO_CLASSES
from ris.tokenizer import WordTokenizer

ROOT = Path(__file__).parent / "data" / "phrasecut"
TOKENIZER = WordTokenizer(["red", "hexagon", "people", "white", "car", "sky", "tv"])


def tasks(split):
    return json.loads((ROOT / f"refer_{split}.json").read_text())


def module(**kwargs):
    defaults = {"data_root": str(ROOT), "tokenizer": TOKENIZER, "input_size": 48, "batch_size": 2}
    return PhraseCutDataModule(**{**defaults, **kwargs})


def official_mask(task, width, height):
    """PhraseCut's ``polygons_to_mask`` over all instances, re-implemented from its description."""
    total = np.zeros((height, width))
    for polygon in [p for instance in task["Polygons"] for p in instance]:
        if len(polygon) < 2:
            continue
        canvas = Image.new("L", (width, height), 0)
        ImageDraw.Draw(canvas).polygon([(int(x), int(y)) for x, y in polygon], outline=1, fill=1)
        total += np.array(canvas)
    return total > 0


def samples(ds):
    return [ds[i] for i in range(len(ds))]


def test_coco_class_list():
    assert len(COCO_CLASSES) == len(set(COCO_CLASSES)) == 80
    assert {"person", "dining table", "tv", "donut"} <= set(COCO_CLASSES)
    assert not {"people", "television", "sofa"} & set(COCO_CLASSES)


def test_masks_equal_the_official_pil_rasterisation():
    dm = module(val_splits=["train", "val", "miniv", "test"])
    dm.setup("validate")
    sizes = {i["image_id"]: (i["width"], i["height"]) for i in json.loads((ROOT / "image_data_split.json").read_text())}
    checked = 0
    for split, ds in zip(("train", "val", "miniv", "test"), dm.eval_datasets["validate"]):
        by_id = {t["task_id"]: t for t in tasks(split)}
        for sample in samples(ds):
            task = by_id[sample.sample_id]
            expected = official_mask(task, *sizes[task["image_id"]])
            assert sample.orig_size == expected.shape
            assert torch.equal(sample.gt_mask, torch.from_numpy(expected))
            assert int(sample.gt_mask.sum()) == int(expected.sum())
            checked += 1
    assert checked == 9
    by_id = {s.sample_id: s for s in samples(dm.eval_datasets["validate"][0])}
    table = by_id["12__1201_1202"].gt_mask  # two instances: the union of both rectangles (outline included)
    assert int(table.sum()) == 14 * 11 + 14 * 16
    wire = by_id["12__1203"].gt_mask  # a 2-point polygon is drawn as a line
    assert int(wire.sum()) == 26 and bool(wire[30, 5:31].all())
    person = by_id["11__1101"].gt_mask  # float coordinates are truncated, not rounded
    assert bool(person[2, 3]) and not bool(person[2, 2])


def test_combined_splits_concatenate_their_files():
    dm = module(val_splits=["val_miniv", "val"])
    dm.setup("validate")
    combined, val = dm.eval_datasets["validate"]
    assert dm.eval_set_names("validate") == ["phrasecut/val_miniv", "phrasecut/val"]
    assert [s.sample_id for s in samples(combined)] == [t["task_id"] for t in tasks("val") + tasks("miniv")]
    assert len(val) == 2


def test_one_point_polygons_are_ignored_like_the_official_rasteriser_and_logged(caplog):
    with caplog.at_level(logging.WARNING):
        items, problems = PhraseCutSet("phrasecut", str(ROOT), "val").read()
    assert not problems and len(items) == 2
    assert "ignored 1 polygons with fewer than 2 points" in caplog.text
    assert "task 13__1301 instance 0 polygon 1" in caplog.text


@pytest.mark.parametrize(
    "category_filter, expected",
    [
        ("all", ["11__1101", "11__1101-b", "12__1201_1202", "12__1203", "13__1301", "13__1302", "14__1401",
                 "15__1501", "15__1502"]),
        ("coco", ["11__1101", "11__1101-b", "12__1201_1202", "14__1401", "15__1502"]),
        ("non_coco", ["12__1203", "13__1301", "13__1302", "15__1501"]),
    ],
)
def test_category_filter_uses_exact_coco_names(category_filter, expected):
    dm = module(category_filter=category_filter, val_splits=["train_val_miniv_test"])
    dm.setup("validate")
    (ds,) = dm.eval_datasets["validate"]
    assert [s.sample_id for s in samples(ds)] == expected
    suffix = "" if category_filter == "all" else f"-{category_filter}"
    assert dm.eval_set_names("validate") == [f"phrasecut{suffix}/train_val_miniv_test"]
    assert {s.dataset for s in samples(ds)} == {f"phrasecut{suffix}"}


def test_custom_seen_categories():
    dm = module(category_filter="coco", seen_categories=["people", "sky"], val_splits=["val_test"])
    dm.setup("validate")
    assert [s.sample_id for s in samples(dm.eval_datasets["validate"][0])] == ["13__1302", "15__1501"]


def test_train_unit_groups_tasks_of_the_same_region():
    per_region = module()
    per_region.setup("fit")
    assert len(per_region.train_dataset) == 3  # "standing person" and "person" describe one region
    person = next(item for item in per_region.train_dataset.items if item.sample_id == "11__1101")
    assert [s.text for s in person.sentences] == ["standing person", "person"]
    per_sentence = module(train_unit="sentence")
    per_sentence.setup("fit")
    assert len(per_sentence.train_dataset) == 4
    batch = next(iter(per_sentence.train_dataloader()))
    assert batch.gt_masks is None and batch.image.shape == (2, 3, 48, 48)


def test_eval_sets_from_several_datasets_in_one_module():
    refer = Path(__file__).parent / "data" / "refer"
    dm = module(test_splits=["test"], test_sets=[RefCOCOSet("refcoco", str(refer), "val"),
                                                 PhraseCutSet("phrasecut", str(ROOT), "test", "non_coco")])
    assert dm.eval_set_names("test") == ["phrasecut/test", "refcoco/val", "phrasecut-non_coco/test"]
    dm.setup("test")
    assert [len(d) for d in dm.eval_datasets["test"]] == [2, 2, 1]
    loaders = dm.test_dataloader()
    assert [next(iter(loader)).dataset[0] for loader in loaders] == ["phrasecut", "refcoco", "phrasecut-non_coco"]
    duplicate = module(test_splits=["test"], test_sets=[PhraseCutSet("phrasecut", str(ROOT), "test")])
    with pytest.raises(ValueError, match=r"duplicate names \['phrasecut/test'\]; give them distinct `name`s"):
        duplicate.eval_set_names("test")
