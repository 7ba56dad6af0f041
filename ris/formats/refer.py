"""The ``refer`` format of RefCOCO, RefCOCO+ and RefCOCOg (docs/data.md §1): ``refs(<split_by>).p`` +
``instances.json`` + images.

:func:`read_refer` gives one :class:`~ris.formats.items.ReferringItem` per ref of the requested split; the mask is
the union of the referred annotation's COCO polygons (or its RLE), decoded with pycocotools and binarised
(:mod:`ris.formats.coco`).

Split matching is the refer API's rule everywhere (:func:`split_matches`, docs/data.md §1.3): ``testA`` /
``testB`` / ``testC`` match refs whose split contains that letter, ``test`` matches any split containing "test",
other names match exactly. The pickles may come from Python 2 (byte strings are decoded as UTF-8).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from ris.formats.coco import CocoRegion, load_instances, segmentation_problem
from ris.formats.errors import BadSampleError
from ris.formats.files import require_image_file
from ris.formats.items import ReferringItem, Sentence

DEFAULT_IMAGE_DIR = "images/mscoco/images/train2014"


def refer_files(data_root: str | Path, dataset: str, split_by: str) -> tuple[Path, Path]:
    """``(refs pickle, instances.json)`` of ``dataset`` (``refcoco``, ``refcoco+``, ``refcocog``) and partition
    ``split_by`` (``unc``, ``google``, ``umd``) under ``data_root``."""
    folder = Path(data_root) / dataset
    return folder / f"refs({split_by}).p", folder / "instances.json"


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


def split_matches(ref_split: str, wanted: str) -> bool:
    """The refer API's split rule (see the module docstring)."""
    if wanted in ("testA", "testB", "testC"):
        return wanted[-1] in ref_split
    if wanted == "test":
        return "test" in ref_split
    return ref_split == wanted


def read_refer(
    data_root: str | Path, dataset: str, split_by: str, split: str, image_dir: str | Path | None = None
) -> tuple[list[ReferringItem], list[tuple[BadSampleError, int]]]:
    """Items of ``split`` and the problems found (``(error, n_sentences)``), without loading any image.

    Missing or unreadable refs/instances files raise immediately (they are not per-sample problems).
    """
    refs_path, instances_path = refer_files(data_root, dataset, split_by)
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
    require_image_file(path, name, image_id, file_exists)
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
