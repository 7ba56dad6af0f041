"""Reader of the ``refer`` format (RefCOCO, RefCOCO+, RefCOCOg): ``refs(<split_by>).p`` + ``instances.json`` + images.

One :class:`~ris.datamodules.referring_dataset.ReferringItem` per ref of the requested split; the mask is the union
of the referred annotation's COCO polygons or RLEs, decoded with pycocotools and binarised. A segmentation is a list
of polygons, a list of RLE dicts (the form the refer API's ``getMask`` decodes, written by ``ris export``) or one RLE
dict (COCO style); RLE ``counts`` may be compressed (a string) or uncompressed (a list of run lengths). Split
matching follows the refer API: ``testA``/``testB``/``testC`` match refs whose split contains that letter, ``test``
matches any split containing "test", other names match exactly. The pickles may come from Python 2 (byte strings
are decoded as UTF-8).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from .bad_samples import BadSampleError
from .referring_dataset import ReferringItem, Sentence

DEFAULT_IMAGE_DIR = "images/mscoco/images/train2014"


def _compressed_rle(rle: dict, height: int, width: int) -> dict:
    """One RLE dict (compressed or uncompressed ``counts``) as a pycocotools compressed RLE."""
    counts = rle["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects(rle, height, width)
    return {"size": list(rle["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}


@dataclass(frozen=True)
class CocoRegion:
    """A COCO ``segmentation``: a list of flat polygons or of RLE dicts (unioned), or one RLE dict."""

    segmentation: Any

    def rasterise(self, height: int, width: int) -> np.ndarray:
        seg = self.segmentation
        if isinstance(seg, dict):
            rle = _compressed_rle(seg, height, width)
        elif isinstance(seg[0], dict):
            rle = mask_utils.merge([_compressed_rle(part, height, width) for part in seg])
        else:
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        return mask_utils.decode(rle).astype(bool)


def _decode_bytes(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.decode("utf-8")
    if isinstance(obj, list):
        return [_decode_bytes(v) for v in obj]
    if isinstance(obj, dict):
        return {_decode_bytes(k): _decode_bytes(v) for k, v in obj.items()}
    return obj


def load_refs(path: Path) -> list[dict]:
    """The list of ref dicts in a refs pickle (Python 2 or 3)."""
    data = path.read_bytes()
    try:
        try:
            refs = pickle.loads(data)
        except UnicodeDecodeError:
            refs = _decode_bytes(pickle.loads(data, encoding="bytes"))
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as err:
        raise ValueError(f"{path}: not a readable refs pickle ({type(err).__name__}: {err})") from err
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise ValueError(f"{path}: expected a list of ref dicts, got {type(refs).__name__}")
    return refs


def load_instances(path: Path) -> tuple[dict[int, dict], dict[int, dict]]:
    """``(images by id, annotations by id)`` of an ``instances.json``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: instances file not found")
    try:
        data = json.loads(path.read_text())
        images = {int(im["id"]): im for im in data["images"]}
        annotations = {int(a["id"]): a for a in data["annotations"]}
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: expected 'images' and 'annotations' lists of records with 'id's ({err!r})") from err
    return images, annotations


def split_matches(ref_split: str, wanted: str) -> bool:
    """The refer API's split rule (see the module docstring)."""
    if wanted in ("testA", "testB", "testC"):
        return wanted[-1] in ref_split
    if wanted == "test":
        return "test" in ref_split
    return ref_split == wanted


def segmentation_problem(segmentation: Any) -> str | None:
    """Why ``segmentation`` cannot be decoded (degenerate or malformed polygon, unknown type), or ``None``."""
    if isinstance(segmentation, dict):
        return None if {"counts", "size"} <= segmentation.keys() else "RLE segmentation without 'counts' and 'size'"
    if not isinstance(segmentation, list) or not segmentation:
        return f"expected a non-empty list of polygons or an RLE dict, got {segmentation!r:.60}"
    if all(isinstance(part, dict) for part in segmentation):
        bad = [k for k, part in enumerate(segmentation) if not {"counts", "size"} <= part.keys()]
        return f"RLE {bad[0]} of the segmentation lacks 'counts' and 'size'" if bad else None
    for k, polygon in enumerate(segmentation):
        if not isinstance(polygon, list) or not all(isinstance(v, (int, float)) for v in polygon):
            return f"polygon {k} is not a flat list of numbers"
        if len(polygon) < 6 or len(polygon) % 2:
            return f"degenerate polygon {k}: {len(polygon)} coordinates, expected an even number >= 6 (3 points)"
    return None


