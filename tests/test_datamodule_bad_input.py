import json
import logging
import pickle
import re
import shutil
from pathlib import Path

import pytest

from ris.datamodules import PhraseCutDataModule, RefCOCODataModule
from ris.datamodules.bad_samples import BadSampleError, SkippedSample
from ris.formats.refer import load_refs
from ris.tokenizer import WordTokenizer
from tests.image_files import png_bomb_header

DATA = Path(__file__).parent / "data"
TOKENIZER = WordTokenizer(["box"])


@pytest.fixture
def refer(tmp_path):
    root = tmp_path / "refer"
    shutil.copytree(DATA / "refer", root)
    return root


@pytest.fixture
def phrasecut(tmp_path):
    root = tmp_path / "phrasecut"
    shutil.copytree(DATA / "phrasecut", root)
    return root


def edit_instances(root: Path, edit) -> Path:
    path = root / "refcoco" / "instances.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def image(root: Path, image_id: int) -> Path:
    return root / "images" / "mscoco" / "images" / "train2014" / f"COCO_train2014_{image_id:012d}.jpg"


def refcoco(root: Path, policy: str = "raise", splits=("train",)) -> RefCOCODataModule:
    return RefCOCODataModule(data_root=str(root), tokenizer=TOKENIZER, input_size=32, val_splits=list(splits),
                             on_bad_sample=policy)


def load_all(dm):
    for ds in dm.eval_datasets["validate"]:
        for index in range(len(ds)):
            ds[index]


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_missing_refs_or_instances_file_always_raises(refer, policy):
    (refer / "refcoco" / "refs(unc).p").unlink()
    with pytest.raises(FileNotFoundError, match=r"refcoco/refs\(unc\).p: refs file not found"):
        refcoco(refer, policy).setup("validate")
    (refer / "refcocog" / "instances.json").unlink()
    dm = RefCOCODataModule(data_root=str(refer), dataset="refcocog", split_by="umd", tokenizer=TOKENIZER,
                           on_bad_sample=policy)
    with pytest.raises(FileNotFoundError, match=r"refcocog/instances.json: instances file not found"):
        dm.setup("validate")


def test_unreadable_refs_pickle_names_the_file(refer):
    (refer / "refcoco" / "refs(unc).p").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"refs\(unc\).p: not a readable refs pickle"):
        refcoco(refer).setup("validate")


def test_missing_annotation(refer):
    instances = edit_instances(refer, lambda d: d.update(annotations=[a for a in d["annotations"] if a["id"] != 102]))
    with pytest.raises(BadSampleError, match=rf"refs\(unc\).p: ref 2: annotation 102 is not in {instances}"):
        refcoco(refer).setup("validate")
    dm = refcoco(refer, "skip")
    dm.setup("validate")
    assert dm.skipped == [SkippedSample("refcoco/train", str(refer / "refcoco" / "refs(unc).p"), "ref 2",
                                        f"annotation 102 is not in {instances}", 1)]
    assert len(dm.eval_datasets["validate"][0]) == 9 - 1


def test_missing_image_record(refer):
    edit_instances(refer, lambda d: d.update(images=[i for i in d["images"] if i["id"] != 2]))
    with pytest.raises(BadSampleError, match=r"ref 3: image 2 is not in .*instances.json"):
        refcoco(refer).setup("validate")
    dm = refcoco(refer, "skip")
    dm.setup("validate")
    assert [(s.sample, s.sentences) for s in dm.skipped] == [("ref 3", 3)]


