"""Write the synthetic referring world to disk in the real dataset formats (``ris synth``).

Layout under ``out``::

    world.json                                   settings + counts (written last: its presence marks completion)
    attributes.json                              per-object attributes (side file; the RIS loaders ignore it)
    refer/images/mscoco/images/train2014/*.jpg   domain A images (COCO file names)
    refer/refcoco/{instances.json,refs(unc).p}   domain A, RefCOCO-style expressions (location words allowed)
    refer/refcoco+/{instances.json,refs(unc).p}  domain A, RefCOCO+-style expressions (no location words)
    refer/refcocog/{instances.json,refs(umd).p}  domain A, RefCOCOg-style expressions (longer, with relations)
    phrasecut/refer_{train,val,test}.json        domain B tasks (PhraseCut format, ``Polygons`` per instance)
    phrasecut/image_data_split.json              domain B image list with sizes and splits
    phrasecut/images/{image_id}.jpg              domain B images

Split names are ``train``, ``val`` and ``test`` in both domains (the refer split ``test`` has no people/non-people
meaning). In domain A, as in RefCOCO, only the objects with a same-category distractor are referred (one ref each,
in all three datasets); the clutter objects are annotated in ``instances.json`` but have no ref. In domain B, as in
PhraseCut, every object gets one task per expression (a clutter object is named by its category). Scene ``i`` of a
split is
drawn from ``numpy.random.default_rng([seed, domain, split, i])``, so a scene does not depend on the sizes of the
other splits, and :func:`iter_scenes` regenerates exactly the scenes on disk. All files are written atomically
(temporary file + rename); re-running with the same settings on a finished folder does nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import pickle
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ris.atomic import atomic_write
from ris.synthetic.expressions import referring_expressions
from ris.synthetic.polygons import coco_polygons, phrasecut_polygons
from ris.synthetic.scene import CATEGORIES, Scene, SceneObject, make_scene

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
FORMAT_VERSION = 2
"""Version of the world's content and files: it changes whenever the same settings give a different world."""
REFER_DATASETS = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
"""The domain-A datasets (expression styles) and their refer split scheme."""


@dataclass(frozen=True)
class WorldSettings:
    """Everything that determines the world's content."""

    seed: int = 0
    image_size: int = 96
    n_train: int = 400
    n_val: int = 100
    n_test: int = 100
    n_b_train: int = 100
    n_b_val: int = 50
    n_b_test: int = 50

    def count(self, domain: str, split: str) -> int:
        """Number of images of ``split`` in ``domain``."""
        prefix = "n_" if domain == "A" else "n_b_"
        return int(getattr(self, prefix + split))


@dataclass(frozen=True)
class WorldPaths:
    """Where the parts of a world live."""

    root: Path
    refer_root: Path
    refcoco: Path
    refcoco_plus: Path
    refcocog: Path
    image_dir: Path
    phrasecut_root: Path
    attributes: Path
    settings: Path

    @classmethod
    def at(cls, root: str | Path) -> WorldPaths:
        root = Path(root)
        refer = root / "refer"
        return cls(
            root=root,
            refer_root=refer,
            refcoco=refer / "refcoco",
            refcoco_plus=refer / "refcoco+",
            refcocog=refer / "refcocog",
            image_dir=refer / "images" / "mscoco" / "images" / "train2014",
            phrasecut_root=root / "phrasecut",
            attributes=root / "attributes.json",
            settings=root / "world.json",
        )


@dataclass(frozen=True)
class ObjectRecord:
    """One line of the attributes side file (``bbox`` is ``[x, y, w, h]``; ``file_name`` is relative to the root;
    ``referred`` is false for clutter, the only object of its category in its scene)."""

    domain: str
    split: str
    image_id: int
    file_name: str
    object_id: int
    category: str
    color: str
    size: str
    pattern: str
    position: tuple[str, ...]
    bbox: tuple[float, float, float, float]
    referred: bool


def image_id(settings: WorldSettings, domain: str, split: str, index: int) -> int:
    """Image id of scene ``index`` of ``split``: ids run 1, 2, ... over the splits in order, per domain."""
    offset = sum(settings.count(domain, s) for s in SPLITS[: SPLITS.index(split)])
    return offset + index + 1


def iter_scenes(
    settings: WorldSettings, domain: str, split: str, progress: bool = False
) -> Iterator[tuple[int, Scene, np.random.Generator]]:
    """``(image_id, scene, rng)`` for every scene of ``split``; ``rng`` continues the scene's generator (the writer
    draws that scene's expressions from it). ``progress`` shows a progress bar (tqdm, on stderr)."""
    indices = range(settings.count(domain, split))
    if progress:
        indices = tqdm(indices, desc=f"domain {domain} {split}", unit="image")
    for index in indices:
        rng = np.random.default_rng([settings.seed, "AB".index(domain), SPLITS.index(split), index])
        yield image_id(settings, domain, split, index), make_scene(rng, domain, settings.image_size), rng


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _jpeg_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95, subsampling=0)
    return buffer.getvalue()


