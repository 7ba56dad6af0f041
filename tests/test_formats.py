"""The data-format layer (``ris.formats``) is the one reader behind the datamodules and the generator."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from ris.formats.files import load_rgb
from ris.formats.phrasecut import read_phrasecut
from ris.formats.refer import load_refs, read_refer, refer_files
from ris.pseudo.images import ImageEntry, ReferImages
from ris.pseudo.masks import GroundTruthMaskSource

DATA = Path(__file__).parent / "data"
REFER = DATA / "refer"
PHRASECUT = DATA / "phrasecut"


def test_python2_refs_pickle_is_what_a_plain_load_cannot_read():
    refs_path, _ = refer_files(REFER, "refcoco", "unc")
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(refs_path.read_bytes())
    assert [r["ref_id"] for r in load_refs(refs_path)] == list(range(1, 10))


def test_refer_images_list_the_images_of_the_python2_pickle():
    names = {i: f"COCO_train2014_{i:012d}.jpg" for i in range(1, 7)} | {3: "COCO_train2014_000000000003.png"}
    source = ReferImages(REFER, dataset="refcoco", split_by="unc", split="train")
    assert source.entries() == [ImageEntry(str(i), names[i]) for i in (1, 2, 3)]
    # the refer API's split rule, as in the datamodules: "test" matches testA and testB
    assert ReferImages(REFER, dataset="refcoco", split="test").entries() == [
        ImageEntry("5", names[5]), ImageEntry("6", names[6])]
    assert ReferImages(REFER, dataset="refcoco", split="testB").entries() == [ImageEntry("6", names[6])]


def test_refer_images_and_datamodule_items_agree_on_every_split():
    for split in ("train", "val", "test", "testA", "testB"):
        items, problems = read_refer(REFER, "refcoco", "unc", split)
        assert items and not problems
        listed = [int(e.image_id) for e in ReferImages(REFER, dataset="refcoco", split=split).entries()]
        assert listed == sorted({item.image_id for item in items}), split


def test_gt_masks_equal_the_datamodule_masks_refer():
    source = GroundTruthMaskSource(REFER / "refcoco" / "instances.json")
    items, _ = read_refer(REFER, "refcoco", "unc", "train")
    items += read_refer(REFER, "refcoco", "unc", "val")[0] + read_refer(REFER, "refcoco", "unc", "test")[0]
    assert len(items) >= 6
    for item in items:
        image = load_rgb(item.image_path)
        expected = item.region.rasterise(*image.shape[:2])
        candidates = source(image, str(item.image_id))
        assert any(np.array_equal(expected, mask) for mask in candidates), item.name


def test_gt_masks_equal_the_datamodule_masks_phrasecut():
    source = GroundTruthMaskSource(PHRASECUT / "refer_train.json")
    items, _ = read_phrasecut(PHRASECUT, "train")
    assert items
    for item in items:
        image = load_rgb(item.image_path)
        expected = item.region.rasterise(*image.shape[:2])
        inside = [mask for mask in source(image, str(item.image_id)) if not (mask & ~expected).any()]
        assert np.array_equal(np.logical_or.reduce(inside), expected), item.name  # the task's instances, unioned
