import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from ris.cli import main
from ris.datamodules import PhraseCutDataModule, RefCOCODataModule
from ris.synthetic.expressions import LOCATION_PREFIX
from ris.synthetic.scene import CATEGORIES
from ris.synthetic.statistics import world_statistics
from ris.synthetic.vocabulary import world_tokenizer
from ris.synthetic.world import (
    FORMAT_VERSION,
    REFER_DATASETS,
    WorldSettings,
    iter_scenes,
    read_attributes,
    read_settings,
    write_world,
)

TINY = {"image_size": 64, "n_train": 4, "n_val": 3, "n_test": 2, "n_b_train": 2, "n_b_val": 3, "n_b_test": 2}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return write_world(tmp_path_factory.mktemp("world") / "w", seed=3, **TINY)


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(world, tmp_path):
    again = write_world(tmp_path / "again", seed=3, **TINY)
    assert files(again.root) == files(world.root)
    other = write_world(tmp_path / "other", seed=4, **TINY)
    assert other.refcoco.joinpath("refs(unc).p").read_bytes() != world.refcoco.joinpath("refs(unc).p").read_bytes()


def test_rerun_is_a_no_op_and_other_settings_are_refused(world):
    before = {p: p.stat().st_mtime_ns for p in world.root.rglob("*") if p.is_file()}
    write_world(world.root, seed=3, **TINY)
    assert {p: p.stat().st_mtime_ns for p in world.root.rglob("*") if p.is_file()} == before
    with pytest.raises(ValueError, match="world.json: a world with different settings exists"):
        write_world(world.root, seed=3, **{**TINY, "n_train": 5})


def test_world_json_records_settings_and_counts(world):
    settings = read_settings(world.root)
    assert settings == WorldSettings(seed=3, **TINY)
    counts = json.loads(world.settings.read_text())["counts"]
    assert {split: c["images"] for split, c in counts["A"].items()} == {"train": 4, "val": 3, "test": 2}
    assert {split: c["images"] for split, c in counts["B"].items()} == {"train": 2, "val": 3, "test": 2}
    instances = json.loads((world.refcoco / "instances.json").read_text())
    assert sum(c["refs"] + c["clutter"] for c in counts["A"].values()) == len(instances["annotations"])


def test_a_world_of_another_version_is_refused_not_reused(world, tmp_path):
    old = tmp_path / "old"
    (old / "world.json").parent.mkdir()
    content = json.loads(world.settings.read_text())
    (old / "world.json").write_text(json.dumps({**content, "format": FORMAT_VERSION - 1}))
    with pytest.raises(ValueError, match=r"world.json: written by another version of the synthetic world \(format 1"):
        write_world(old, seed=3, **TINY)
    (old / "attributes.json").write_text(json.dumps({"format": FORMAT_VERSION - 1, "objects": []}))
    with pytest.raises(ValueError, match="attributes.json: written by another version"):
        read_attributes(old / "attributes.json")


def test_refer_files(world):
    instances = json.loads((world.refcoco / "instances.json").read_text())
    assert (world.refcoco_plus / "instances.json").read_text() == (world.refcoco / "instances.json").read_text()
    assert (world.refcocog / "instances.json").read_text() == (world.refcoco / "instances.json").read_text()
    assert [c["name"] for c in instances["categories"]] == list(CATEGORIES["A"])
    assert len(instances["images"]) == 9
    for image in instances["images"]:
        assert (world.image_dir / image["file_name"]).is_file()
        assert image["file_name"] == f"COCO_train2014_{image['id']:012d}.jpg"
    annotations = {a["id"]: a for a in instances["annotations"]}
    referred = {r.object_id for r in read_attributes(world.attributes) if r.domain == "A" and r.referred}
    assert set(REFER_DATASETS) == {"refcoco", "refcoco+", "refcocog"}
    for style, split_by in REFER_DATASETS.items():
        raw = (world.refer_root / style / f"refs({split_by}).p").read_bytes()
        assert raw[:2] == b"\x80\x02"  # protocol 2, readable by Python 2 like the original files
        refs = pickle.loads(raw)
        assert {r["ann_id"] for r in refs} == referred and len(refs) == len(referred)
        assert {r["split"] for r in refs} == {"train", "val", "test"}
        counts = json.loads(world.settings.read_text())["counts"]["A"]
        for split in ("train", "val", "test"):
            assert sum(len(r["sentences"]) for r in refs if r["split"] == split) == counts[split][f"{style} sentences"]
        for ref in refs:
            assert ref["ann_id"] in annotations
            assert ref["file_name"] == f"COCO_train2014_{ref['image_id']:012d}_{ref['ann_id']}.jpg"
            assert ref["sent_ids"] == [s["sent_id"] for s in ref["sentences"]]
            for sentence in ref["sentences"]:
                assert sentence["tokens"] == sentence["sent"].split()
                assert sentence["raw"].lower() == sentence["sent"]
                if style == "refcoco+":
                    assert not set(LOCATION_PREFIX) & set(sentence["tokens"])


