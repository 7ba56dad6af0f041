"""``ris export``: pseudo-label shards → refer format, read back by RefCOCODataModule and by refer-API logic."""

import base64
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from ris.cli import main as ris_main
from ris.datamodules import RefCOCODataModule, RefCOCOSet
from ris.letterbox import letterbox_mask
from ris.pseudo.caption_choice import eligible_captions
from ris.pseudo.export import INSTANCES_FILE, REFS_FILE, export_shards, kept_captions, sentence_words
from ris.pseudo.generate_command import run
from ris.pseudo.records import PseudoRecord, mask_box, mask_to_rle
from ris.pseudo.shards import ImageResult, ShardSet, ShardWriter, merge_manifests
from ris.tokenizer import WordTokenizer
from tests.pseudo_generate_world import ImageSpec, gt_args, make_zoo, three_boxes, write_images

TOKENIZER = WordTokenizer(["a", "the", "red", "blue", "big", "circle", "square", "star", "shape", "dog"])


def _record(image_id, k, mask, captions, dos, one_mask=False, image_bytes=None, image=None) -> PseudoRecord:
    n = len(captions)
    return PseudoRecord(
        sample_id=f"{image_id}:{k}", image_id=image_id, image=image or f"{image_id}.png", height=mask.shape[0],
        width=mask.shape[1], mask_index=k, mask=mask_to_rle(mask), box=mask_box(mask), area=int(mask.sum()),
        num_masks=1 if one_mask else 2, one_mask=one_mask, contrast=not one_mask, captions=captions,
        sampler=["top_k=5"] * n, crop=[0] * n, dos=dos, uos=[None] * n, cos=[None] * n, generator="",
        image_bytes=image_bytes,
    )


def _refer_get_mask(annotation: dict, image: dict) -> np.ndarray:
    """What the refer API's getMask computes for a non-polygon segmentation: decode, sum over the last axis."""
    segmentation = annotation["segmentation"]
    assert not isinstance(segmentation[0], list)  # refer takes the RLE branch only when segmentation[0] is no list
    decoded = mask_utils.decode(segmentation)
    assert decoded.shape == (image["height"], image["width"], len(segmentation))
    return decoded.sum(axis=2).astype(np.uint8)


@pytest.fixture
def shards(tmp_path):
    """Images "7" (24x32, two masks, one of them with every caption below tau) and "12" (one mask, embedded)."""
    images = tmp_path / "images" / "sub"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(images / "seven.png")
    twelve = tmp_path / "twelve.png"
    Image.fromarray(rng.integers(0, 255, (16, 20, 3), dtype=np.uint8)).save(twelve)
    a = np.zeros((24, 32), bool)
    a[2:10, 4:20] = True
    b = np.zeros((24, 32), bool)
    b[12:22, 1:9] = True
    c = np.zeros((16, 20), bool)
    c[3:9, 5:15] = True
    results = [
        ImageResult("7", [
            _record("7", 0, a, ["a red circle ", "A red circle", "the star !", " ", "!!", "a dog"],
                    [1.5, 1.4, 2.0, 3.0, 5.0, 0.2], image="sub/seven.png"),
            _record("7", 1, b, ["a big shape", "a shape", "the square"], [0.1, 0.9, 0.3], image="sub/seven.png"),
        ]),
        ImageResult("12", [_record("12", 0, c, ["a", "b c", "d", "e", "f"], [5.0, 4.0, 3.0, 2.0, 1.0], one_mask=True,
                                   image_bytes=base64.b64encode(twelve.read_bytes()).decode("ascii"))]),
    ]
    writer = ShardWriter(tmp_path / "shards", 0, {"test": True}, images_per_shard=1, tau=1.3,
                         image_root=str(tmp_path / "images"))
    for result in results:
        writer.add(result)
    writer.flush()
    merge_manifests(tmp_path / "shards")
    return tmp_path / "shards", {"7:0": a, "7:1": b, "12:0": c}


def _load(out: Path, dataset: str = "refcoco"):
    refs = pickle.loads((out / dataset / REFS_FILE).read_bytes())
    instances = json.loads((out / dataset / INSTANCES_FILE).read_text())
    return refs, instances


