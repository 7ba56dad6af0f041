"""The PhraseCut (VGPhraseCut v0) format (docs/data.md §2): ``refer_{split}.json`` task lists and
``images/{image_id}.jpg``.

:func:`read_phrasecut` gives one :class:`~ris.formats.items.ReferringItem` per task. A split string joins parts with
``_`` (``val_miniv`` = ``refer_val.json`` + ``refer_miniv.json``, the whole validation set). The mask is rasterised
like the official evaluator (:func:`polygons_to_mask`, docs/data.md §2.4): every polygon of every instance with at
least 2 points, coordinates truncated with ``int()``, drawn with PIL ``polygon(outline=1, fill=1)``, unioned.
Polygons with fewer than 2 points are ignored, as the official rasteriser does, and the count is logged; a task
left with no polygon is a bad sample.

``category_filter``: ``coco`` keeps tasks whose ``phrase_structure['name']`` is one of ``seen_categories`` (default:
the 80 COCO class names, exact string match), ``non_coco`` keeps the others (the "unseen" subset), ``all`` keeps all.

Image sizes come from the image files, so ``image_data_split.json`` is not needed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from ris.formats.errors import BadSampleError
from ris.formats.files import read_json, require_image_file
from ris.formats.items import AnnotatedImage, ReferringItem, Sentence

log = logging.getLogger(__name__)

CategoryFilter = Literal["all", "coco", "non_coco"]

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant",
    "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "dining table", "toilet",
    "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)


def polygons_to_mask(polygons: Sequence[Sequence[Sequence[float]]], height: int, width: int) -> np.ndarray:
    """The official PhraseCut rasterisation (docs/data.md §2.4) of ``polygons`` (lists of ``[x, y]`` points) as an
    ``(H, W)`` bool mask: PIL polygons with int-truncated points, outline and fill, unioned; polygons with fewer
    than 2 points are skipped."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        if len(polygon) >= 2:
            draw.polygon([(int(x), int(y)) for x, y in polygon], outline=1, fill=1)
    return np.asarray(canvas) > 0


@dataclass(frozen=True)
class PolygonRegion:
    """PhraseCut polygons of one or more instances (each polygon a sequence of ``[x, y]`` points)."""

    polygons: Sequence[Sequence[Sequence[float]]]

    def rasterise(self, height: int, width: int) -> np.ndarray:
        """``(height, width)`` bool mask (:func:`polygons_to_mask`)."""
        return polygons_to_mask(self.polygons, height, width)


def _is_point(point: Any) -> bool:
    return (
        isinstance(point, (list, tuple)) and len(point) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)
    )


def load_tasks(path: Path) -> list[dict]:
    """The task list of a ``refer_{split}.json``."""
    tasks = read_json(path, "PhraseCut task file")
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise ValueError(f"{path}: expected a list of task records")
    return tasks


def annotated_images(tasks: Any, path: Path) -> list[AnnotatedImage]:
    """Every image of the parsed task list ``tasks`` (read from ``path``) with each distinct instance (polygon set)
    of its tasks once, in file order; ids are the Visual Genome image ids, file names ``{id}.jpg``, sizes unknown."""
    images: dict[str, AnnotatedImage] = {}
    seen: dict[str, set[str]] = {}
    try:
        for task in tasks:
            key = str(task["image_id"])
            image = images.setdefault(key, AnnotatedImage(key, f"{key}.jpg", []))
            for polygons in task["Polygons"]:
                ident = json.dumps(polygons)
                if ident not in seen.setdefault(key, set()):
                    seen[key].add(ident)
                    image.regions.append(PolygonRegion(polygons))
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"{path}: expected a PhraseCut refer_<split>.json list of tasks with 'image_id' and 'Polygons' "
            f"({type(err).__name__}: {err})"
        ) from err
    return list(images.values())


def read_phrasecut(
    data_root: str | Path,
    split: str,
    category_filter: CategoryFilter = "all",
    seen_categories: Sequence[str] = COCO_CLASSES,
    image_dir: str | Path | None = None,
) -> tuple[list[ReferringItem], list[tuple[BadSampleError, int]]]:
    """Items of ``split`` after the category filter, and the problems found (``(error, 1)``), without loading images."""
    if category_filter not in ("all", "coco", "non_coco"):
        raise ValueError(f"category_filter must be 'all', 'coco' or 'non_coco', got {category_filter!r}")
    root = Path(data_root)
    image_root = root / "images" if image_dir is None else Path(image_dir)
    seen = set(seen_categories)
    items: list[ReferringItem] = []
    problems: list[tuple[BadSampleError, int]] = []
    ignored: list[str] = []
    file_exists: dict[Path, bool] = {}
    for part in split.split("_"):
        path = root / f"refer_{part}.json"
        for task in load_tasks(path):
            name = f"task {task.get('task_id', '?')}"
            try:
                if category_filter != "all":
                    structure = task.get("phrase_structure")
                    if not isinstance(structure, dict) or "name" not in structure:
                        raise BadSampleError(str(path), name, "no phrase_structure['name'] to filter categories by")
                    if (structure["name"] in seen) != (category_filter == "coco"):
                        continue
                item = _item(task, name, path, image_root, file_exists, ignored)
            except BadSampleError as err:
                problems.append((err, 1))
                continue
            items.append(item)
    if ignored:
        log.warning(
            "%s/%s: ignored %d polygons with fewer than 2 points, as the official PhraseCut rasteriser does (%s)",
            root, split, len(ignored), ", ".join(ignored[:10]) + (" ..." if len(ignored) > 10 else ""),
        )
    return items, problems


def _item(
    task: dict, name: str, path: Path, image_root: Path, file_exists: dict[Path, bool], ignored: list[str]
) -> ReferringItem:
    missing = [k for k in ("task_id", "image_id", "phrase", "Polygons") if k not in task]
    if missing:
        raise BadSampleError(str(path), name, f"task record lacks {missing}")
    polygons = []
    instances = task["Polygons"]
    if not isinstance(instances, list):
        raise BadSampleError(str(path), name, "'Polygons' must be a list (instances) of lists (polygons)")
    for i, instance in enumerate(instances):
        if not isinstance(instance, list):
            raise BadSampleError(str(path), name, f"instance {i}: expected a list of polygons")
        for k, polygon in enumerate(instance):
            if not isinstance(polygon, list) or not all(_is_point(p) for p in polygon):
                raise BadSampleError(str(path), name, f"instance {i} polygon {k}: expected a list of [x, y] points")
            if len(polygon) < 2:
                ignored.append(f"{name} instance {i} polygon {k}")
            polygons.append(tuple((float(x), float(y)) for x, y in polygon))
    if not any(len(p) >= 2 for p in polygons):
        raise BadSampleError(str(path), name, "degenerate region: no polygon with at least 2 points")
    image_id = int(task["image_id"])
    image_path = image_root / f"{image_id}.jpg"
    require_image_file(image_path, name, image_id, file_exists)
    ann_ids = task.get("ann_ids")
    key = ("region", image_id, tuple(sorted(ann_ids))) if ann_ids else ("task", task["task_id"])
    return ReferringItem(
        image_path=image_path,
        image_id=image_id,
        sample_id=str(task["task_id"]),
        name=name,
        source=str(path),
        region=PolygonRegion(tuple(polygons)),
        sentences=[Sentence(0, str(task["phrase"]))],
        region_key=key,
    )
