import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
from pycocotools import mask as mask_utils
from scipy import ndimage

from ris.datamodules import RefCOCODataModule, RefCOCOSet
from ris.datamodules.labeled import select_labeled_images
from ris.formats.refer import load_refs
from ris.letterbox import CLIP_MEAN, CLIP_STD, unletterbox
from ris.tokenizer import WordTokenizer

ROOT = Path(__file__).parent / "data" / "refer"
TOKENIZER = WordTokenizer(["man", "on", "the", "left", "guy", "in", "red", "two", "boxes", "square", "box"])


def refs(name="refcoco", split_by="unc"):
    return load_refs(ROOT / name / f"refs({split_by}).p")


def instances():
    return json.loads((ROOT / "refcoco" / "instances.json").read_text())


def module(**kwargs):
    defaults = {"data_root": str(ROOT), "tokenizer": TOKENIZER, "input_size": 64, "batch_size": 2}
    return RefCOCODataModule(**{**defaults, **kwargs})


def pycocotools_mask(ann, image):
    seg = ann["segmentation"]
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, image["height"], image["width"]))
    else:
        rle = {"size": seg["size"], "counts": seg["counts"].encode()}
    return mask_utils.decode(rle).astype(bool), int(mask_utils.area(rle))


def test_python2_pickles_load_with_their_utf8_text():
    with pytest.raises(UnicodeDecodeError):
        pickle.loads((ROOT / "refcoco" / "refs(unc).p").read_bytes())  # what a plain load does
    sentences = [s["sent"] for r in load_refs(ROOT / "refcoco" / "refs(unc).p") for s in r["sentences"]]
    assert "caf\u00e9 sign" in sentences
    assert load_refs(ROOT / "refcocog" / "refs(umd).p")[0]["sentences"][0]["sent"] == "man on the left"
    assert load_refs(ROOT / "refcoco" / "refs(google).p")[0]["ref_id"] == 1


def test_masks_equal_pycocotools_at_original_resolution():
    dm = module(test_splits=["val", "testA", "testB"])
    dm.setup("test")
    images = {im["id"]: im for im in instances()["images"]}
    anns = {a["id"]: a for a in instances()["annotations"]}
    ref_ann = {str(r["ref_id"]): r["ann_id"] for r in refs()}
    seen = 0
    for ds in dm.eval_datasets["test"]:
        for index in range(len(ds)):
            sample = ds[index]
            ann = anns[ref_ann[sample.sample_id]]
            expected, area = pycocotools_mask(ann, images[ann["image_id"]])
            assert sample.gt_mask.dtype == torch.bool
            assert torch.equal(sample.gt_mask, torch.from_numpy(expected))
            assert int(sample.gt_mask.sum()) == area
            seen += 1
    assert seen == 5


def test_overlapping_and_rle_annotations_are_unioned_and_binarised():
    dm = module(test_splits=["train"])
    dm.setup("test")
    (ds,) = dm.eval_datasets["test"]
    images = {im["id"]: im for im in instances()["images"]}
    anns = {a["id"]: a for a in instances()["annotations"]}
    by_ref = {ds[i].sample_id: ds[i].gt_mask for i in range(len(ds))}
    overlapping = anns[201]  # two rectangles sharing pixels: the summed mask would hold 2s
    summed = mask_utils.decode(mask_utils.frPyObjects(overlapping["segmentation"], 48, 32)).sum(-1)
    assert summed.max() == 2
    assert torch.equal(by_ref["3"], torch.from_numpy(summed > 0))
    rle_mask, area = pycocotools_mask(anns[302], images[3])
    assert torch.equal(by_ref["5"], torch.from_numpy(rle_mask)) and area == 54


def test_one_eval_sample_per_sentence_and_one_train_sample_per_ref():
    dm = module(val_splits=["val"])
    dm.setup("fit")
    train_refs = [r for r in refs() if r["split"] == "train"]
    assert len(dm.train_dataset) == len(train_refs) == 5
    (val,) = dm.eval_datasets["validate"]
    val_refs = [r for r in refs() if r["split"] == "val"]
    assert len(val) == sum(len(r["sentences"]) for r in val_refs) == 2
    assert [(val[i].sample_id, val[i].sent_id) for i in range(2)] == [("6", 10), ("7", 11)]
    by_sentence = module(train_unit="sentence")
    by_sentence.setup("fit")
    assert len(by_sentence.train_dataset) == sum(len(r["sentences"]) for r in train_refs) == 9


def test_official_validation_scores_the_first_sentence_of_each_ref_and_test_keeps_all():
    train_refs = [r for r in refs() if r["split"] == "train"]
    dm = module(val_splits=["train"], test_splits=["train"], val_sentences="first")
    dm.setup("validate")
    (val,) = dm.eval_datasets["validate"]
    assert [(val[i].sample_id, val[i].sent_id) for i in range(len(val))] == [
        (str(r["ref_id"]), r["sentences"][0]["sent_id"]) for r in train_refs]
    dm.setup("test")
    (test,) = dm.eval_datasets["test"]
    assert len(test) == sum(len(r["sentences"]) for r in train_refs) == 9
    every = module(val_splits=["train"])
    every.setup("validate")
    assert every.val_sentences == "all" and len(every.eval_datasets["validate"][0]) == 9
    with pytest.raises(ValueError, match="val_sentences must be 'all' or 'first', got 'one'"):
        module(val_sentences="one")