def test_sentences_follow_the_training_rule_for_each_fallback(shards, tmp_path):
    path, _ = shards
    expected = {
        # 7:0 has DoS > 1.3 at 0, 1, 2, 3, 4; 3 (" ") is empty and never eligible, 4 ("!!") has no word
        "any": {"7:0": ["a red circle", "a red circle", "the star"], "7:1": ["a big shape", "a shape", "the square"],
                "12:0": ["a", "b c"]},
        "best": {"7:0": ["a red circle", "a red circle", "the star"], "7:1": ["a shape"], "12:0": ["a", "b c"]},
        "none": {"7:0": ["a red circle", "a red circle", "the star"], "12:0": ["a", "b c"]},
    }
    for fallback, sentences in expected.items():
        out = tmp_path / f"out_{fallback}"
        summary = export_shards(path, out, fallback=fallback, progress=False)
        refs, instances = _load(out)
        got = {r["pseudo_ris_sample_id"]: [s["sent"] for s in r["sentences"]] for r in refs}
        assert got == sentences, fallback
        assert summary.captions_without_words == 1  # "!!"
        assert summary.refs == len(refs) == len(instances["annotations"])
        assert summary.dropped == ({"no_kept_caption": 1} if fallback == "none" else {})
        # the raw text is the stripped caption; sentence ids are unique and listed in sent_ids
        raw = {r["pseudo_ris_sample_id"]: [s["raw"] for s in r["sentences"]] for r in refs}
        assert raw["7:0"] == ["a red circle", "A red circle", "the star !"]
        ids = [s["sent_id"] for r in refs for s in r["sentences"]]
        assert len(set(ids)) == len(ids) and all(r["sent_ids"] == [s["sent_id"] for s in r["sentences"]] for r in refs)


def test_kept_captions_are_the_training_draws():
    mask = np.ones((4, 4), bool)
    several = _record("1", 0, mask, ["a", "b", "c"], [0.5, 2.0, None])
    one = _record("1", 0, mask, ["a", "b", "c", "d"], [1.0, 4.0, 3.0, 2.0], one_mask=True)
    for record in (several, one):
        for fallback in ("any", "best"):
            assert kept_captions(record, 1.3, fallback) == eligible_captions(record, 1.3, fallback)
    assert kept_captions(one, 1.3, "none") == [1, 2]
    assert kept_captions(_record("1", 0, mask, ["a", "b"], [0.5, 0.2]), 1.3, "none") == []
    assert sentence_words("A dog , running ! ") == ["a", "dog", "running"]