def test_missing_image_file(refer):
    image(refer, 1).unlink()
    with pytest.raises(BadSampleError, match=r"000000000001.jpg: ref 1: image file of image 1 not found"):
        refcoco(refer).setup("validate")
    dm = refcoco(refer, "skip")
    dm.setup("validate")
    assert [s.sample for s in dm.skipped] == ["ref 1", "ref 2"]
    assert len(dm.eval_datasets["validate"][0]) == 9 - 3


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_or_truncated_image(refer, damage):
    path = image(refer, 1)
    data = path.read_bytes()
    path.write_bytes(b"this is no image" if damage == "garbage" else data[: len(data) // 2])
    dm = refcoco(refer)
    dm.setup("validate")  # raise mode checks files lazily: the error comes when the sample is loaded
    with pytest.raises(BadSampleError, match=rf"{path}: ref 1: unreadable or truncated image"):
        load_all(dm)
    dm = refcoco(refer, "skip")
    dm.setup("validate")  # skip mode verifies every image up front
    assert [(s.source, s.sample) for s in dm.skipped] == [(str(path), "ref 1"), (str(path), "ref 2")]
    assert all("unreadable or truncated image" in s.reason for s in dm.skipped)
    load_all(dm)


def test_image_above_the_pixel_budget_is_a_bad_sample_not_a_crash(refer):
    path = image(refer, 1)
    path.write_bytes(png_bomb_header(20000, 20000))  # 74 bytes claiming 400 MP (PIL's DecompressionBombError)
    dm = refcoco(refer)
    dm.setup("validate")
    with pytest.raises(BadSampleError, match=rf"{path}: ref 1: 400.0 MP is above PIL's decompression-bomb limit"):
        load_all(dm)
    for _ in range(2):  # a rerun does not die at it either
        dm = refcoco(refer, "skip")
        dm.setup("validate")
        assert [(s.sample, s.reason.split(" is above")[0]) for s in dm.skipped] == [("ref 1", "400.0 MP"),
                                                                                   ("ref 2", "400.0 MP")]
        load_all(dm)


def test_degenerate_polygon(refer):
    def edit(data):
        next(a for a in data["annotations"] if a["id"] == 301)["segmentation"] = [[4, 4, 30, 4]]

    instances = edit_instances(refer, edit)
    with pytest.raises(BadSampleError, match=rf"{instances}: ref 4 \(annotation 301\): degenerate polygon 0: "
                                             r"4 coordinates, expected an even number >= 6 \(3 points\)"):
        refcoco(refer).setup("validate")
    dm = refcoco(refer, "skip")
    dm.setup("validate")
    assert [s.sample for s in dm.skipped] == ["ref 4 (annotation 301)"]


def test_empty_mask(refer):
    def edit(data):
        next(a for a in data["annotations"] if a["id"] == 101)["segmentation"] = [[100, 100, 120, 100, 110, 120]]

    instances = edit_instances(refer, edit)
    dm = refcoco(refer)
    dm.setup("validate")
    with pytest.raises(BadSampleError, match=rf"{instances}: ref 1: the annotation rasterises to an empty mask"):
        load_all(dm)
    dm = refcoco(refer, "skip")
    dm.setup("validate")
    assert [(s.sample, s.reason) for s in dm.skipped] == [("ref 1", "the annotation rasterises to an empty mask")]


def test_image_size_disagreeing_with_instances(refer):
    edit_instances(refer, lambda d: next(i for i in d["images"] if i["id"] == 1).update(height=31))
    dm = refcoco(refer)
    dm.setup("validate")
    with pytest.raises(BadSampleError, match=r"000000000001.jpg: ref 1: image is 30x40 \(HxW\) but .* declares 31x40"):
        load_all(dm)


def test_skips_are_reported_in_the_log_and_at_teardown(refer, caplog):
    image(refer, 1).unlink()
    dm = refcoco(refer, "skip", splits=("train", "val"))
    with caplog.at_level(logging.WARNING):
        dm.setup("validate")
    assert "refcoco/train (eval): skipped 2 bad samples (3 expressions)" in caplog.text
    assert "ref 1: image file of image 1 not found" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        dm.teardown("validate")
    assert "end of validate: skipped 2 bad samples (3 expressions)" in caplog.text


def test_a_set_with_nothing_left_is_an_error(refer):
    image(refer, 5).unlink()
    with pytest.raises(ValueError, match=r"refcoco/testA \(eval\): no samples left to load"):
        RefCOCODataModule(data_root=str(refer), tokenizer=TOKENIZER, test_splits=["testA"],
                          on_bad_sample="skip").setup("test")


def edit_tasks(root: Path, split: str, task_id: str, **changes) -> Path:
    path = root / f"refer_{split}.json"
    tasks = json.loads(path.read_text())
    next(t for t in tasks if t["task_id"] == task_id).update(changes)
    path.write_text(json.dumps(tasks))
    return path


def pc(root: Path, policy: str = "raise") -> PhraseCutDataModule:
    return PhraseCutDataModule(data_root=str(root), tokenizer=TOKENIZER, input_size=32, on_bad_sample=policy)


def test_phrasecut_missing_task_file(phrasecut):
    (phrasecut / "refer_miniv.json").unlink()
    dm = PhraseCutDataModule(data_root=str(phrasecut), tokenizer=TOKENIZER, val_splits=["val_miniv"],
                             on_bad_sample="skip")
    with pytest.raises(FileNotFoundError, match=r"refer_miniv.json: PhraseCut task file not found"):
        dm.setup("validate")


def test_phrasecut_missing_image(phrasecut):
    (phrasecut / "images" / "13.jpg").unlink()
    with pytest.raises(BadSampleError, match=r"images/13.jpg: task 13__1301: image file of image 13 not found"):
        pc(phrasecut).setup("validate")
    with pytest.raises(ValueError, match=r"phrasecut/val \(eval\): no samples left to load"):
        pc(phrasecut, "skip").setup("validate")


def test_phrasecut_truncated_image(phrasecut):
    path = phrasecut / "images" / "13.jpg"
    path.write_bytes(path.read_bytes()[:300])
    dm = pc(phrasecut)
    dm.setup("validate")
    with pytest.raises(BadSampleError, match=rf"{path}: task 13__1301: unreadable or truncated image"):
        load_all(dm)


def test_phrasecut_degenerate_and_malformed_polygons(phrasecut):
    path = edit_tasks(phrasecut, "val", "13__1301", Polygons=[[[[28, 28]]]])
    with pytest.raises(BadSampleError, match=rf"{path}: task 13__1301: degenerate region: no polygon with at least 2"):
        pc(phrasecut).setup("validate")
    dm = pc(phrasecut, "skip")
    dm.setup("validate")
    assert [s.sample for s in dm.skipped] == ["task 13__1301"]
    assert [item.sample_id for item in dm.eval_datasets["validate"][0].items] == ["13__1302"]
    edit_tasks(phrasecut, "val", "13__1301", Polygons=[[[[1, 2, 3], [4, 5, 6]]]])
    with pytest.raises(BadSampleError, match=r"task 13__1301: instance 0 polygon 0: expected a list of \[x, y\]"):
        pc(phrasecut).setup("validate")


def test_phrasecut_empty_mask(phrasecut):
    path = edit_tasks(phrasecut, "val", "13__1302", Polygons=[[[[50, 50], [60, 50], [60, 60]]]])
    dm = pc(phrasecut)
    dm.setup("validate")
    with pytest.raises(BadSampleError, match=rf"{path}: task 13__1302: the annotation rasterises to an empty mask"):
        load_all(dm)
    dm = pc(phrasecut, "skip")
    dm.setup("validate")
    assert [(s.set_name, s.sample) for s in dm.skipped] == [("phrasecut/val", "task 13__1302")]


def test_policy_is_validated():
    with pytest.raises(ValueError, match="on_bad_sample must be 'raise' or 'skip', got 'ignore'"):
        RefCOCODataModule(on_bad_sample="ignore")


def edit_refs(root: Path, edit) -> Path:
    path = root / "refcoco" / "refs(unc).p"
    refs = load_refs(path)
    edit({ref["ref_id"]: ref for ref in refs})
    path.write_bytes(pickle.dumps(refs))
    return path


def _texts(dm) -> list[str]:
    return [sentence.text for ds in dm.eval_datasets["validate"] for item in ds.items for sentence in item.sentences]


def test_null_empty_and_blank_expressions_are_bad_samples(refer):
    def edit(refs):
        refs[1]["sentences"][1]["sent"] = None  # ref 1 keeps "man on the left"
        refs[3]["sentences"][0]["sent"] = ""
        refs[3]["sentences"][2]["sent"] = "  \t "
        refs[4]["sentences"][0]["sent"] = None  # ref 4 has no expression left

    path = edit_refs(refer, edit)
    with pytest.raises(BadSampleError, match=re.escape(f"{path}: ref 1 sentence 2: the expression is null (None)")):
        refcoco(refer).setup("validate")
    dm = refcoco(refer, "skip")
    dm.setup("validate")
    assert [(s.sample, s.reason, s.sentences) for s in dm.skipped] == [
        ("ref 1 sentence 2", "the expression is null (None)", 1),
        ("ref 3 sentence 4", "the expression is empty or whitespace-only ('')", 1),
        ("ref 3 sentence 6", "the expression is empty or whitespace-only ('  \\t ')", 1),
        ("ref 4", "no usable expression: sentence 7: the expression is null (None)", 1),
    ]
    texts = _texts(dm)
    assert "man on the left" in texts and "left block" in texts and "pointy shape" not in texts
    assert all(isinstance(t, str) and t.strip() and t != "None" for t in texts)
    assert len(dm.eval_datasets["validate"][0]) == 9 - 4


def test_null_phrasecut_phrase_is_a_bad_sample(phrasecut):
    path = edit_tasks(phrasecut, "val", "13__1301", phrase=None)
    with pytest.raises(BadSampleError, match=rf"{path}: task 13__1301: the expression is null \(None\)"):
        pc(phrasecut).setup("validate")
    dm = pc(phrasecut, "skip")
    dm.setup("validate")
    assert [(s.sample, s.reason) for s in dm.skipped] == [("task 13__1301", "the expression is null (None)")]
