"""A tiny synthetic world, tiny open_clip folders and pseudo-label shards for the workflow tests.

Everything goes through the real paths: the world is written by :func:`ris.synthetic.world.write_world` in the
refer/PhraseCut formats, models are ``local-dir:`` folders with the world's word vocabulary, and the pseudo-labels
are real shard folders (:class:`ris.pseudo.shards.ShardWriter`) whose captions are the world's expressions.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch

from ris.formats.coco import segmentation_to_mask
from ris.open_clip_models import create_open_clip, save_local_dir
from ris.pseudo.records import PseudoRecord, mask_box, mask_to_rle
from ris.pseudo.shards import ImageResult, ShardWriter, merge_manifests
from ris.synthetic.vocabulary import world_tokenizer
from ris.synthetic.world import WorldPaths, write_world

WORLD = {"seed": 0, "image_size": 64, "n_train": 10, "n_val": 3, "n_test": 3, "n_b_train": 2, "n_b_val": 2,
         "n_b_test": 3}
SIZE = 64


def make_world(root: Path) -> WorldPaths:
    """The tiny world (about 4 s to write)."""
    return write_world(root, **WORLD)


def clip_dir(root: Path, arch: str = "tiny-RN", seed: int = 0, name: str | None = None) -> str:
    """A ``local-dir:`` folder ``root/(name or arch)`` of the open_clip architecture ``arch`` (random weights, world
    vocabulary)."""
    torch.manual_seed(seed)
    tokenizer = world_tokenizer()
    model = create_open_clip(arch, tokenizer=tokenizer).model
    folder = save_local_dir(root / (name or arch), arch, model, tokenizer)
    return f"local-dir:{folder}"


def cris_args(backbone: str) -> list[str]:
    """``ris`` arguments of a tiny CRIS on ``backbone``."""
    return [
        "--model", "CRIS", "--model.backbone", backbone, "--model.pretrained", "null",
        "--model.input_size", str(SIZE), "--model.fpn_out", "[16, 32, 64]", "--model.nhead", "2",
        "--model.dim_ffn", "32", "--model.num_layers", "1",
    ]


def trainer_args(root: Path, name: str, steps: int | None = None) -> list[str]:
    """CPU trainer arguments logging to ``root/name`` with the CSV logger (no checkpoints unless fitting)."""
    args = [
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(root), "--trainer.logger.name", name,
        "--trainer.enable_model_summary", "false",
    ]
    if steps is not None:
        args += ["--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "0", "--trainer.max_epochs", "1"]
    return args


def write_pseudo_shards(world: WorldPaths, out: Path) -> Path:
    """Pseudo-label shards over the world's domain-A train images: one record per annotated object, its captions
    the object's expressions with DoS 2.0 (all above τ)."""
    refs = pickle.loads((world.refcoco / "refs(unc).p").read_bytes())
    instances = json.loads((world.refcoco / "instances.json").read_text())
    images = {img["id"]: img for img in instances["images"]}
    annotations = {ann["id"]: ann for ann in instances["annotations"]}
    per_image: dict[int, list[dict]] = {}
    for ref in refs:
        if ref["split"] == "train":
            per_image.setdefault(ref["image_id"], []).append(ref)
    writer = ShardWriter(out, 0, {"generator": "tests.workflow_world"}, images_per_shard=4,
                         image_root=str(world.image_dir))
    for image_id, image_refs in sorted(per_image.items()):
        img = images[image_id]
        records = []
        for index, ref in enumerate(image_refs):
            mask = segmentation_to_mask(annotations[ref["ann_id"]]["segmentation"], img["height"], img["width"])
            captions = [s["sent"] for s in ref["sentences"]]
            records.append(PseudoRecord(
                sample_id=f"{image_id}:{index}", image_id=str(image_id), image=img["file_name"],
                height=img["height"], width=img["width"], mask_index=index, mask=mask_to_rle(mask),
                box=mask_box(mask), area=int(mask.sum()), num_masks=len(image_refs), one_mask=len(image_refs) == 1,
                contrast=len(image_refs) > 1, captions=captions, sampler=["beam"] * len(captions),
                crop=[0] * len(captions), dos=[2.0] * len(captions), uos=[None] * len(captions),
                cos=[None] * len(captions), generator="",
            ))
        writer.add(ImageResult(str(image_id), records))
    writer.flush()
    merge_manifests(out)
    return out