def test_masks_images_and_ids_are_refer_api_compatible(shards, tmp_path):
    path, masks = shards
    out = tmp_path / "out"
    export_shards(path, out, progress=False)
    refs, instances = _load(out)
    images = {im["id"]: im for im in instances["images"]}
    annotations = {a["id"]: a for a in instances["annotations"]}
    assert sorted(images) == [7, 12]  # integer record ids are kept
    assert instances["categories"] == [{"id": 1, "name": "object", "supercategory": "object"}]
    for ref in refs:
        annotation, image = annotations[ref["ann_id"]], images[ref["image_id"]]
        expected = masks[ref["pseudo_ris_sample_id"]]
        assert np.array_equal(_refer_get_mask(annotation, image).astype(bool), expected)
        ys, xs = np.nonzero(expected)
        assert annotation["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert annotation["area"] == expected.sum() and annotation["iscrowd"] == 0
        assert ref["split"] == "train" and ref["category_id"] == 1
    # referenced by absolute path; the embedded image is written into the refer image folder
    assert images[7]["file_name"] == str((tmp_path / "images" / "sub" / "seven.png").resolve())
    assert images[12]["file_name"] == "12.png"
    written = out / "images" / "mscoco" / "images" / "train2014" / "12.png"
    assert np.array(Image.open(written)).shape == (16, 20, 3)
    export = json.loads((out / "refcoco" / "export.json").read_text())
    assert export["split_by"] == "pseudo" and export["tau"] == 1.3 and export["summary"]["images_copied"] == 1


def test_copied_images_string_ids_and_coco_segmentation(shards, tmp_path):
    path, masks = shards
    out = tmp_path / "out"
    manifest = json.loads((path / "manifest.json").read_text())
    for shard in manifest["shards"]:  # make the ids non-integer: they are then numbered in shard order
        file = path / shard["file"]
        file.write_text(file.read_text().replace('"image_id":"7"', '"image_id":"seven"'))
    ShardSet(path)  # still a valid folder (the manifest's checksums are not verified by export)
    export_shards(path, out, dataset="my_pseudo", copy_images=True, segmentation="coco", progress=False)
    refs, instances = _load(out, "my_pseudo")
    images = {im["pseudo_ris_image_id"]: im for im in instances["images"]}
    assert {k: v["id"] for k, v in images.items()} == {"seven": 1, "12": 2}
    assert images["seven"]["file_name"] == "sub/seven.png"
    assert (out / "images" / "mscoco" / "images" / "train2014" / "sub" / "seven.png").is_file()
    segmentation = instances["annotations"][0]["segmentation"]
    assert isinstance(segmentation, dict) and isinstance(segmentation["counts"], str)
    # our reader takes both forms
    dm = RefCOCODataModule(data_root=str(out), dataset="my_pseudo", split_by="pseudo", tokenizer=TOKENIZER,
                           input_size=32, word_length=6)
    dm.setup("fit")
    assert len(dm.train_dataset) == 3


def test_existing_datasets_are_never_overwritten(shards, tmp_path):
    path, _ = shards
    real = tmp_path / "data" / "refcoco"
    real.mkdir(parents=True)
    (real / INSTANCES_FILE).write_text("{}")
    with pytest.raises(FileExistsError, match="not written by `ris export`"):
        export_shards(path, tmp_path / "data", progress=False)
    assert (real / INSTANCES_FILE).read_text() == "{}"
    out = tmp_path / "out"
    export_shards(path, out, progress=False)
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_shards(path, out, progress=False)
    export_shards(path, out, overwrite=True, tau=10.0, progress=False)
    assert json.loads((out / "refcoco" / "export.json").read_text())["tau"] == 10.0


def test_pseudo_partition_validation_stays_strict_for_real_datasets():
    RefCOCOSet("anything", "root", "train", "pseudo")
    with pytest.raises(ValueError, match="unknown refer dataset 'anything'"):
        RefCOCOSet("anything", "root", "train", "unc")
    with pytest.raises(ValueError, match="refcoco\\+ has no 'google' partition"):
        RefCOCOSet("refcoco+", "root", "val", "google")
    with pytest.raises(ValueError, match="folder name"):
        RefCOCOSet("../x", "root", "train", "pseudo")
    dm = RefCOCODataModule(data_root="root", dataset="mine", split_by="pseudo")
    assert dm.eval_set_names("validate") == [] and dm.eval_set_names("test") == []


def test_round_trip_generate_export_refcoco_datamodule(tmp_path, one_thread):
    """Generate on a tiny world, export with `ris export`, read with RefCOCODataModule: same masks, expected
    sentences."""
    zoo = make_zoo(tmp_path / "zoo")
    images = tmp_path / "images"
    annotations = write_images(images, [ImageSpec(f"img{i}", three_boxes()[: 1 + i]) for i in range(3)])
    run(gt_args(zoo, images, annotations, tmp_path / "shards", "--model.tau", "1.0"))
    records = {r.sample_id: r for r in ShardSet(tmp_path / "shards")}
    assert len(records) == 6

    out = tmp_path / "refer"
    assert ris_main(["export", str(tmp_path / "shards"), "--out", str(out), "--dataset", "pseudo_world"]) == 0
    refs, _ = _load(out, "pseudo_world")
    dm = RefCOCODataModule(data_root=str(out), dataset="pseudo_world", split_by="pseudo", tokenizer=TOKENIZER,
                           input_size=64, word_length=8)
    dm.setup("fit")
    dataset = dm.train_dataset
    kept = {sid: kept_captions(r, 1.0, "any") for sid, r in records.items()}
    exported = {sid for sid, k in kept.items() if any(sentence_words(records[sid].captions[i]) for i in k)}
    assert len(dataset) == len(refs) == len(exported) > 0
    by_ref = {str(r["ref_id"]): r["pseudo_ris_sample_id"] for r in refs}
    for item in dataset.items:
        record = records[by_ref[item.sample_id]]
        expected = [" ".join(sentence_words(record.captions[i])) for i in kept[record.sample_id]]
        assert [s.text for s in item.sentences] == [e for e in expected if e]
        assert np.array_equal(item.region.rasterise(record.height, record.width), record.decode_mask())
    for index in range(len(dataset)):
        sample = dataset[index]
        record = records[by_ref[sample.sample_id]]
        mask = torch.from_numpy(record.decode_mask())
        assert torch.equal(sample.mask, letterbox_mask(mask, sample.affine, 64))
        assert sample.text in [s.text for s in dataset.items[index].sentences]