def test_train_samples_draw_one_of_the_ref_sentences():
    dm = module()
    dm.setup("fit")
    ds = dm.train_dataset
    index = next(i for i in range(len(ds)) if ds.items[i].sample_id == "3")
    torch.manual_seed(0)
    texts = {ds[index].text for _ in range(30)}
    assert texts == {"the tall thing", "left block", "block"}
    sample = ds[index]
    assert sample.gt_mask is None and sample.mask.shape == (1, 64, 64)
    assert sample.mask.min() >= 0 and sample.mask.max() <= 1


def test_batches_follow_the_contract():
    dm = module(word_length=9, val_splits=["val"])
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.image.shape == (2, 3, 64, 64) and batch.mask.shape == (2, 1, 64, 64)
    assert batch.tokens.shape == (2, 9) and batch.tokens.dtype == torch.long
    assert batch.affine.shape == (2, 2, 3) and batch.affine.dtype == torch.float64
    assert batch.gt_masks is None
    (loader,) = dm.val_dataloader()
    batch = next(iter(loader))
    assert batch.dataset == ["refcoco", "refcoco"] and batch.split == ["val", "val"]
    assert batch.orig_size.tolist() == [[28, 44], [28, 44]]
    assert [tuple(g.shape) for g in batch.gt_masks] == [(28, 44), (28, 44)]
    assert batch.tokens[0].tolist()[:2] == [TOKENIZER.sot_id, TOKENIZER.unk_id]  # "top bar" is not in the vocabulary


def test_grayscale_and_rgba_images_become_rgb():
    dm = module(val_splits=["train"], input_size=48)
    dm.setup("validate")
    (ds,) = dm.eval_datasets["validate"]
    samples = {ds[i].sample_id: ds[i] for i in range(len(ds))}
    gray = samples["3"]  # image 2 is a grayscale JPEG, 32 wide and 48 high: no letterbox scaling
    assert gray.orig_size == (48, 32) and gray.image.shape == (3, 48, 48)
    centre = gray.image[:, :, 8:40] * torch.tensor(CLIP_STD).view(3, 1, 1) + torch.tensor(CLIP_MEAN).view(3, 1, 1)
    assert torch.allclose(centre[0], centre[1], atol=1e-5) and torch.allclose(centre[1], centre[2], atol=1e-5)
    assert torch.allclose(gray.image[:, :, :8], torch.zeros(3, 48, 8), atol=1e-6)  # mean-colour border
    assert samples["4"].orig_size == (36, 36) and samples["4"].image.shape == (3, 48, 48)  # the RGBA PNG


@pytest.mark.parametrize("input_size", [64, 97])
def test_letterbox_then_inverse_reproduces_the_mask_when_upscaling(input_size):
    dm = module(input_size=input_size)
    dm.setup("test")
    for ds in dm.eval_datasets["test"]:
        for index in range(len(ds)):
            sample = ds[index]
            back = unletterbox(sample.mask, sample.affine, sample.orig_size, mode="bilinear")[0] > 0.5
            assert torch.equal(back, sample.gt_mask)  # IoU exactly 1.0


def test_letterbox_then_inverse_when_downscaling_differs_only_on_a_one_pixel_border():
    dm = module(input_size=32)  # every image is larger than 32 px on its long side
    dm.setup("test")
    for ds in dm.eval_datasets["test"]:
        for index in range(len(ds)):
            sample = ds[index]
            gt = sample.gt_mask.numpy()
            back = (unletterbox(sample.mask, sample.affine, sample.orig_size, mode="bilinear")[0] > 0.5).numpy()
            border = ndimage.binary_dilation(gt) & ~ndimage.binary_erosion(gt)
            assert not ((back != gt) & ~border).any()
            assert (back & gt).sum() / (back | gt).sum() > 0.98


def test_set_names_partitions_and_split_rules():
    assert module().eval_set_names("test") == ["refcoco/val", "refcoco/testA", "refcoco/testB"]
    google = module(split_by="google")
    assert google.eval_set_names("test") == ["refcoco-google/val", "refcoco-google/test"]
    google.setup("test")
    assert [len(d) for d in google.eval_datasets["test"]] == [2, 3]  # sentences of refs 2, 7 / refs 4, 9
    umd = module(dataset="refcocog", split_by="umd", word_length=22)
    assert umd.eval_set_names("validate") == ["refcocog-umd/val"]
    assert module(name="synth").eval_set_names("validate") == ["synth/val"]
    with pytest.raises(ValueError, match="refcocog has no 'unc' partition"):
        module(dataset="refcocog")
    test_pooled = module(test_splits=["test"])  # "test" matches testA and testB, as in the refer API
    test_pooled.setup("test")
    assert len(test_pooled.eval_datasets["test"][0]) == 3
    with pytest.raises(ValueError, match=r"no refs of split 'testC'; splits present: \['testA', 'testB', 'train'"):
        RefCOCOSet("refcoco", str(ROOT), "testC").read()


