"""Mask proposal sources behind one interface, and the policy that turns their output into an image's masks.

A :class:`MaskSource` maps an RGB image ``(H, W, 3)`` uint8 and its id to boolean masks ``(K, H, W)`` (K may be 0),
**ranked** best first, and describes itself with a ``name`` and a ``settings()`` dict for provenance. Sources:

- :class:`SAMMaskSource`: SAM automatic masks (``segment_anything``), the paper's generator settings (method.md
  §2.2: ``pred_iou_thresh=0.5``, the rest SAM defaults); ranked by SAM's predicted IoU.
- :class:`CutLERGuidedSource`: the paper's CutLER-guided selection (§2.3) of another source's masks. CutLER is a
  detectron2 model, so its instance masks are read from files, one folder per image; ranked in CutLER order.
- :class:`GroundTruthMaskSource`: every annotated instance of the image from a RefCOCO ``instances.json`` or a
  PhraseCut ``refer_{split}.json`` (the paper's "GT masks" setting); ranked by area, largest first.
- :class:`SegmenterMaskSource`: an unsupervised class-agnostic segmenter (scikit-image), no checkpoint needed; the
  stand-in for SAM on CPU-only machines; ranked by contrast with the surroundings, highest first.

:class:`MaskPolicy` then drops empty/small masks and masks covering the whole image, removes exact duplicates (a
fix, §0.1) and keeps the first ``max_masks`` masks of the ranking (the most confident for SAM/CutLER/segmenter,
the largest for ground truth). An image left with no mask is skipped with a reason (:func:`propose_masks`).
Masks touching the image border are kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image, ImageDraw
from pycocotools import mask as coco_mask

MatchRule = Literal["intersection", "iou"]


@runtime_checkable
class MaskSource(Protocol):
    """Anything that proposes masks for an image.

    ``__call__(image (H, W, 3) uint8 RGB, image_id) -> (K, H, W) bool``, ranked best first; K may be 0.
    """

    name: str

    def settings(self) -> dict[str, Any]: ...

    def __call__(self, image: np.ndarray, image_id: str) -> npt.NDArray[np.bool_]: ...


def check_rgb(image: np.ndarray, image_id: str) -> tuple[int, int]:
    """Validate an ``(H, W, 3)`` uint8 image and return ``(H, W)``."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}"
        raise ValueError(f"image {image_id}: expected an (H, W, 3) uint8 RGB array, got {desc}")
    return int(image.shape[0]), int(image.shape[1])


def _empty(height: int, width: int) -> np.ndarray:
    return np.zeros((0, height, width), dtype=bool)


def flatten(masks: np.ndarray) -> np.ndarray:
    """``(K, H, W)`` → ``(K, H·W)`` (also for K = 0)."""
    return masks.reshape(masks.shape[0], masks.shape[1] * masks.shape[2])