def _sentence(text: str, sent_id: int) -> dict:
    return {"tokens": text.split(), "raw": text[0].upper() + text[1:], "sent": text, "sent_id": sent_id}


def _write_domain_a(settings: WorldSettings, paths: WorldPaths, records: list[ObjectRecord]) -> dict[str, dict]:
    categories = [{"id": i + 1, "name": c, "supercategory": "shape"} for i, c in enumerate(CATEGORIES["A"])]
    category_ids = {c["name"]: c["id"] for c in categories}
    images, annotations = [], []
    refs: dict[str, list[dict]] = {style: [] for style in REFER_DATASETS}
    sent_ids = dict.fromkeys(REFER_DATASETS, 0)
    counts: dict[str, dict] = {}
    for split in SPLITS:
        n_refs = n_clutter = 0
        for img_id, scene, rng in iter_scenes(settings, "A", split, progress=True):
            file_name = f"COCO_train2014_{img_id:012d}.jpg"
            height, width = scene.size
            atomic_write(paths.image_dir / file_name, _jpeg_bytes(scene.image))
            images.append({"id": img_id, "file_name": file_name, "height": height, "width": width})
            referred = scene.referred
            styled = {style: {o.id: referring_expressions(scene, o, style, rng) for o in referred} for style in refs}
            referred_ids = {o.id for o in referred}
            for obj in scene.objects:
                ann_id = img_id * 100 + obj.id
                annotations.append({
                    "id": ann_id,
                    "image_id": img_id,
                    "category_id": category_ids[obj.category],
                    "bbox": list(obj.bbox),
                    "segmentation": coco_polygons(obj.mask),
                    "area": float(obj.mask.sum()),
                    "iscrowd": 0,
                })
                is_referred = obj.id in referred_ids
                records.append(_record(obj, "A", split, img_id, ann_id, paths, paths.image_dir / file_name,
                                       is_referred))
                if not is_referred:
                    n_clutter += 1
                    continue
                n_refs += 1
                for style, per_object in styled.items():
                    sentences = []
                    for expression in per_object[obj.id]:
                        sent_ids[style] += 1
                        sentences.append(_sentence(expression.text, sent_ids[style]))
                    refs[style].append({
                        "ref_id": len(refs[style]) + 1,
                        "ann_id": ann_id,
                        "image_id": img_id,
                        "category_id": category_ids[obj.category],
                        "split": split,
                        "sent_ids": [s["sent_id"] for s in sentences],
                        "sentences": sentences,
                        "file_name": f"COCO_train2014_{img_id:012d}_{ann_id}.jpg",
                    })
        counts[split] = {"images": settings.count("A", split), "refs": n_refs, "clutter": n_clutter}
    instances = {
        "info": {"description": "pseudo-ris synthetic world, domain A", "version": FORMAT_VERSION},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    for style, split_by in REFER_DATASETS.items():
        folder = paths.refer_root / style
        atomic_write(folder / "instances.json", _json_bytes(instances))
        atomic_write(folder / f"refs({split_by}).p", pickle.dumps(refs[style], protocol=2))
        for split in SPLITS:
            counts[split][f"{style} sentences"] = sum(len(r["sentences"]) for r in refs[style] if r["split"] == split)
    return counts


def _write_domain_b(settings: WorldSettings, paths: WorldPaths, records: list[ObjectRecord]) -> dict[str, dict]:
    image_list = []
    counts: dict[str, dict] = {}
    for split in SPLITS:
        tasks = []
        for img_id, scene, rng in iter_scenes(settings, "B", split, progress=True):
            height, width = scene.size
            file_path = paths.phrasecut_root / "images" / f"{img_id}.jpg"
            atomic_write(file_path, _jpeg_bytes(scene.image))
            image_list.append({
                "image_id": img_id, "coco_id": None, "flickr_id": None, "width": width, "height": height, "url": "",
                "split": split,
            })
            referred_ids = {o.id for o in scene.referred}
            for obj in scene.objects:
                ann_id = img_id * 100 + obj.id
                polygons = phrasecut_polygons(obj.mask)
                for k, expression in enumerate(referring_expressions(scene, obj, "phrasecut", rng)):
                    tasks.append({
                        "task_id": f"{img_id}__{ann_id}-{k}",
                        "image_id": img_id,
                        "ann_ids": [ann_id],
                        "instance_boxes": [list(obj.bbox)],
                        "Polygons": [polygons],
                        "phrase": expression.text,
                        "phrase_structure": {
                            "name": expression.category,
                            "attributes": list(expression.attributes),
                            "relation_ids": [],
                            "relation_descriptions": [],
                            "type": expression.type,
                        },
                    })
                records.append(_record(obj, "B", split, img_id, ann_id, paths, file_path, obj.id in referred_ids))
        atomic_write(paths.phrasecut_root / f"refer_{split}.json", _json_bytes(tasks))
        counts[split] = {"images": settings.count("B", split), "tasks": len(tasks)}
    atomic_write(paths.phrasecut_root / "image_data_split.json", _json_bytes(image_list))
    return counts


def _record(obj: SceneObject, domain: str, split: str, img_id: int, ann_id: int, paths: WorldPaths,
            file_path: Path, referred: bool) -> ObjectRecord:
    return ObjectRecord(
        domain=domain,
        split=split,
        image_id=img_id,
        file_name=file_path.relative_to(paths.root).as_posix(),
        object_id=ann_id,
        category=obj.category,
        color=obj.color,
        size=obj.size,
        pattern=obj.pattern,
        position=obj.position,
        bbox=obj.bbox,
        referred=referred,
    )


def _check_format(path: Path, content: dict) -> None:
    if content.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: written by another version of the synthetic world (format {content.get('format')}, this is "
            f"format {FORMAT_VERSION}); regenerate it (remove the folder, or choose another --out)"
        )


def read_settings(root: str | Path) -> WorldSettings:
    """The settings of the finished world at ``root`` (``ValueError`` if another world version wrote it)."""
    path = WorldPaths.at(root).settings
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no finished synthetic world here (run `ris synth --out {root}`)")
    content = json.loads(path.read_text())
    _check_format(path, content)
    return WorldSettings(**content["settings"])


def read_attributes(path: str | Path) -> list[ObjectRecord]:
    """The object records of an attributes side file (``ValueError`` if another world version wrote it)."""
    content = json.loads(Path(path).read_text())
    _check_format(Path(path), content)
    return [ObjectRecord(**{**row, "position": tuple(row["position"]), "bbox": tuple(row["bbox"])})
            for row in content["objects"]]


def write_world(
    out: str | Path,
    seed: int = 0,
    image_size: int = 96,
    n_train: int = 400,
    n_val: int = 100,
    n_test: int = 100,
    n_b_train: int = 100,
    n_b_val: int = 50,
    n_b_test: int = 50,
) -> WorldPaths:
    """Generate the world with these settings into ``out`` (see the module docstring) and return its paths.

    A finished world with the same settings is left untouched; one with different settings raises ``ValueError``
    (nothing is overwritten). An unfinished folder (no ``world.json``) is rewritten.
    """
    settings = WorldSettings(seed, image_size, n_train, n_val, n_test, n_b_train, n_b_val, n_b_test)
    for name, value in asdict(settings).items():
        if name.startswith("n_") and value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    paths = WorldPaths.at(out)
    if paths.settings.is_file():
        existing = read_settings(out)
        if existing == settings:
            log.info("synthetic world at %s is up to date", paths.root)
            return paths
        raise ValueError(
            f"{paths.settings}: a world with different settings exists ({asdict(existing)}); "
            f"requested {asdict(settings)}; choose another --out or remove the folder"
        )
    start = time.perf_counter()
    records: list[ObjectRecord] = []
    counts = {"A": _write_domain_a(settings, paths, records), "B": _write_domain_b(settings, paths, records)}
    atomic_write(paths.attributes, _json_bytes({"format": FORMAT_VERSION, "objects": [asdict(r) for r in records]}))
    world = {"format": FORMAT_VERSION, "settings": asdict(settings), "counts": counts}
    atomic_write(paths.settings, json.dumps(world, indent=1).encode())
    log.info("wrote synthetic world to %s in %.1f s: %s", paths.root, time.perf_counter() - start, counts)
    return paths


def main(argv: Sequence[str]) -> int:
    """``ris synth``: write the synthetic referring world."""
    defaults = WorldSettings()
    parser = argparse.ArgumentParser(prog="ris synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/synthetic", help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--image-size", type=int, default=defaults.image_size, help="longer image side in pixels")
    for domain, prefix in (("A", "n"), ("B", "n-b")):
        for split in SPLITS:
            field = f"{prefix}_{split}".replace("-", "_")
            parser.add_argument(
                f"--{prefix}-{split}", type=int, default=getattr(defaults, field), dest=field,
                help=f"domain {domain} {split} images (default: %(default)s)",
            )
    args = parser.parse_args(list(argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_world(**vars(args))
    return 0
