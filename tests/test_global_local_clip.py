import csv
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ris.batch import RISSample, collate
from ris.cli import main
from ris.contracts import InputSpec
from ris.evaluation import Evaluator
from ris.letterbox import network_input
from ris.models import GlobalLocalCLIP
from ris.models.global_local_clip import GlobalLocalFeatures, alpha_for
from ris.noun_phrases import RuleNounPhrases, SpacyNounPhrases, make_noun_phrases, normalize_text
from ris.open_clip_models import create_open_clip
from tests.fake_spacy import FakeDoc
from tests.workflow_world import clip_dir, trainer_args

H, W = 40, 60


def left_right_masks() -> np.ndarray:
    masks = np.zeros((2, H, W), dtype=bool)
    masks[0, 10:30, 5:25] = True  # left box
    masks[1, 10:30, 35:55] = True  # right box
    return masks


class FixedSource:
    """A mask source returning fixed proposals and counting its calls."""

    name = "fixed"

    def __init__(self, masks: np.ndarray) -> None:
        self.masks = masks
        self.calls: list[str] = []

    def settings(self) -> dict:
        return {}

    def __call__(self, image: np.ndarray, image_id: str) -> np.ndarray:
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
        self.calls.append(image_id)
        return self.masks[:, : image.shape[0], : image.shape[1]]


class StubScorer:
    """Proposal features: e0 for a proposal in the left half, e1 for the right; texts: e0 if they say "left"."""

    def visual(self, image, masks):
        centres = torch.stack([m.nonzero()[:, 1].float().mean() for m in masks])
        features = F.one_hot((centres > image.shape[-1] / 2).long(), 2).float()
        return features, features

    def text(self, texts):
        return torch.stack([torch.tensor([1.0, 0.0]) if "left" in t else torch.tensor([0.0, 1.0]) for t in texts])


def make_batch(texts, masks, image_id="7"):
    image = torch.randint(0, 255, (3, H, W), dtype=torch.uint8)
    pixels, matrix = network_input(image, InputSpec(64))
    samples = [
        RISSample(image=pixels, mask=torch.zeros(1, 64, 64), text=text, tokens=torch.zeros(8, dtype=torch.long),
                  orig_size=(H, W), affine=matrix, gt_mask=torch.from_numpy(gt), dataset="refcoco", split="val",
                  sample_id=str(i), sent_id=i, image_id=image_id)
        for i, (text, gt) in enumerate(zip(texts, masks))
    ]
    return collate(samples)


@pytest.fixture(scope="module")
def vit_model():
    return GlobalLocalCLIP(FixedSource(left_right_masks()), clip_model="tiny-ViT", clip_pretrained=None)


def test_stub_scorer_picks_the_matching_proposal_and_proposals_are_cached(vit_model):
    source = FixedSource(left_right_masks())
    vit_model.masks, vit_model.scorer = source, StubScorer()
    vit_model._cache.clear()
    masks = left_right_masks()
    batch = make_batch(["the box on the right", "the left box", "right one"], [masks[1], masks[0], masks[1]])
    chosen = vit_model.select(batch)
    assert [c.shape for c in chosen] == [(H, W)] * 3
    assert torch.equal(chosen[0], torch.from_numpy(masks[1]))
    assert torch.equal(chosen[1], torch.from_numpy(masks[0]))
    assert torch.equal(chosen[2], torch.from_numpy(masks[1]))
    assert source.calls == ["7"], "three expressions of one image share one proposal pass"
    evaluator = Evaluator()
    evaluator.start("test", ["refcoco/val"], torch.device("cpu"))
    evaluator.update("test", batch, vit_model.predict_masks(batch), torch.device("cpu"))
    result = evaluator.metrics[("test", "refcoco/val")].compute()
    assert result["mIoU"] == pytest.approx(1.0) and result["oIoU"] == pytest.approx(1.0)


def test_picks_report_the_oracle_ceiling_and_whether_the_best_proposal_was_chosen(vit_model):
    vit_model.masks, vit_model.scorer = FixedSource(left_right_masks()), StubScorer()
    vit_model._cache.clear()
    masks = left_right_masks()
    half = masks[0].copy()
    half[:, 15:] = False  # the left box's left 10 of 20 columns: IoU 0.5 with the left proposal
    batch = make_batch(["the left box", "the box on the right", "the left half"], [masks[0], half, half],
                       image_id="9")
    picks = vit_model.picks(batch)
    assert [p.proposals for p in picks] == [2, 2, 2]
    assert (picks[0].chosen_iou, picks[0].best_iou, picks[0].picked_best) == (1.0, 1.0, True)
    assert (picks[1].chosen_iou, picks[1].best_iou, picks[1].picked_best) == (0.0, pytest.approx(0.5), False)
    assert (picks[2].chosen_iou, picks[2].picked_best) == (pytest.approx(0.5), True)
    vit_model.masks = FixedSource(np.zeros((0, H, W), dtype=bool))
    vit_model._cache.clear()
    assert vit_model.picks(make_batch(["the left box"], [masks[0]], image_id="10"))[0].proposals == 0