def duplicate_free(masks: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of every distinct mask of ``masks`` ``(K, H, W)``, in order."""
    seen: set[bytes] = set()
    keep = []
    for index, packed in enumerate(np.packbits(flatten(masks), axis=1)):
        key = packed.tobytes()
        if key not in seen:
            seen.add(key)
            keep.append(index)
    return np.asarray(keep, dtype=np.int64)


@dataclass
class MaskProposals:
    """The masks kept for one image.

    Attributes:
        image_id: the image id.
        masks: ``(K, H, W)`` bool, in the source's ranking order.
        source_count: how many masks the source returned.
        dropped: counts of masks dropped per reason (``small``, ``full_image``, ``duplicate``, ``over_limit``).
        skip_reason: why the image has no mask (``None`` when K > 0).
    """

    image_id: str
    masks: np.ndarray
    source_count: int
    dropped: dict[str, int] = field(default_factory=dict)
    skip_reason: str | None = None

    @property
    def skipped(self) -> bool:
        return self.skip_reason is not None


@dataclass
class MaskPolicy:
    """What happens to a source's masks before captioning.

    Applied in this order: masks with fewer than ``min_area`` pixels are dropped (empty masks always; the default
    1 drops only those); masks covering every pixel are dropped when ``drop_full_image`` (the official caption script
    skips single-valued mask PNGs, method.md §3.2); exact duplicates are removed keeping the first (``deduplicate``, the
    §0.1 fix); then the first ``max_masks`` masks of the source's ranking are kept (``None`` = no limit). This
    limit is independent of the decoder's contrast bound (a separate decoding setting).
    """

    min_area: int = 1
    max_masks: int | None = 30
    deduplicate: bool = True
    drop_full_image: bool = True

    def __post_init__(self) -> None:
        if self.min_area < 0:
            raise ValueError(f"MaskPolicy.min_area must be >= 0, got {self.min_area}")
        if self.max_masks is not None and self.max_masks < 1:
            raise ValueError(f"MaskPolicy.max_masks must be >= 1 or None, got {self.max_masks}")

    def settings(self) -> dict[str, Any]:
        return asdict(self)

    def apply(self, masks: np.ndarray, image_id: str) -> MaskProposals:
        """Filter ``masks`` ``(K, H, W)`` bool; the result is skipped (with a reason) when no mask remains."""
        source_count = len(masks)
        dropped = {"small": 0, "full_image": 0, "duplicate": 0, "over_limit": 0}
        areas = flatten(masks).sum(axis=1)
        keep = areas >= max(self.min_area, 1)
        dropped["small"] = int((~keep).sum())
        if self.drop_full_image:
            full = areas == masks.shape[1] * masks.shape[2]
            dropped["full_image"] = int((full & keep).sum())
            keep &= ~full
        masks = masks[keep]
        if self.deduplicate:
            unique = duplicate_free(masks)
            dropped["duplicate"] = len(masks) - len(unique)
            masks = masks[unique]
        if self.max_masks is not None and len(masks) > self.max_masks:
            dropped["over_limit"] = len(masks) - self.max_masks
            masks = masks[: self.max_masks]
        reason = None
        if len(masks) == 0:
            detail = ", ".join(f"{n} {why}" for why, n in dropped.items() if n)
            reason = "the mask source returned no mask" if source_count == 0 else f"all masks dropped ({detail})"
        return MaskProposals(image_id, masks, source_count, dropped, reason)


def propose_masks(source: MaskSource, image: np.ndarray, image_id: str, policy: MaskPolicy) -> MaskProposals:
    """Run ``source`` on ``image`` ``(H, W, 3)`` uint8 RGB, check its output and apply ``policy``."""
    height, width = check_rgb(image, image_id)
    masks = source(image, image_id)
    if not isinstance(masks, np.ndarray) or masks.dtype != bool or masks.shape[1:] != (height, width):
        desc = f"{getattr(masks, 'dtype', type(masks).__name__)} {getattr(masks, 'shape', '')}"
        raise ValueError(
            f"mask source {source.name!r} on image {image_id}: expected a (K, {height}, {width}) bool array, "
            f"got {desc}"
        )
    proposals = policy.apply(masks, image_id)
    if proposals.skip_reason is not None:
        proposals.skip_reason = f"{source.name}: {proposals.skip_reason}"
    return proposals


# --- SAM ----------------------------------------------------------------------------------------------------------


def build_tiny_sam() -> torch.nn.Module:
    """A SAM of the real classes with tiny widths (64 px input, 32-d embeddings) for tests; random weights."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    size, patch, dim = 64, 16, 32
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=size,
            patch_size=patch,
            embed_dim=dim,
            depth=2,
            num_heads=2,
            mlp_ratio=2.0,
            out_chans=dim,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=2,
            global_attn_indexes=(1,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(size // patch, size // patch),
            input_image_size=(size, size),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
            transformer_dim=dim,
            iou_head_depth=2,
            iou_head_hidden_dim=16,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()


def _registry_builder(model_type: str) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        from segment_anything import sam_model_registry

        return sam_model_registry[model_type](checkpoint=None)

    return build


SAM_ARCHITECTURES: dict[str, Callable[[], torch.nn.Module]] = {
    "vit_h": _registry_builder("vit_h"),
    "vit_l": _registry_builder("vit_l"),
    "vit_b": _registry_builder("vit_b"),
    "tiny": build_tiny_sam,
}


def load_sam(model_type: str, checkpoint: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build the SAM architecture ``model_type`` and load the state dict in ``checkpoint`` into it (strictly)."""
    if model_type not in SAM_ARCHITECTURES:
        raise ValueError(f"unknown SAM model type {model_type!r}; known: {', '.join(SAM_ARCHITECTURES)}")
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"SAM checkpoint not found: {path}")
    model = SAM_ARCHITECTURES[model_type]()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError) as err:
        raise ValueError(f"{path}: not a SAM {model_type!r} state dict ({err})") from err
    return model.to(device).eval()


class SAMMaskSource:
    """SAM automatic mask generation (``SamAutomaticMaskGenerator``, ``binary_mask`` output).

    The defaults are the paper's generator settings (method.md §2.2): ``pred_iou_thresh=0.5``, everything else at
    the SAM defaults. Masks are ranked by SAM's predicted IoU (descending, stable), which with
    ``crop_n_layers=0`` is SAM's own output order. ``min_mask_region_area > 0`` needs OpenCV (a SAM requirement).
    """

    name = "sam"

    def __init__(
        self,
        checkpoint: str | Path,
        model_type: str = "vit_h",
        device: str = "cpu",
        points_per_side: int = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.5,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        min_mask_region_area: int = 0,
    ) -> None:
        from segment_anything import SamAutomaticMaskGenerator

        self.checkpoint = str(checkpoint)
        self.model_type = model_type
        self.generator_settings = {
            "points_per_side": points_per_side,
            "points_per_batch": points_per_batch,
            "pred_iou_thresh": pred_iou_thresh,
            "stability_score_thresh": stability_score_thresh,
            "stability_score_offset": stability_score_offset,
            "box_nms_thresh": box_nms_thresh,
            "crop_n_layers": crop_n_layers,
            "crop_nms_thresh": crop_nms_thresh,
            "crop_overlap_ratio": crop_overlap_ratio,
            "crop_n_points_downscale_factor": crop_n_points_downscale_factor,
            "min_mask_region_area": min_mask_region_area,
        }
        self.model = load_sam(model_type, checkpoint, device)
        self.generator = SamAutomaticMaskGenerator(self.model, output_mode="binary_mask", **self.generator_settings)

    def settings(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "model_type": self.model_type, **self.generator_settings}

    def __call__(self, image: np.ndarray, image_id: str) -> npt.NDArray[np.bool_]:
        height, width = check_rgb(image, image_id)
        records = self.generator.generate(image)
        if not records:
            return _empty(height, width)
        order = sorted(range(len(records)), key=lambda i: -records[i]["predicted_iou"])
        return np.stack([records[i]["segmentation"] for i in order]).astype(bool)


# --- CutLER-guided selection --------------------------------------------------------------------------------------


def match_guides(guides: np.ndarray, candidates: np.ndarray, rule: MatchRule = "intersection") -> np.ndarray:
    """For each guide mask, the index of the best-matching candidate mask (method.md §2.3).

    Args:
        guides: ``(G, H, W)`` bool (CutLER instances).
        candidates: ``(M, H, W)`` bool (e.g. SAM masks), M >= 1.
        rule: ``"intersection"`` (the official code: arg-max of the intersection pixel count) or ``"iou"``
            (the paper's text).

    Returns:
        ``(G,)`` int64 candidate indices; ties go to the first (lowest) index.

    All intersection counts come from one matrix product of the flattened masks (exact: float32 for images up to
    2**24 pixels, float64 above).
    """
    if rule not in ("intersection", "iou"):
        raise ValueError(f"unknown match rule {rule!r}; expected 'intersection' or 'iou'")
    if len(candidates) == 0:
        raise ValueError("match_guides needs at least one candidate mask")
    if guides.shape[1:] != candidates.shape[1:]:
        raise ValueError(f"guide masks {guides.shape[1:]} and candidate masks {candidates.shape[1:]} differ in size")
    dtype = np.float32 if candidates[0].size <= 2**24 else np.float64
    flat_g, flat_c = flatten(guides).astype(dtype), flatten(candidates).astype(dtype)
    score = flat_g @ flat_c.T
    if rule == "iou":
        union = flat_g.sum(axis=1)[:, None] + flat_c.sum(axis=1)[None, :] - score
        score = np.divide(score, union, out=np.zeros_like(score), where=union > 0)
    return score.argmax(axis=1).astype(np.int64)


def read_mask_png(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A mask PNG (any non-zero pixel is foreground) as ``(H, W)`` bool; its size must be ``size`` = (H, W)."""
    try:
        with Image.open(path) as png:
            mask = np.asarray(png.convert("L")) > 0
    except OSError as err:
        raise ValueError(f"{path}: unreadable mask PNG ({err})") from err
    if mask.shape != size:
        raise ValueError(f"{path}: mask is {mask.shape[0]}x{mask.shape[1]} (HxW), expected {size[0]}x{size[1]}")
    return mask


def read_mask_folder(folder: Path, size: tuple[int, int]) -> np.ndarray:
    """The masks ``{folder}/0.png, 1.png, …`` in index order as ``(G, H, W)`` bool; a missing folder gives G = 0."""
    if not folder.is_dir():
        return _empty(*size)
    files = sorted(folder.glob("*.png"))
    bad = [f.name for f in files if not f.stem.isdigit()]
    if bad:
        raise ValueError(f"{folder}: mask files must be named <index>.png, found {', '.join(bad[:3])}")
    files.sort(key=lambda f: int(f.stem))
    if not files:
        return _empty(*size)
    return np.stack([read_mask_png(f, size) for f in files])


class CutLERGuidedSource:
    """Select, for each CutLER instance, the best-matching mask of another source (method.md §2.3).

    CutLER's instance masks are read from ``guide_dir/{image_id}/{j}.png`` (j = 0…G−1 in CutLER order, uint8,
    any non-zero pixel is foreground, original resolution). A missing folder means CutLER found nothing (the
    official script writes no folder then). Each instance picks one mask of ``inner`` by ``match``
    (``"intersection"``, the official code, or ``"iou"``); when two instances pick the same mask it is kept once
    (``deduplicate``, the §0.1 fix; ``False`` reproduces the official duplicates). Output order = CutLER order of
    the first instance that picked each mask.
    """

    def __init__(
        self, inner: MaskSource, guide_dir: str | Path, match: MatchRule = "intersection", deduplicate: bool = True
    ) -> None:
        if match not in ("intersection", "iou"):
            raise ValueError(f"unknown match rule {match!r}; expected 'intersection' or 'iou'")
        self.guide_dir = Path(guide_dir)
        if not self.guide_dir.is_dir():
            raise FileNotFoundError(f"CutLER guide folder not found: {self.guide_dir}")
        self.inner = inner
        self.match = match
        self.deduplicate = deduplicate
        self.name = f"cutler+{inner.name}"

    def settings(self) -> dict[str, Any]:
        return {
            "guide_dir": str(self.guide_dir),
            "match": self.match,
            "deduplicate": self.deduplicate,
            "inner": {"name": self.inner.name, **self.inner.settings()},
        }

    def __call__(self, image: np.ndarray, image_id: str) -> npt.NDArray[np.bool_]:
        size = check_rgb(image, image_id)
        guides = read_mask_folder(self.guide_dir / str(image_id), size)
        if len(guides) == 0:
            return _empty(*size)
        candidates = self.inner(image, image_id)
        if len(candidates) == 0:
            return _empty(*size)
        chosen = match_guides(guides, candidates, self.match)
        if self.deduplicate:
            _, first = np.unique(chosen, return_index=True)
            chosen = chosen[np.sort(first)]
        return candidates[chosen]


# --- ground-truth masks ---------------------------------------------------------------------------------------------


def polygons_to_mask(polygons: list[list[list[float]]], height: int, width: int) -> np.ndarray:
    """PhraseCut rasterisation (data.md §2.4): PIL polygons with int-truncated points, outline and fill, unioned."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        if len(polygon) >= 2:
            draw.polygon([(int(x), int(y)) for x, y in polygon], outline=1, fill=1)
    return np.asarray(canvas) > 0


def coco_segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO annotation's ``segmentation`` (polygon list, uncompressed or compressed RLE) as ``(H, W)`` bool."""
    if isinstance(segmentation, list):
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = coco_mask.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return coco_mask.decode(rle).astype(bool)


@dataclass
class _GTImage:
    """The annotations of one image: a rasteriser per instance and the annotated size (if known)."""

    instances: list[Callable[[int, int], np.ndarray]]
    size: tuple[int, int] | None


class GroundTruthMaskSource:
    """Every annotated instance of an image, read directly from the annotation file.

    ``annotations`` is a RefCOCO/+/g ``instances.json`` (every annotation of the image, crowd ones included;
    images keyed by COCO id and by file name) or a PhraseCut ``refer_{split}.json`` (every instance polygon set of
    every task, each instance once; keyed by Visual Genome image id and ``{id}.jpg``). ``kind="auto"`` decides by
    the file's content. Masks are ranked by area, largest first (stable).
    """

    def __init__(self, annotations: str | Path, kind: Literal["auto", "refer", "phrasecut"] = "auto") -> None:
        self.path = Path(annotations)
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{self.path}: cannot read the annotation JSON ({err})") from err
        if kind == "auto":
            kind = "refer" if isinstance(data, dict) and "annotations" in data else "phrasecut"
        self.kind = kind
        self.name = f"gt-{kind}"
        if kind == "refer":
            self.images = self._index_refer(data)
        elif kind == "phrasecut":
            self.images = self._index_phrasecut(data)
        else:
            raise ValueError(f"unknown annotation kind {kind!r}; expected 'auto', 'refer' or 'phrasecut'")

    def _index_refer(self, data: Any) -> dict[str, _GTImage]:
        try:
            images = {int(img["id"]): img for img in data["images"]}
            out = {str(i): _GTImage([], (int(img["height"]), int(img["width"]))) for i, img in images.items()}
            for ann in data["annotations"]:
                seg = ann["segmentation"]
                out[str(int(ann["image_id"]))].instances.append(
                    lambda h, w, seg=seg: coco_segmentation_to_mask(seg, h, w)
                )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{self.path}: expected a refer instances.json with 'images' (id, height, width, file_name) and "
                f"'annotations' (image_id, segmentation) ({type(err).__name__}: {err})"
            ) from err
        for image_id, img in images.items():
            out[str(img.get("file_name", image_id))] = out[str(image_id)]
        return out

    def _index_phrasecut(self, data: Any) -> dict[str, _GTImage]:
        out: dict[str, _GTImage] = {}
        seen: dict[str, set[str]] = {}
        try:
            for task in data:
                key = str(task["image_id"])
                entry = out.setdefault(key, _GTImage([], None))
                for polygons in task["Polygons"]:
                    ident = json.dumps(polygons)
                    if ident not in seen.setdefault(key, set()):
                        seen[key].add(ident)
                        entry.instances.append(lambda h, w, p=polygons: polygons_to_mask(p, h, w))
        except (KeyError, TypeError) as err:
            raise ValueError(
                f"{self.path}: expected a PhraseCut refer_<split>.json list of tasks with 'image_id' and 'Polygons' "
                f"({type(err).__name__}: {err})"
            ) from err
        for key in list(out):
            out[f"{key}.jpg"] = out[key]
        return out

    def settings(self) -> dict[str, Any]:
        return {"annotations": str(self.path), "kind": self.kind}

    def __call__(self, image: np.ndarray, image_id: str) -> npt.NDArray[np.bool_]:
        height, width = check_rgb(image, image_id)
        entry = self.images.get(str(image_id))
        if entry is None:
            raise KeyError(f"image {image_id!r} is not in {self.path}")
        if entry.size is not None and entry.size != (height, width):
            raise ValueError(
                f"image {image_id}: {self.path} annotates {entry.size[0]}x{entry.size[1]} (HxW) but the image is "
                f"{height}x{width}"
            )
        if not entry.instances:
            return _empty(height, width)
        masks = np.stack([raster(height, width) for raster in entry.instances])
        order = np.argsort(-flatten(masks).sum(axis=1), kind="stable")
        return masks[order]


# --- unsupervised segmenter -----------------------------------------------------------------------------------------


class SegmenterMaskSource:
    """Class-agnostic masks from classical segmentation (scikit-image), no checkpoint: the CPU stand-in for SAM.

    Two granularities, like SAM's multi-level output:

    1. *fine*: a 3×3 median filter (removes pixel noise, keeps edges), Felzenszwalb graph segmentation (``scale``,
       ``min_size``, no extra blur), then hierarchical merging of adjacent regions whose mean colours are closer
       than ``merge_distance`` (RGB units), or — when both are saturated (``(max − min) / max`` of the mean colour
       above ``min_saturation``) — whose chromaticities ``rgb / (r + g + b)`` are closer than ``merge_chroma``
       (this joins the light and dark stripes of a patterned object, which differ in brightness only);
    2. *coarse*: the same on a Gaussian-blurred image (``blur_sigma``), which joins stripes too thin for step 1.

    Every connected region with an area between ``min_area_fraction`` and ``max_area_fraction`` of the image is a
    candidate. A coarse candidate is dropped when it overlaps a fine one with IoU > ``nms_iou`` or lies inside it
    by more than ``max_contained`` of its own area (object parts); regions of one level are disjoint. A candidate
    whose median colour differs from the median of the 2-pixel band around it by less than ``min_contrast`` (RGB
    units, on the median-filtered image) is dropped as background texture. Masks are ranked by that contrast,
    highest first.

    The defaults are tuned on the synthetic world's 64–96 px scenes (``scale`` and ``min_size`` are in pixels;
    raise them for large photographs). Measured with ``bench/mask_proposals.py`` (50 scenes per domain): mean
    best IoU with the objects 0.89 (domain A) and 0.86 (B) at 96 px, 0.83 / 0.79 at 64 px; about half to two
    thirds of the masks match an object (the rest are background patches, ring holes, object parts).
    """

    name = "segmenter"

    def __init__(
        self,
        scale: float = 300.0,
        min_size: int = 15,
        merge_distance: float = 25.0,
        merge_chroma: float = 0.03,
        min_saturation: float = 0.25,
        blur_sigma: float = 1.5,
        min_area_fraction: float = 0.003,
        max_area_fraction: float = 0.5,
        nms_iou: float = 0.7,
        max_contained: float = 0.8,
        min_contrast: float = 40.0,
    ) -> None:
        if not 0 <= min_area_fraction < max_area_fraction <= 1:
            raise ValueError(
                f"need 0 <= min_area_fraction < max_area_fraction <= 1, got {min_area_fraction}, {max_area_fraction}"
            )
        self.params = {
            "scale": scale,
            "min_size": min_size,
            "merge_distance": merge_distance,
            "merge_chroma": merge_chroma,
            "min_saturation": min_saturation,
            "blur_sigma": blur_sigma,
            "min_area_fraction": min_area_fraction,
            "max_area_fraction": max_area_fraction,
            "nms_iou": nms_iou,
            "max_contained": max_contained,
            "min_contrast": min_contrast,
        }

    def settings(self) -> dict[str, Any]:
        return dict(self.params)

    def _merge_weights(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``(E,)`` merge weights of region pairs with mean colours ``a``, ``b`` ``(E, 3)``; < 1 means merge."""
        weight = np.linalg.norm(a - b, axis=1) / self.params["merge_distance"]

        def saturation(c: np.ndarray) -> np.ndarray:
            return (c.max(axis=1) - c.min(axis=1)) / np.maximum(c.max(axis=1), 1e-6)

        def chromaticity(c: np.ndarray) -> np.ndarray:
            return c / np.maximum(c.sum(axis=1, keepdims=True), 1e-6)

        chroma = np.linalg.norm(chromaticity(a) - chromaticity(b), axis=1) / self.params["merge_chroma"]
        both = np.minimum(saturation(a), saturation(b)) > self.params["min_saturation"]
        return np.where(both, np.minimum(weight, chroma), weight)

    def _segment(self, smooth: np.ndarray) -> np.ndarray:
        """Region labels ``(H, W)`` of a float ``(H, W, 3)`` image: Felzenszwalb, then greedy merging of the
        adjacent pair with the lowest merge weight (recomputed on the merged means) while it is below 1."""
        from skimage.segmentation import felzenszwalb

        labels = felzenszwalb(smooth, scale=self.params["scale"], sigma=0, min_size=self.params["min_size"])
        count = labels.max() + 1
        flat = labels.ravel()
        total = np.stack([np.bincount(flat, smooth[..., c].ravel(), minlength=count) for c in range(3)], axis=1)
        pixels = np.bincount(flat, minlength=count).astype(np.float64)
        pairs = np.concatenate(
            [
                np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], axis=1),
                np.stack([labels[:-1].ravel(), labels[1:].ravel()], axis=1),
            ]
        )
        root = np.arange(count)
        while True:
            pairs = pairs[pairs[:, 0] != pairs[:, 1]]
            if len(pairs) == 0:
                break
            pairs = np.unique(np.sort(pairs, axis=1), axis=0)
            mean = total / pixels[:, None]
            weights = self._merge_weights(mean[pairs[:, 0]], mean[pairs[:, 1]])
            best = int(weights.argmin())
            if weights[best] >= 1.0:
                break
            keep, gone = pairs[best]
            total[keep] += total[gone]
            pixels[keep] += pixels[gone]
            root[root == gone] = keep
            pairs[pairs == gone] = keep
        return root[labels]

    def _components(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Connected components ``(H, W)`` (ids from 1) of a region map and the ids whose area is in range."""
        from skimage.measure import label

        components = label(labels, connectivity=1, background=-1)
        areas = np.bincount(components.ravel())
        low, high = self.params["min_area_fraction"] * labels.size, self.params["max_area_fraction"] * labels.size
        return components, np.flatnonzero((areas >= low) & (areas <= high))

    def __call__(self, image: np.ndarray, image_id: str) -> npt.NDArray[np.bool_]:
        from scipy import ndimage

        height, width = check_rgb(image, image_id)
        fine = ndimage.median_filter(image, size=(3, 3, 1)).astype(np.float64)
        sigma = self.params["blur_sigma"]
        coarse = ndimage.gaussian_filter(image.astype(np.float64), sigma=(sigma, sigma, 0))
        fine_map, fine_ids = self._components(self._segment(fine))
        coarse_map, coarse_ids = self._components(self._segment(coarse))
        # Regions of one level are disjoint, so only coarse candidates can be suppressed, by fine ones; all
        # overlaps come from the joint histogram of the two component maps.
        columns = int(coarse_map.max()) + 1
        joint = np.bincount((fine_map * columns + coarse_map).ravel(), minlength=(int(fine_map.max()) + 1) * columns)
        inter = joint.reshape(-1, columns)[fine_ids][:, coarse_ids].astype(np.float64)
        fine_area, coarse_area = np.bincount(fine_map.ravel())[fine_ids], np.bincount(coarse_map.ravel())[coarse_ids]
        iou = inter / (fine_area[:, None] + coarse_area[None, :] - inter)
        suppressed = ((iou > self.params["nms_iou"]) | (inter / coarse_area[None, :] > self.params["max_contained"]))
        candidates = [fine_map == i for i in fine_ids]
        candidates += [coarse_map == j for j, gone in zip(coarse_ids, suppressed.any(axis=0)) if not gone]
        scored = []
        for mask in candidates:
            band = ndimage.binary_dilation(mask, iterations=2) & ~mask
            if not band.any():
                continue
            contrast = float(np.linalg.norm(np.median(fine[mask], axis=0) - np.median(fine[band], axis=0)))
            if contrast >= self.params["min_contrast"]:
                scored.append((contrast, mask))
        if not scored:
            return _empty(height, width)
        return np.stack([mask for _, mask in sorted(scored, key=lambda item: -item[0])])