def test_tokenizer_comes_from_the_model_when_not_given():
    dm = module(tokenizer=None)
    with pytest.raises(ValueError, match="no tokenizer; pass `tokenizer=` or use a model with a `tokenizer`"):
        dm.setup("validate")
    dm.trainer = SimpleNamespace(lightning_module=SimpleNamespace(tokenizer=TOKENIZER))
    dm.setup("validate")
    assert dm.eval_datasets["validate"][0].tokenizer is TOKENIZER


def test_labeled_fraction_selects_images_deterministically():
    image_ids = list(range(100, 300, 2))
    ten = select_labeled_images(image_ids, 0.1, seed=0)
    assert len(ten) == 10 and ten == sorted(ten) and set(ten) <= set(image_ids)
    assert ten == select_labeled_images(list(reversed(image_ids)), 0.1, seed=0)
    one = select_labeled_images(image_ids, 0.01, seed=0)
    assert len(one) == 1 and set(one) <= set(ten)  # nested subsets for one seed
    assert select_labeled_images(image_ids, 0.001, seed=0) == one  # at least one image
    assert select_labeled_images(image_ids, 0.1, seed=1) != ten
    assert select_labeled_images(image_ids, 1.0) == image_ids
    expected = sorted(sorted(image_ids)[i] for i in np.random.default_rng(0).permutation(100)[:10])
    assert ten == expected
    with pytest.raises(ValueError, match=r"labeled_fraction must be in \(0, 1\], got 0"):
        select_labeled_images(image_ids, 0)


def test_labeled_fraction_restricts_the_training_images():
    dm = module(labeled_fraction=0.34, labeled_seed=0)
    dm.setup("fit")
    assert dm.labeled_image_ids == select_labeled_images([1, 2, 3], 0.34, 0)
    assert len(dm.labeled_image_ids) == 1
    assert {item.image_id for item in dm.train_dataset.items} == set(dm.labeled_image_ids)
    expected_refs = [r for r in refs() if r["split"] == "train" and r["image_id"] in dm.labeled_image_ids]
    assert len(dm.train_dataset) == len(expected_refs)
    assert len(dm.eval_datasets["validate"][0]) == 2  # evaluation sets are never subsampled
    with pytest.raises(ValueError, match="labeled_fraction must be in"):
        module(labeled_fraction=1.5)


def test_distributed_runs_get_their_own_samplers(tmp_path):
    """Training: a resumable sampler over every sample on one process, over this rank's share under a process
    group; evaluation: the padded exactly-once sampler."""
    from ris.datamodules.exactly_once import PaddedEvaluationSampler
    from ris.resume import ResumableSampler

    dm = module()
    dm.setup("fit")
    sampler = dm.train_dataloader().sampler
    assert isinstance(sampler, ResumableSampler) and (sampler.num_replicas, sampler.rank) == (1, 0)
    assert sorted(sampler) == list(range(len(dm.train_dataset)))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        sampler = dm.train_dataloader().sampler
        assert isinstance(sampler, ResumableSampler) and sampler.num_replicas == dist.get_world_size()
        (loader,) = dm.val_dataloader()
        assert isinstance(loader.sampler, PaddedEvaluationSampler)
        assert list(loader.sampler) == list(range(len(loader.dataset)))
    finally:
        dist.destroy_process_group()


def test_the_network_input_comes_from_the_model_and_cannot_disagree():
    """The datamodule builds the input the model declares (letterbox or squash, its normalisation)."""
    from types import SimpleNamespace

    from ris.contracts import InputSpec

    spec = InputSpec(48, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize="squash")
    dm = module(input_size=None)
    dm.trainer = SimpleNamespace(lightning_module=SimpleNamespace(input_spec=spec, tokenizer=TOKENIZER))
    assert dm.resolve_input_spec() == spec
    dm.setup("validate")
    sample = dm.eval_datasets["validate"][0][0]
    assert sample.image.shape == (3, 48, 48)
    h, w = sample.orig_size
    assert sample.affine.tolist() == [[48 / w, 0.0, 24 / w - 0.5], [0.0, 48 / h, 24 / h - 0.5]]
    assert float(sample.image.min()) >= -1.0 and float(sample.image.max()) <= 1.0, "normalised with 0.5 / 0.5"
    other = module(input_size=64)
    other.trainer = dm.trainer
    with pytest.raises(ValueError, match=r"data.input_size = 64 disagrees with the model's input size 48"):
        other.setup("validate")