def test_only_objects_with_a_same_category_distractor_are_referred_and_clutter_is_annotated(world):
    """RefCOCO's protocol, read from the files: every ref's category has another instance in its image; every
    image also has its other objects annotated, and those (the clutter) are the only ones of their category and
    have no ref; in domain B, as in PhraseCut, every object has a task."""
    instances = json.loads((world.refcoco / "instances.json").read_text())
    per_image: dict[int, list[int]] = {}
    for ann in instances["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann["category_id"])
    refs = pickle.loads((world.refcoco / "refs(unc).p").read_bytes())
    assert all(per_image[r["image_id"]].count(r["category_id"]) >= 2 for r in refs)
    referred = {r["ann_id"] for r in refs}
    clutter = [a for a in instances["annotations"] if a["id"] not in referred]
    assert clutter  # the tiny world has clutter
    assert all(per_image[a["image_id"]].count(a["category_id"]) == 1 for a in clutter)
    assert all(a["segmentation"] and a["area"] > 0 for a in clutter)
    records = read_attributes(world.attributes)
    assert {r.object_id for r in records if r.domain == "A" and not r.referred} == {a["id"] for a in clutter}
    tasks = [t for split in ("train", "val", "test")
             for t in json.loads((world.phrasecut_root / f"refer_{split}.json").read_text())]
    assert {t["ann_ids"][0] for t in tasks} == {r.object_id for r in records if r.domain == "B"}
    assert any(not r.referred for r in records if r.domain == "B")
    stats = world_statistics(world.refer_root)
    assert stats.with_distractor == 1.0 and stats.referred == len(refs)
    assert stats.clutter_per_image == len(clutter) / len(instances["images"])
    assert stats.styles["refcoco+"].location_share == 0.0
    assert stats.styles["refcocog"].relation_share > 0.5
    assert stats.small_share_all == 0.0


def test_phrasecut_files(world):
    image_list = json.loads((world.phrasecut_root / "image_data_split.json").read_text())
    assert [i["split"] for i in image_list] == ["train"] * 2 + ["val"] * 3 + ["test"] * 2
    for split in ("train", "val", "test"):
        tasks = json.loads((world.phrasecut_root / f"refer_{split}.json").read_text())
        assert tasks
        for task in tasks:
            assert task["task_id"].startswith(f"{task['image_id']}__")
            assert (world.phrasecut_root / "images" / f"{task['image_id']}.jpg").is_file()
            assert task["phrase_structure"]["name"] in CATEGORIES["B"]
            assert len(task["Polygons"]) == len(task["instance_boxes"]) == 1
            assert all(len(point) == 2 for polygon in task["Polygons"][0] for point in polygon)


def test_attribute_side_file_matches_the_scenes(world):
    records = read_attributes(world.attributes)
    settings = read_settings(world.root)
    expected = []
    for domain in "AB":
        for split in ("train", "val", "test"):
            for image_id, scene, _ in iter_scenes(settings, domain, split):
                expected += [(domain, split, image_id, o.category, o.color, o.size, o.pattern, o.position, o.bbox)
                             for o in scene.objects]
    assert [(r.domain, r.split, r.image_id, r.category, r.color, r.size, r.pattern, r.position, r.bbox)
            for r in records] == expected
    assert all((world.root / r.file_name).is_file() for r in records)


def scene_masks(world, domain, split):
    settings = read_settings(world.root)
    return {image_id: [o.mask for o in scene.objects] for image_id, scene, _ in iter_scenes(settings, domain, split)}


@pytest.mark.parametrize(("dataset", "split_by", "name"),
                         [("refcoco", "unc", "refcoco"), ("refcoco+", "unc", "refcoco+"),
                          ("refcocog", "umd", "refcocog-umd")])
def test_domain_a_loads_through_the_refcoco_datamodule(world, dataset, split_by, name):
    word_length = 22 if dataset == "refcocog" else 12
    dm = RefCOCODataModule(data_root=str(world.refer_root), dataset=dataset, split_by=split_by,
                           tokenizer=world_tokenizer(), input_size=64, test_splits=["val", "test"],
                           word_length=word_length)
    dm.setup("test")
    assert dm.eval_set_names("test") == [f"{name}/val", f"{name}/test"]
    counts = json.loads(world.settings.read_text())["counts"]["A"]
    for split, ds in zip(("val", "test"), dm.eval_datasets["test"]):
        assert len(ds) == counts[split][f"{dataset} sentences"]
        masks = scene_masks(world, "A", split)
        for index in range(len(ds)):
            sample = ds[index]
            tokens = sample.tokens.tolist()
            assert world_tokenizer().unk_id not in tokens
            # the expression fits the word length untruncated (SOT, every word, EOT)
            assert len(sample.text.split()) + 2 <= word_length
            assert tokens.count(world_tokenizer().eot_id) == 1 and tokens.index(world_tokenizer().eot_id) == len(
                sample.text.split()) + 1
            image_id = ds.items[ds.index[index][0]].image_id
            # The COCO polygons decode to exactly the rendered visible mask of one object of that scene.
            assert sum(np.array_equal(sample.gt_mask.numpy(), m) for m in masks[image_id]) == 1


def test_domain_b_loads_through_the_phrasecut_datamodule(world):
    dm = PhraseCutDataModule(data_root=str(world.phrasecut_root), tokenizer=world_tokenizer(), input_size=64)
    dm.setup("validate")
    (ds,) = dm.eval_datasets["validate"]
    assert len(ds) == len(json.loads((world.phrasecut_root / "refer_val.json").read_text()))
    masks = scene_masks(world, "B", "val")
    for index in range(len(ds)):
        sample = ds[index]
        image_id = ds.items[ds.index[index][0]].image_id
        assert sum(np.array_equal(sample.gt_mask.numpy(), m) for m in masks[image_id]) == 1
    unseen = PhraseCutDataModule(data_root=str(world.phrasecut_root), tokenizer=world_tokenizer(),
                                 category_filter="non_coco", seen_categories=list(CATEGORIES["A"]))
    unseen.setup("validate")
    (ds,) = unseen.eval_datasets["validate"]
    assert unseen.eval_set_names("validate") == ["phrasecut-non_coco/val"]
    tasks = json.loads((world.phrasecut_root / "refer_val.json").read_text())
    expected = [t["task_id"] for t in tasks if t["phrase_structure"]["name"] not in CATEGORIES["A"]]
    assert [item.sample_id for item in ds.items] == expected


def test_synth_command_writes_a_world(tmp_path):
    out = tmp_path / "cli"
    args = ["synth", "--out", str(out), "--seed", "1", "--image-size", "48", "--n-train", "2", "--n-val", "1",
            "--n-test", "1", "--n-b-train", "1", "--n-b-val", "1", "--n-b-test", "1"]
    assert main(args) == 0
    assert read_settings(out) == WorldSettings(1, 48, 2, 1, 1, 1, 1, 1)
    assert (out / "refer" / "refcoco" / "refs(unc).p").is_file()
    assert (out / "phrasecut" / "refer_test.json").is_file()
