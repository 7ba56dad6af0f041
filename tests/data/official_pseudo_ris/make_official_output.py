#!/usr/bin/env python3
"""Write a tiny output of the official Pseudo-RIS generator, in its formats (docs/method.md §2.4, §7.1), next to
this file.

    python tests/data/official_pseudo_ris/make_official_output.py

Files:

- ``images/COCO_train2014_{id:012d}.jpg``: images 11, 22, 33 (noise; 24x32, 20x28, 16x16);
- ``masks/{img_id}/{j}.png``: uint8 0/255 masks at image resolution, written with PIL as single-channel PNGs (the
  official code writes them with ``cv2.imwrite``). Image 22's folder holds 4 PNGs of which ``1.png`` is all zero:
  the official loader skips it, so its seg_ids 0, 1, 2 mean the PNGs 0, 2, 3 (the seg_id caveat, docs/method.md §3.2);
- ``distinctive_captions_cc3m.json``: JSON Lines written as the official script does (``json.dump`` of one dict
  per (image, mask), then a newline): image 11 with 2 masks, image 22 with 3, image 33 with one mask
  (``one_mask`` 1, ``doc`` = raw CLIP scores), and image 11's rows appended once more at the end (a rerun, as
  the official script appends to its file); 44 captions per mask in the official order (docs/method.md §4.2), with
  the trailing space the official decoding leaves, an apostrophe, a comma and double quotes;
- ``distinctive_captions_cc3m.csv``: the same rows as ``pandas.read_json(lines=True).reset_index().to_csv(
  index=False)`` writes them (columns ``index`` … ``one_mask``; lists as Python reprs; minimal CSV quoting),
  produced here with the csv module, so that pandas is not needed.

``EXPECTED`` below is what an import must recover (mask PNG per row, number of captioned masks). Deterministic.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
JSON_FILE = "distinctive_captions_cc3m.json"
CSV_FILE = "distinctive_captions_cc3m.csv"
COLUMNS = ["index", "img_name", "img_id", "seg_id", "num_sent", "pseudo_caption", "doc", "one_mask"]
# img_id: (height, width, boxes (top, left, bottom, right) per PNG; None = an all-zero PNG)
IMAGES = {
    11: (24, 32, [(2, 3, 12, 15), (10, 14, 22, 30)]),
    22: (20, 28, [(1, 1, 9, 9), None, (5, 10, 15, 20), (12, 2, 19, 26)]),
    33: (16, 16, [(4, 4, 12, 13)]),
}
# (img_id, seg_id) -> PNG index the captions were generated for, and K (masks captioned together)
EXPECTED = {(11, 0): 0, (11, 1): 1, (22, 0): 0, (22, 1): 2, (22, 2): 3, (33, 0): 0}
WORDS = ["man", "dog", "cat", "car", "tree", "sign", "boat", "chair", "cup", "horse", "bird"]


def caption(rng: np.random.Generator, seg_id: int, index: int) -> str:
    noun = WORDS[(seg_id * 3 + index) % len(WORDS)]
    templates = ["a {} on the left ", "the {} 's hat ", "a {}, standing ", 'a "fancy" {} ', "{} "]
    return templates[int(rng.integers(len(templates)))].format(noun)


def rows(rng: np.random.Generator) -> list[dict]:
    out = []
    for img_id, (_, _, boxes) in [*IMAGES.items(), (11, IMAGES[11])]:
        k = sum(box is not None for box in boxes)
        for seg_id in range(k):
            captions = [caption(rng, seg_id, i) for i in range(44)]
            if k == 1:
                doc = [float(v) for v in rng.uniform(15.0, 30.0, 44)]
            else:
                doc = [float(v) for v in rng.uniform(0.6, 1.8, 44)]
            out.append({"img_name": f"COCO_train2014_{img_id:012d}.jpg", "img_id": img_id, "seg_id": seg_id,
                        "num_sent": 44, "pseudo_caption": captions, "doc": doc, "one_mask": int(k == 1)})
    return out


def main() -> None:
    rng = np.random.default_rng(0)
    for img_id, (height, width, boxes) in IMAGES.items():
        image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        (HERE / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(HERE / "images" / f"COCO_train2014_{img_id:012d}.jpg", quality=90)
        folder = HERE / "masks" / str(img_id)
        folder.mkdir(parents=True, exist_ok=True)
        for j, box in enumerate(boxes):
            mask = np.zeros((height, width), np.uint8)
            if box is not None:
                top, left, bottom, right = box
                mask[top:bottom, left:right] = 255
            Image.fromarray(mask, "L").save(folder / f"{j}.png")
    data = rows(rng)
    with open(HERE / JSON_FILE, "w") as handle:
        for row in data:
            json.dump(row, handle)
            handle.write("\n")
    with open(HERE / CSV_FILE, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for index, row in enumerate(data):
            writer.writerow([index, row["img_name"], row["img_id"], row["seg_id"], row["num_sent"],
                             str(row["pseudo_caption"]), str(row["doc"]), row["one_mask"]])


if __name__ == "__main__":
    main()