def test_image_without_proposals_predicts_empty_mask_and_scores_iou_zero(vit_model):
    vit_model.masks, vit_model.scorer = FixedSource(np.zeros((0, H, W), dtype=bool)), StubScorer()
    vit_model._cache.clear()
    masks = left_right_masks()
    batch = make_batch(["the left box", "the right box"], [masks[0], masks[1]], image_id="8")
    chosen = vit_model.select(batch)
    assert all(not c.any() for c in chosen)
    evaluator = Evaluator()
    evaluator.start("test", ["refcoco/val"], torch.device("cpu"))
    evaluator.update("test", batch, chosen, torch.device("cpu"))
    metric = evaluator.metrics[("test", "refcoco/val")]
    assert int(metric.count) == 2 and float(metric.compute()["mIoU"]) == 0.0


def test_original_images_invert_the_letterbox(vit_model):
    masks = left_right_masks()
    batch = make_batch(["a"], [masks[0]])
    image = vit_model.original_images(batch)[0]
    assert image.shape == (3, H, W) and 0.0 <= float(image.min()) and float(image.max()) <= 1.0


@pytest.mark.parametrize("arch", ["tiny-ViT", "tiny-coca"])
def test_vit_token_masking_applies_only_to_the_last_k_blocks(arch):
    torch.manual_seed(0)
    clip = create_open_clip(arch)
    image = torch.rand(3, H, W)
    masks = torch.from_numpy(left_right_masks())
    full = torch.ones(1, H, W, dtype=torch.bool)
    pixels = F.interpolate(image[None], size=(64, 64), mode="bilinear", antialias=True)
    features = GlobalLocalFeatures(clip, masked_layers=0)
    plain = clip.model.encode_image(features._normalise(pixels), normalize=False)
    unmasked = features.global_features(image, masks)
    assert torch.allclose(unmasked, plain.expand(2, -1), atol=1e-5), "k = 0 is the plain image feature"
    masked = GlobalLocalFeatures(clip, masked_layers=1)
    assert torch.allclose(masked.global_features(image, full), plain, atol=1e-5), "an all-ones mask changes nothing"
    left, right = masked.global_features(image, masks)
    assert not torch.allclose(left, right, atol=1e-4) and not torch.allclose(left, plain[0], atol=1e-4)
    with pytest.raises(ValueError, match="masked_layers must be in"):
        GlobalLocalFeatures(clip, masked_layers=len(clip.model.visual.transformer.resblocks) + 1)


def test_resnet_global_feature_is_masked_attention_pooling_of_normalised_features():
    torch.manual_seed(0)
    clip = create_open_clip("tiny-RN")
    features = GlobalLocalFeatures(clip)
    image = torch.rand(3, H, W)
    visual = clip.model.visual
    pixels = features._normalise(F.interpolate(image[None], size=(64, 64), mode="bilinear", antialias=True))
    grid = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(pixels)))))
    expected = visual.attnpool(F.normalize(grid, dim=1))
    got = features.global_features(image, torch.ones(1, H, W, dtype=torch.bool))
    assert torch.allclose(got, expected, atol=1e-5)
    left, right = features.global_features(image, torch.from_numpy(left_right_masks()))
    assert not torch.allclose(left, right, atol=1e-4)
    local = features.local_features(image, torch.from_numpy(left_right_masks()))
    assert torch.allclose(local.norm(dim=-1), torch.ones(2), atol=1e-5), "ResNet f^L is L2-normalised"


def test_local_feature_ignores_pixels_outside_the_mask():
    torch.manual_seed(0)
    features = GlobalLocalFeatures(create_open_clip("tiny-ViT"))
    image = torch.rand(3, H, W)
    mask = torch.zeros(1, H, W, dtype=torch.bool)
    mask[0, 12:28, 8:20] = True
    mask[0, 12:15, 8:11] = False  # a notch inside the tight box
    crops = features.local_crops(image, mask)
    assert crops.shape == (1, 3, 64, 64)
    changed = image.clone()
    changed[:, ~mask[0]] = torch.rand(3, int((~mask[0]).sum()))
    assert torch.allclose(features.local_features(image, mask), features.local_features(changed, mask))
    changed[:, 20, 15] = 1 - changed[:, 20, 15]
    assert not torch.allclose(features.local_features(image, mask), features.local_features(changed, mask))


