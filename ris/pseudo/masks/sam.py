"""SAM automatic masks (``segment_anything``) as a mask source, with the paper's generator settings
(docs/method.md §2.2).

:func:`load_sam` builds a SAM architecture (``vit_h``, ``vit_l``, ``vit_b``, or ``tiny`` for tests) and loads a
state-dict checkpoint (the official ``sam_vit_*.pth`` files) into it strictly; wrong files get one clear error
(:mod:`ris.checkpoints`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ris.checkpoints import CheckpointError, describe_state_dict, layout_of, load_weights, read_state_dict

from .proposals import at_working_resolution, check_rgb, empty_masks


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


SAM_LAYOUT = "a SAM checkpoint"
"""The :data:`ris.checkpoints.LAYOUTS` name of segment-anything state dicts."""
SAM_WIDTHS = {1280: "vit_h", 1024: "vit_l", 768: "vit_b", 32: "tiny"}
"""Width of ``image_encoder.pos_embed`` → SAM model type (how :func:`load_sam` recognises a checkpoint)."""


def sam_model_type(state: dict[str, torch.Tensor]) -> str | None:
    """The SAM model type of a state dict (by its image-encoder width), ``None`` when it is not a SAM checkpoint."""
    pos = state.get("image_encoder.pos_embed")
    if pos is None or not any(k.startswith("mask_decoder.") for k in state):
        return None
    return SAM_WIDTHS.get(int(pos.shape[-1]), f"unknown (width {int(pos.shape[-1])})")


def load_sam(model_type: str, checkpoint: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build the SAM architecture ``model_type`` and load the state dict in ``checkpoint`` into it (strictly).

    The file is read by :func:`ris.checkpoints.read_state_dict`; a file that is not a SAM checkpoint (random bytes,
    an HTML page, another model's weights) or a SAM checkpoint of another type raises one
    :class:`~ris.checkpoints.CheckpointError` naming the file, what it holds and the accepted model types.
    """
    if model_type not in SAM_ARCHITECTURES:
        raise ValueError(f"unknown SAM model type {model_type!r}; known: {', '.join(SAM_ARCHITECTURES)}")
    accepted = f"a segment-anything state dict such as sam_vit_h_4b8939.pth; model types {', '.join(SAM_ARCHITECTURES)}"
    what = f"a SAM {model_type} checkpoint"
    state, _ = read_state_dict(checkpoint, what, accepted)
    layout = layout_of(state)
    if layout is None or layout[0] != SAM_LAYOUT:
        raise CheckpointError(f"{checkpoint}: expected {what} ({accepted}), found {describe_state_dict(state)}")
    found = sam_model_type(state)
    if found not in (None, model_type):
        raise CheckpointError(
            f"{checkpoint}: a SAM {found} checkpoint, but model_type is {model_type!r}; set model_type: {found}"
        )
    model = SAM_ARCHITECTURES[model_type]()
    load_weights(model, state, checkpoint, what, accepted)
    return model.to(device).eval()


class SAMMaskSource:
    """SAM automatic mask generation (``SamAutomaticMaskGenerator``, ``binary_mask`` output).

    The defaults are the paper's generator settings (docs/method.md §2.2): ``pred_iou_thresh=0.5``, everything else at
    the SAM defaults. ``max_pixels`` (default 1024 × 1024, SAM's own input size) is the working resolution: a
    larger photo is shrunk to it and the masks are mapped back to full size (nearest), which bounds the memory of
    SAM's full-resolution mask post-processing (about 64 × 3 float masks per point batch); COCO-sized images
    (the paper's) are below it and unaffected. Masks are ranked by SAM's predicted IoU (descending, stable), which with
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
        max_pixels: int | None = 1024 * 1024,
    ) -> None:
        from segment_anything import SamAutomaticMaskGenerator

        self.checkpoint = str(checkpoint)
        self.model_type = model_type
        self.max_pixels = max_pixels
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
        return {"checkpoint": self.checkpoint, "model_type": self.model_type, "max_pixels": self.max_pixels,
                **self.generator_settings}

    def __call__(self, image: np.ndarray, image_id: str) -> npt.NDArray[np.bool_]:
        check_rgb(image, image_id)
        return at_working_resolution(self._propose, image, self.max_pixels)

    def _propose(self, image: np.ndarray) -> npt.NDArray[np.bool_]:
        height, width = image.shape[:2]
        records = self.generator.generate(image)
        if not records:
            return empty_masks(height, width)
        order = sorted(range(len(records)), key=lambda i: -records[i]["predicted_iou"])
        return np.stack([records[i]["segmentation"] for i in order]).astype(bool)
