#!/usr/bin/env python3
"""Generate the tiny committed fixtures in the ``refer`` and PhraseCut formats (run from any folder).

    python tests/data/make_fixtures.py

Writes, next to this script:

- ``refer/images/mscoco/images/train2014/``: 6 small images (RGB JPEG, a grayscale JPEG, an RGBA PNG);
- ``refer/refcoco/{instances.json, refs(unc).p, refs(google).p}``: polygons (multi-part, overlapping parts,
  float coordinates) and one compressed-RLE annotation; ``refs(unc).p`` is a **Python 2** pickle (byte strings,
  one non-ASCII UTF-8 sentence), ``refs(google).p`` a Python 3 one; unc splits train/val/testA/testB;
- ``refer/refcocog/{instances.json, refs(umd).p}``: the same objects with umd splits train/val/test;
- ``phrasecut/{refer_train,refer_val,refer_miniv,refer_test}.json``, ``image_data_split.json``, ``images/*.jpg``:
  COCO and non-COCO category names, a multi-instance task, a 2-point polygon, a 1-point polygon (ignored by the
  official rasteriser), float coordinates, and two tasks on the same region.

Everything is deterministic (fixed seeds), so re-running reproduces the files.
"""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

HERE = Path(__file__).resolve().parent


class Python2Pickler(pickle._Pickler):
    """Writes ``str`` as Python 2 byte strings (``SHORT_BINSTRING`` / ``BINSTRING``, UTF-8), as the refer pickles."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: str) -> None:
        data = obj.encode("utf-8")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str


def python2_pickle(obj: object, path: Path) -> None:
    with open(path, "wb") as f:
        Python2Pickler(f, protocol=2).dump(obj)


def noise_image(rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    base = rng.integers(40, 200, size=channels)
    image = base + rng.normal(0, 25, size=(height, width, channels))
    return np.clip(image, 0, 255).astype(np.uint8).squeeze()


def write_refer(rng: np.random.Generator) -> None:
    root = HERE / "refer"
    image_dir = root / "images" / "mscoco" / "images" / "train2014"
    image_dir.mkdir(parents=True, exist_ok=True)
    # (id, width, height, mode, extension)
    specs = [(1, 40, 30, "RGB", "jpg"), (2, 32, 48, "L", "jpg"), (3, 36, 36, "RGBA", "png"),
             (4, 44, 28, "RGB", "jpg"), (5, 30, 30, "RGB", "jpg"), (6, 48, 32, "RGB", "jpg")]
    images = []
    for image_id, width, height, mode, ext in specs:
        file_name = f"COCO_train2014_{image_id:012d}.{ext}"
        pixels = noise_image(rng, height, width, {"RGB": 3, "L": 1, "RGBA": 4}[mode])
        Image.fromarray(pixels, mode).save(image_dir / file_name, quality=90)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
    rle = mask_utils.encode(np.asfortranarray(np.pad(np.ones((6, 9), np.uint8), ((10, 20), (12, 15)))))
    segmentations = {
        101: [[5.0, 4.0, 30.0, 6.0, 18.0, 25.0]],  # triangle
        102: [[2, 2, 10, 2, 10, 10, 2, 10], [20, 15, 35, 15, 35, 28, 20, 28]],  # two parts
        201: [[3.5, 5.2, 20.7, 5.2, 20.7, 30.9, 3.5, 30.9], [10, 20, 28, 20, 28, 44, 10, 44]],  # overlapping parts
        301: [[4, 4, 30, 4, 17, 31]],
        302: {"size": rle["size"], "counts": rle["counts"].decode()},  # compressed RLE (RefCLEF style)
        401: [[1, 1, 40, 1, 40, 12, 1, 12]],
        402: [[6, 14, 20, 14, 13, 26]],
        501: [[5, 5, 25, 5, 25, 25, 5, 25]],
        601: [[10, 3, 40, 3, 40, 29, 10, 29]],
    }
    categories = [{"id": 1, "name": "person", "supercategory": "person"},
                  {"id": 3, "name": "car", "supercategory": "vehicle"}]
    annotations = []
    for ann_id, seg in segmentations.items():
        image = images[ann_id // 100 - 1]
        rles = mask_utils.frPyObjects(seg, image["height"], image["width"]) if isinstance(seg, list) else [
            {"size": seg["size"], "counts": seg["counts"].encode()}]
        merged = mask_utils.merge(rles) if isinstance(seg, list) else rles[0]
        annotations.append({
            "id": ann_id, "image_id": ann_id // 100, "category_id": 1 if ann_id % 2 else 3,
            "bbox": [float(v) for v in mask_utils.toBbox(merged)], "segmentation": seg,
            "area": float(mask_utils.area(merged)), "iscrowd": 0,
        })
    instances = {"images": images, "annotations": annotations, "categories": categories}
    texts = {
        101: ["man on the left", "guy in red"], 102: ["two boxes"], 201: ["the tall thing", "left block", "block"],
        301: ["pointy shape"], 302: ["small patch", "caf\u00e9 sign"], 401: ["top bar"], 402: ["triangle"],
        501: ["square"], 601: ["big box right", "box"],
    }
    unc_split = {1: "train", 2: "train", 3: "train", 4: "val", 5: "testA", 6: "testB"}
    google_split = {101: "train", 102: "val", 201: "train", 301: "test", 302: "train", 401: "train", 402: "val",
                    501: "train", 601: "test"}
    umd_split = {1: "train", 2: "train", 3: "val", 4: "val", 5: "test", 6: "test"}

    def refs(split_of, texts: dict[int, list[str]]) -> list[dict]:
        out, sent_id = [], 0
        for ref_id, (ann_id, sentences) in enumerate(texts.items(), start=1):
            image_id = ann_id // 100
            sents = []
            for text in sentences:
                sent_id += 1
                sents.append({"tokens": text.split(), "raw": text.capitalize(), "sent": text, "sent_id": sent_id})
            out.append({
                "ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "category_id": 1 if ann_id % 2 else 3,
                "split": split_of(image_id, ann_id), "sent_ids": [s["sent_id"] for s in sents], "sentences": sents,
                "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
            })
        return out

    for dataset in ("refcoco", "refcocog"):
        (root / dataset).mkdir(parents=True, exist_ok=True)
        (root / dataset / "instances.json").write_text(json.dumps(instances))
    python2_pickle(refs(lambda image_id, ann_id: unc_split[image_id], texts), root / "refcoco" / "refs(unc).p")
    with open(root / "refcoco" / "refs(google).p", "wb") as f:
        pickle.dump(refs(lambda image_id, ann_id: google_split[ann_id], texts), f)
    ascii_texts = {**texts, 302: ["small patch"]}
    python2_pickle(refs(lambda image_id, ann_id: umd_split[image_id], ascii_texts), root / "refcocog" / "refs(umd).p")


def write_phrasecut(rng: np.random.Generator) -> None:
    root = HERE / "phrasecut"
    (root / "images").mkdir(parents=True, exist_ok=True)
    sizes = {11: (40, 30), 12: (36, 44), 13: (30, 30), 14: (44, 32), 15: (32, 32)}  # id: (width, height)
    split_of = {11: "train", 12: "train", 13: "val", 14: "miniv", 15: "test"}
    for image_id, (width, height) in sizes.items():
        Image.fromarray(noise_image(rng, height, width, 3)).save(root / "images" / f"{image_id}.jpg", quality=90)

    def task(task_id: str, image_id: int, ann_ids: list[int], polygons: list, phrase: str, name: str) -> dict:
        boxes = []
        for instance in polygons:
            points = np.array([p for polygon in instance for p in polygon], dtype=float)
            x0, y0 = points.min(0)
            x1, y1 = points.max(0)
            boxes.append([float(x0), float(y0), float(x1 - x0), float(y1 - y0)])
        words = phrase.split()
        return {
            "task_id": task_id, "image_id": image_id, "ann_ids": ann_ids, "instance_boxes": boxes,
            "Polygons": polygons, "phrase": phrase,
            "phrase_structure": {"name": name, "attributes": words[:-len(name.split())], "relation_ids": [],
                                 "relation_descriptions": [], "type": "attribute" if len(words) > 1 else "name"},
        }

    tasks = {
        "train": [
            task("11__1101", 11, [1101], [[[[3.7, 2.2], [20.9, 4.5], [12.1, 25.8]]]], "standing person", "person"),
            task("11__1101-b", 11, [1101], [[[[3.7, 2.2], [20.9, 4.5], [12.1, 25.8]]]], "person", "person"),
            task("12__1201_1202", 12, [1201, 1202],
                 [[[[2, 2], [15, 2], [15, 12], [2, 12]]], [[[20, 25], [33, 25], [33, 40], [20, 40]]]],
                 "wooden dining table", "dining table"),
            task("12__1203", 12, [1203], [[[[5, 30], [30, 30]]]], "thin wire", "wire"),
        ],
        "val": [
            task("13__1301", 13, [1301], [[[[4, 4], [25, 6], [14, 27]], [[28, 28]]]], "red hexagon", "hexagon"),
            task("13__1302", 13, [1302], [[[[1, 1], [8, 1], [8, 8], [1, 8]]]], "people", "people"),
        ],
        "miniv": [task("14__1401", 14, [1401], [[[[10, 5], [40, 5], [40, 28], [10, 28]]]], "white car", "car")],
        "test": [
            task("15__1501", 15, [1501], [[[[0, 0], [31, 0], [31, 10], [0, 10]]]], "sky", "sky"),
            task("15__1502", 15, [1502], [[[[4.9, 14.9], [20.2, 14.9], [20.2, 30.6], [4.9, 30.6]]]], "tv", "tv"),
        ],
    }
    for split, split_tasks in tasks.items():
        (root / f"refer_{split}.json").write_text(json.dumps(split_tasks))
    image_data = [{"image_id": i, "coco_id": None, "flickr_id": None, "width": w, "height": h, "url": "",
                   "split": split_of[i]} for i, (w, h) in sizes.items()]
    (root / "image_data_split.json").write_text(json.dumps(image_data))


def main() -> None:
    write_refer(np.random.default_rng(0))
    write_phrasecut(np.random.default_rng(1))


if __name__ == "__main__":
    main()