def test_noun_phrases_and_text_normalisation():
    rules = RuleNounPhrases()
    assert rules.target_phrases(["The big red circle on the left", "a man sitting on a bench", "on the left"]) == [
        "the big red circle", "a man", "on the left"]
    assert RuleNounPhrases(["box"]).target_phrases(["the striped box left of the star"]) == ["the striped box"]
    assert normalize_text("  The  Man's   hat, left!") == "the man's hat , left !"
    with pytest.raises(ValueError, match="unknown noun phrase extractor"):
        make_noun_phrases("nltk")


def test_spacy_rule_takes_the_last_root_and_one_hop_to_its_first_child():
    # Two roots, "man" (0) and "running" (4): the rule uses the last; it is in no chunk, its first child "dog" is.
    words = ["man", "left", ".", "dog", "running"]
    heads = [0, 0, 0, 4, 4]
    chunks = [([0], "man"), ([3], "the dog")]
    assert SpacyNounPhrases.target_phrase_of(FakeDoc(words, heads, {4: [3]}, chunks)) == "the dog"
    assert SpacyNounPhrases.target_phrase_of(FakeDoc(words, heads, {}, chunks)) == "man left . dog running"
    doc = FakeDoc(words, [0, 0, 0, 3, 3], {}, [([0], "man"), ([3, 4], "dog running")])
    assert SpacyNounPhrases.target_phrase_of(doc) == "dog running"


def test_alpha_per_dataset_label():
    alpha = {"refcoco": 0.95, "refcoco+": 0.95, "refcocog": 0.85, "default": 0.85}
    assert alpha_for(alpha, "refcoco") == 0.95 and alpha_for(alpha, "refcoco-google") == 0.95
    assert alpha_for(alpha, "refcoco+") == 0.95 and alpha_for(alpha, "refcocog-umd") == 0.85
    assert alpha_for(alpha, "phrasecut-non_coco") == 0.85
    with pytest.raises(ValueError, match="no alpha for dataset 'phrasecut'"):
        alpha_for({"refcoco": 0.9}, "phrasecut")


def _metrics(folder: Path) -> dict[str, float]:
    files = list(folder.rglob("metrics.csv"))
    assert len(files) == 1
    rows = list(csv.DictReader(files[0].read_text().splitlines()))
    return {k: float(v) for row in rows for k, v in row.items() if v and k.startswith("test/")}


def test_ris_test_end_to_end_on_the_synthetic_world(tmp_path, monkeypatch, tiny_world):
    monkeypatch.setattr(sys, "argv", ["ris"])
    world = tiny_world
    coca = clip_dir(tmp_path / "models", "tiny-coca")
    common = [
        "--model", "GlobalLocalCLIP", "--model.clip_model", coca, "--model.clip_pretrained", "null",
        "--model.masked_layers", "1", "--model.input_size", "64",
        "--data", "RefCOCODataModule", "--data.data_root", str(world.refer_root),
        "--data.word_length", "8", "--data.eval_batch_size", "8", "--data.test_splits", "[val]",
        "--data.test_sets", f"[{{dataset: phrasecut, data_root: {world.phrasecut_root}, split: test}}]",
    ]
    gt = ["--model.masks", "ris.pseudo.masks.GroundTruthMaskSource",
          "--model.masks.annotations", str(world.refcoco / "instances.json")]
    assert main(["test", *common[:-2], *gt, *trainer_args(tmp_path / "runs", "gt")]) == 0
    values = _metrics(tmp_path / "runs" / "gt")
    # Ground-truth proposals are exact, so every IoU is 0 or 1: mIoU equals every Prec@X and counts whole sentences.
    refs = pickle.loads((world.refcoco / "refs(unc).p").read_bytes())
    sentences = sum(len(r["sentences"]) for r in refs if r["split"] == "val")
    hits = values["test/refcoco/val/mIoU"] * sentences
    assert hits == pytest.approx(round(hits), abs=1e-4) and 0 <= round(hits) <= sentences
    for t in ("0.5", "0.7", "0.9"):
        assert values[f"test/refcoco/val/Prec@{t}"] == pytest.approx(values["test/refcoco/val/mIoU"])
    segmenter = ["--model.masks", "ris.pseudo.masks.SegmenterMaskSource"]
    assert main(["test", *common, *segmenter, *trainer_args(tmp_path / "runs", "segmenter")]) == 0
    values = _metrics(tmp_path / "runs" / "segmenter")
    for name in ("refcoco/val", "phrasecut/test"):
        assert 0.0 <= values[f"test/{name}/mIoU"] <= 1.0 and 0.0 <= values[f"test/{name}/oIoU"] <= 1.0
