"""Mask sources (SAM, CutLER-guided, ground truth, segmenter) and the mask policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from ris.formats.phrasecut import polygons_to_mask
from ris.pseudo.masks import (
    CutLERGuidedSource,
    GroundTruthMaskSource,
    MaskPolicy,
    MaskSource,
    SAMMaskSource,
    SegmenterMaskSource,
    build_tiny_sam,
    load_sam,
    match_guides,
    propose_masks,
)


def box_mask(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """``(h, w)`` bool, True on rows y0..y1-1 and columns x0..x1-1."""
    mask = np.zeros((h, w), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


class FixedSource:
    """A mask source returning fixed masks and counting calls."""

    name = "fixed"

    def __init__(self, masks: np.ndarray) -> None:
        self.masks = masks
        self.calls = 0

    def settings(self) -> dict[str, Any]:
        return {"count": len(self.masks)}

    def __call__(self, image: np.ndarray, image_id: str) -> np.ndarray:
        self.calls += 1
        return self.masks


def rgb(h: int = 12, w: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- SAM ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sam_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "tiny_sam.pth"
    torch.save(build_tiny_sam().state_dict(), path)
    return path


def test_tiny_sam_loaded_from_file_produces_masks(tiny_sam_checkpoint: Path) -> None:
    source = SAMMaskSource(
        tiny_sam_checkpoint, model_type="tiny", points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    reference = build_tiny_sam()
    reference.load_state_dict(torch.load(tiny_sam_checkpoint, weights_only=True))
    for name, value in reference.state_dict().items():
        assert torch.equal(source.model.state_dict()[name], value), name
    image = rgb(40, 56)
    masks = source(image, "img")
    assert masks.dtype == bool and masks.ndim == 3 and masks.shape[1:] == (40, 56)
    assert 1 <= len(masks) <= 9
    assert isinstance(source, MaskSource)


def test_sam_settings_are_passed_to_the_generator(tiny_sam_checkpoint: Path) -> None:
    source = SAMMaskSource(tiny_sam_checkpoint, model_type="tiny", points_per_side=5, box_nms_thresh=0.6)
    generator = source.generator
    assert generator.point_grids[0].shape == (25, 2)
    assert generator.box_nms_thresh == 0.6
    assert generator.pred_iou_thresh == 0.5  # the paper's setting
    assert generator.stability_score_thresh == 0.95 and generator.points_per_batch == 64
    assert generator.crop_n_layers == 0 and generator.min_mask_region_area == 0
    settings = source.settings()
    assert settings["points_per_side"] == 5 and settings["model_type"] == "tiny"
    assert settings["checkpoint"] == str(tiny_sam_checkpoint)


def test_sam_masks_ranked_by_predicted_iou(tiny_sam_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = SAMMaskSource(tiny_sam_checkpoint, model_type="tiny", points_per_side=2)
    records = [
        {"segmentation": box_mask(8, 8, 0, 1, 0, 1), "predicted_iou": 0.2},
        {"segmentation": box_mask(8, 8, 0, 2, 0, 2), "predicted_iou": 0.9},
        {"segmentation": box_mask(8, 8, 0, 3, 0, 3), "predicted_iou": 0.5},
    ]
    monkeypatch.setattr(source.generator, "generate", lambda image: records)
    masks = source(rgb(8, 8), "img")
    assert [int(m.sum()) for m in masks] == [4, 9, 1]
    monkeypatch.setattr(source.generator, "generate", lambda image: [])
    assert source(rgb(8, 8), "img").shape == (0, 8, 8)


def test_load_sam_errors(tmp_path: Path, tiny_sam_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="unknown SAM model type 'vit_x'"):
        load_sam("vit_x", tiny_sam_checkpoint)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_sam("tiny", tmp_path / "missing.pth")
    state = torch.load(tiny_sam_checkpoint, weights_only=True)
    state.pop(next(iter(state)))
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(ValueError, match="broken.pth: not a SAM 'tiny' state dict"):
        load_sam("tiny", broken)


# --- policy -------------------------------------------------------------------------------------------------------


def test_policy_drops_small_full_duplicates_and_over_limit() -> None:
    h, w = 6, 8
    masks = np.stack(
        [
            box_mask(h, w, 0, 2, 0, 2),  # 4 px, touches the border: kept
            box_mask(h, w, 3, 4, 3, 4),  # 1 px: small
            box_mask(h, w, 0, h, 0, w),  # whole image
            box_mask(h, w, 0, 2, 0, 2),  # duplicate of 0
            box_mask(h, w, 2, 5, 2, 5),  # 9 px
            box_mask(h, w, 4, 6, 5, 8),  # 6 px: over the limit
            np.zeros((h, w), dtype=bool),  # empty
        ]
    )
    out = MaskPolicy(min_area=2, max_masks=2).apply(masks, "im")
    assert out.skip_reason is None and not out.skipped
    np.testing.assert_array_equal(out.masks, masks[[0, 4]])
    assert out.dropped == {"small": 2, "full_image": 1, "duplicate": 1, "over_limit": 1}
    assert out.source_count == 7


def test_policy_defaults_keep_one_pixel_and_full_image_optional() -> None:
    masks = np.stack([box_mask(4, 4, 0, 4, 0, 4), box_mask(4, 4, 1, 2, 1, 2)])
    assert len(MaskPolicy().apply(masks, "im").masks) == 1
    assert len(MaskPolicy(drop_full_image=False).apply(masks, "im").masks) == 2
    duplicates = np.stack([masks[1], masks[1]])
    assert len(MaskPolicy(deduplicate=False).apply(duplicates, "im").masks) == 2


def test_policy_skips_images_without_masks_with_a_reason() -> None:
    none = MaskPolicy().apply(np.zeros((0, 4, 4), dtype=bool), "im")
    assert none.skipped and none.skip_reason == "the mask source returned no mask"
    small = MaskPolicy(min_area=5).apply(np.stack([box_mask(4, 4, 0, 1, 0, 1)]), "im")
    assert small.skipped and small.skip_reason == "all masks dropped (1 small)"
    assert small.masks.shape == (0, 4, 4)


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_masks must be >= 1 or None"):
        MaskPolicy(max_masks=0)
    with pytest.raises(ValueError, match="min_area must be >= 0"):
        MaskPolicy(min_area=-1)


def test_propose_masks_checks_the_source_output() -> None:
    image = rgb(6, 8)
    out = propose_masks(FixedSource(np.zeros((0, 6, 8), dtype=bool)), image, "im7", MaskPolicy())
    assert out.skip_reason == "fixed: the mask source returned no mask"
    with pytest.raises(ValueError, match=r"mask source 'fixed' on image im7: expected a \(K, 6, 8\) bool array"):
        propose_masks(FixedSource(np.zeros((1, 6, 9), dtype=bool)), image, "im7", MaskPolicy())
    with pytest.raises(ValueError, match=r"image im7: expected an \(H, W, 3\) uint8 RGB array"):
        propose_masks(FixedSource(np.zeros((0, 6, 8), dtype=bool)), image.astype(np.float32), "im7", MaskPolicy())


# --- CutLER matching ----------------------------------------------------------------------------------------------


def test_match_intersection_prefers_containing_mask_iou_prefers_tight() -> None:
    h, w = 10, 10
    guide = box_mask(h, w, 2, 5, 2, 5)  # 9 px
    candidates = np.stack(
        [
            box_mask(h, w, 0, 10, 0, 10),  # contains the guide, IoU 9/100
            box_mask(h, w, 2, 5, 2, 5),  # equal to the guide, IoU 1
            box_mask(h, w, 8, 10, 8, 10),  # disjoint
        ]
    )
    assert match_guides(guide[None], candidates, "intersection").tolist() == [0]
    assert match_guides(guide[None], candidates, "iou").tolist() == [1]


def test_match_ties_go_to_the_first_candidate_and_batch_over_guides() -> None:
    h, w = 6, 6
    candidates = np.stack([box_mask(h, w, 0, 3, 0, 6), box_mask(h, w, 0, 6, 0, 3), box_mask(h, w, 3, 6, 3, 6)])
    guides = np.stack([box_mask(h, w, 0, 1, 0, 1), box_mask(h, w, 5, 6, 5, 6), box_mask(h, w, 4, 5, 0, 1)])
    # guide 0 lies in candidates 0 and 1 (tie -> 0); guide 1 only in 2; guide 2 only in 1
    assert match_guides(guides, candidates).tolist() == [0, 2, 1]
    assert match_guides(guides[:0], candidates).shape == (0,)
    with pytest.raises(ValueError, match="unknown match rule 'dice'"):
        match_guides(guides, candidates, "dice")  # type: ignore[arg-type]


def write_pngs(folder: Path, masks: list[np.ndarray], names: list[str] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, mask in enumerate(masks):
        name = names[i] if names else f"{i}.png"
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / name)


def test_cutler_guided_selection_deduplicates_and_keeps_cutler_order(tmp_path: Path) -> None:
    h, w = 8, 8
    sam = np.stack([box_mask(h, w, 0, 4, 0, 4), box_mask(h, w, 4, 8, 4, 8), box_mask(h, w, 0, 8, 0, 8)])
    inner = FixedSource(sam)
    guides = [box_mask(h, w, 5, 6, 5, 6), box_mask(h, w, 6, 7, 6, 7), box_mask(h, w, 1, 2, 1, 2)]
    # files 0, 1, 2 in CutLER order; "10.png" sorts numerically after "2.png"
    names = ["0.png", "1.png", "2.png", "10.png"]
    write_pngs(tmp_path / "guides" / "img1", [*guides, box_mask(h, w, 1, 2, 1, 2)], names)
    source = CutLERGuidedSource(inner, tmp_path / "guides")
    out = source(rgb(h, w), "img1")
    # guides 0 and 1 both pick SAM mask 1 (intersection 1 with masks 1 and 2 -> tie -> 1); guide 2 picks mask 0
    np.testing.assert_array_equal(out, sam[[1, 0]])
    keep_all = CutLERGuidedSource(inner, tmp_path / "guides", deduplicate=False)(rgb(h, w), "img1")
    np.testing.assert_array_equal(keep_all, sam[[1, 1, 0, 0]])
    assert source.name == "cutler+fixed"
    assert source.settings()["inner"] == {"name": "fixed", "count": 3}


def test_cutler_guided_without_detections_skips_inner(tmp_path: Path) -> None:
    inner = FixedSource(np.stack([box_mask(4, 4, 0, 2, 0, 2)]))
    (tmp_path / "guides" / "empty").mkdir(parents=True)
    source = CutLERGuidedSource(inner, tmp_path / "guides")
    assert source(rgb(4, 4), "missing").shape == (0, 4, 4)
    assert source(rgb(4, 4), "empty").shape == (0, 4, 4)
    assert inner.calls == 0


def test_cutler_guided_errors(tmp_path: Path) -> None:
    inner = FixedSource(np.stack([box_mask(4, 4, 0, 2, 0, 2)]))
    with pytest.raises(FileNotFoundError, match="CutLER guide folder not found"):
        CutLERGuidedSource(inner, tmp_path / "nope")
    write_pngs(tmp_path / "g" / "a", [box_mask(5, 4, 0, 1, 0, 1)])
    write_pngs(tmp_path / "g" / "b", [box_mask(4, 4, 0, 1, 0, 1)], ["mask.png"])
    source = CutLERGuidedSource(inner, tmp_path / "g")
    with pytest.raises(ValueError, match=r"a/0.png: mask is 5x4 \(HxW\), expected 4x4"):
        source(rgb(4, 4), "a")
    with pytest.raises(ValueError, match="must be named <index>.png, found mask.png"):
        source(rgb(4, 4), "b")


# --- ground truth -------------------------------------------------------------------------------------------------


def test_gt_masks_from_refer_instances(tmp_path: Path) -> None:
    instances = {
        "images": [
            {"id": 5, "file_name": "COCO_train2014_000000000005.jpg", "height": 6, "width": 8},
            {"id": 6, "file_name": "six.jpg", "height": 6, "width": 8},
        ],
        "annotations": [
            {"id": 1, "image_id": 5, "segmentation": [[1, 1, 3, 1, 3, 3, 1, 3]], "iscrowd": 0},
            {"id": 2, "image_id": 5, "segmentation": [[0, 0, 8, 0, 8, 4, 0, 4]], "iscrowd": 0},
            {"id": 3, "image_id": 5, "segmentation": {"size": [6, 8], "counts": [6, 2, 40]}, "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(instances))
    source = GroundTruthMaskSource(path)
    assert source.kind == "refer" and source.name == "gt-refer"
    masks = source(rgb(6, 8), "5")
    assert masks.shape == (3, 6, 8)
    assert [int(m.sum()) for m in masks] == [32, 4, 2]  # ranked by area
    np.testing.assert_array_equal(masks[1], box_mask(6, 8, 1, 3, 1, 3))
    np.testing.assert_array_equal(masks[2], box_mask(6, 8, 0, 2, 1, 2))  # column-major RLE: column 1, rows 0-1
    np.testing.assert_array_equal(source(rgb(6, 8), "COCO_train2014_000000000005.jpg"), masks)
    assert source(rgb(6, 8), "6").shape == (0, 6, 8)
    with pytest.raises(ValueError, match=r"annotates 6x8 \(HxW\) but the image is 7x8"):
        source(rgb(7, 8), "5")
    with pytest.raises(KeyError, match="image '9' is not in"):
        source(rgb(6, 8), "9")


def test_gt_masks_from_phrasecut_tasks(tmp_path: Path) -> None:
    square = [[[1, 1], [4, 1], [4, 3], [1, 3]]]
    other = [[[5, 0], [7, 0], [7, 1], [5, 1]], [[0, 5], [1, 5]]]
    tasks = [
        {"task_id": "7__1", "image_id": 7, "Polygons": [square], "phrase": "a"},
        {"task_id": "7__2", "image_id": 7, "Polygons": [square, other], "phrase": "b"},
    ]
    path = tmp_path / "refer_val.json"
    path.write_text(json.dumps(tasks))
    source = GroundTruthMaskSource(path)
    assert source.kind == "phrasecut"
    masks = source(rgb(6, 8), "7")
    assert masks.shape == (2, 6, 8)  # the shared square once
    np.testing.assert_array_equal(masks[0], box_mask(6, 8, 1, 4, 1, 5))  # outline included: rows 1-3, cols 1-4
    expected_other = box_mask(6, 8, 0, 2, 5, 8) | box_mask(6, 8, 5, 6, 0, 2)
    np.testing.assert_array_equal(masks[1], expected_other)
    np.testing.assert_array_equal(source(rgb(6, 8), "7.jpg"), masks)
    np.testing.assert_array_equal(polygons_to_mask([[[2, 2]]], 4, 4), np.zeros((4, 4), dtype=bool))


def test_gt_source_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "instances.json"
    bad.write_text(json.dumps({"images": [{"id": 1}], "annotations": []}))
    with pytest.raises(ValueError, match="instances.json: expected a refer instances.json"):
        GroundTruthMaskSource(bad)
    broken = tmp_path / "refer_train.json"
    broken.write_text("[{")
    with pytest.raises(ValueError, match="refer_train.json: cannot read the annotation JSON"):
        GroundTruthMaskSource(broken)


# --- unsupervised segmenter ---------------------------------------------------------------------------------------


def test_segmenter_finds_synthetic_objects() -> None:
    from ris.synthetic.scene import make_scene

    source = SegmenterMaskSource()
    ious = []
    for seed in range(4):
        scene = make_scene(np.random.default_rng(seed), domain="A", image_size=96)
        masks = propose_masks(source, scene.image, str(seed), MaskPolicy()).masks
        assert masks.dtype == bool and masks.shape[1:] == scene.image.shape[:2]
        for obj in scene.objects:
            ious.append(max(((obj.mask & m).sum() / (obj.mask | m).sum() for m in masks), default=0.0))
    assert np.mean(ious) >= 0.8


def test_segmenter_on_a_flat_scene() -> None:
    image = np.full((40, 40, 3), 128, dtype=np.uint8)
    image[5:15, 5:15] = (220, 40, 40)  # red square
    image[20:34, 22:36] = (40, 80, 220)  # blue square
    striped = box_mask(40, 40, 24, 36, 4, 16)
    image[striped] = (240, 200, 30)
    image[24:36:2, 4:16] = (120, 100, 15)  # dark stripes of the same hue
    masks = SegmenterMaskSource()(image, "flat")
    assert masks.dtype == bool and masks.shape[1:] == (40, 40)
    for target in (box_mask(40, 40, 5, 15, 5, 15), box_mask(40, 40, 20, 34, 22, 36), striped):
        best = max((target & m).sum() / (target | m).sum() for m in masks)
        assert best > 0.9
    assert SegmenterMaskSource()(np.full((20, 20, 3), 90, dtype=np.uint8), "blank").shape == (0, 20, 20)
    with pytest.raises(ValueError, match="min_area_fraction < max_area_fraction"):
        SegmenterMaskSource(min_area_fraction=0.6, max_area_fraction=0.5)