def read_refer(
    data_root: str | Path, dataset: str, split_by: str, split: str, image_dir: str | Path | None = None
) -> tuple[list[ReferringItem], list[tuple[BadSampleError, int]]]:
    """Items of ``split`` and the problems found (``(error, n_sentences)``), without loading any image.

    Missing or unreadable refs/instances files raise immediately (they are not per-sample problems).
    """
    folder = Path(data_root) / dataset
    refs_path = folder / f"refs({split_by}).p"
    instances_path = folder / "instances.json"
    if not refs_path.is_file():
        raise FileNotFoundError(f"{refs_path}: refs file not found (dataset {dataset!r}, split_by {split_by!r})")
    refs = load_refs(refs_path)
    images, annotations = load_instances(instances_path)
    image_root = Path(data_root) / DEFAULT_IMAGE_DIR if image_dir is None else Path(image_dir)
    selected = [r for r in refs if split_matches(str(r.get("split", "")), split)]
    if not selected:
        present = sorted({str(r.get("split")) for r in refs})
        raise ValueError(f"{refs_path}: no refs of split {split!r}; splits present: {present}")
    items: list[ReferringItem] = []
    problems: list[tuple[BadSampleError, int]] = []
    file_exists: dict[Path, bool] = {}
    for ref in selected:
        name = f"ref {ref.get('ref_id', '?')}"
        sentences = ref.get("sentences")
        n_sentences = len(sentences) if isinstance(sentences, list) else 0
        try:
            item = _item(ref, name, refs_path, instances_path, images, annotations, image_root, file_exists)
        except BadSampleError as err:
            problems.append((err, n_sentences))
            continue
        items.append(item)
    return items, problems


def _item(
    ref: dict,
    name: str,
    refs_path: Path,
    instances_path: Path,
    images: dict[int, dict],
    annotations: dict[int, dict],
    image_root: Path,
    file_exists: dict[Path, bool],
) -> ReferringItem:
    missing = [k for k in ("ref_id", "ann_id", "image_id", "sentences") if k not in ref]
    if missing:
        raise BadSampleError(str(refs_path), name, f"ref record lacks {missing}")
    ann_id, image_id = int(ref["ann_id"]), int(ref["image_id"])
    if ann_id not in annotations:
        raise BadSampleError(str(refs_path), name, f"annotation {ann_id} is not in {instances_path}")
    if image_id not in images:
        raise BadSampleError(str(refs_path), name, f"image {image_id} is not in {instances_path}")
    sentences = ref["sentences"]
    if not sentences or not all(isinstance(s, dict) and "sent" in s and "sent_id" in s for s in sentences):
        raise BadSampleError(str(refs_path), name, "expected a non-empty list of sentences with 'sent' and 'sent_id'")
    segmentation = annotations[ann_id].get("segmentation")
    problem = segmentation_problem(segmentation)
    if problem:
        raise BadSampleError(str(instances_path), f"{name} (annotation {ann_id})", problem)
    image = images[image_id]
    missing = [k for k in ("file_name", "height", "width") if k not in image]
    if missing:
        raise BadSampleError(str(instances_path), name, f"image record {image_id} lacks {missing}")
    path = image_root / image["file_name"]
    if path not in file_exists:
        file_exists[path] = path.is_file()
    if not file_exists[path]:
        raise BadSampleError(str(path), name, f"image file of image {image_id} not found")
    return ReferringItem(
        image_path=path,
        image_id=image_id,
        sample_id=str(ref["ref_id"]),
        name=name,
        source=str(instances_path),
        region=CocoRegion(segmentation),
        sentences=[Sentence(int(s["sent_id"]), str(s["sent"])) for s in sentences],
        region_key=("ref", int(ref["ref_id"])),
        expected_size=(int(image["height"]), int(image["width"])),
    )
