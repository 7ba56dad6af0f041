"""A 2-process CPU DDP ``ris generate`` writes every image exactly once (and the same records as one process)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ris.pseudo.generate_command import run
from tests.pseudo_generate_world import (
    FAST,
    SHORT_DECODING,
    ImageSpec,
    make_zoo,
    shard_lines,
    three_boxes,
    write_images,
)

ROOT = Path(__file__).resolve().parents[1]


def _config(zoo, images: Path, annotations: Path) -> dict:
    names = [a.split(".")[-1] for a in SHORT_DECODING[::2]]
    decoding = dict(zip(names, [yaml.safe_load(v) for v in SHORT_DECODING[1::2]]))
    return {
        "model": {
            "masks": {"class_path": "ris.pseudo.masks.GroundTruthMaskSource",
                      "init_args": {"annotations": str(annotations)}},
            "captioner": "tiny-coca",
            "captioner_pretrained": str(zoo.coca),
            "captioner_tokenizer": str(zoo.vocab),
            "scorer": "tiny-RN",
            "scorer_pretrained": str(zoo.clip),
            "scorer_tokenizer": str(zoo.vocab),
            "decoding": decoding | {"beam": False},
            "margins": yaml.safe_load(FAST[FAST.index("--model.margins") + 1]),
        },
        "data": {"source": {"class_path": "ris.pseudo.images.ImageFolder", "init_args": {"root": str(images)}}},
        "output": {"images_per_shard": 1, "report_images": 0},
        "trainer": {"enable_progress_bar": False},
    }


def test_two_process_ddp_writes_each_image_once(tmp_path):
    zoo = make_zoo(tmp_path / "zoo")
    images = tmp_path / "images"
    annotations = write_images(images, [ImageSpec(f"img{i}", three_boxes()[: 1 + i % 3]) for i in range(5)])
    config = tmp_path / "generate.yaml"
    config.write_text(yaml.safe_dump(_config(zoo, images, annotations)))
    out = tmp_path / "ddp"
    done = subprocess.run(
        [sys.executable, "-m", "ris", "generate", "--config", str(config), "--output.dir", str(out),
         "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pseudo-label generation summary" in done.stdout

    per_rank = {r: json.loads((out / f"manifest-r00{r}.json").read_text()) for r in (0, 1)}
    images_per_rank = {r: [i for s in m["shards"] for i in s["images"]] for r, m in per_rank.items()}
    assert all(images_per_rank.values())
    written = sorted(i for ids in images_per_rank.values() for i in ids)
    assert written == [f"img{i}" for i in range(5)]
    records = shard_lines(out)
    assert len({r["sample_id"] for r in records}) == len(records) == 1 + 2 + 3 + 1 + 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ranks"] == [0, 1] and manifest["totals"]["images"] == 5 and manifest["complete"]

    single = tmp_path / "single"
    run(["--config", str(config), "--output.dir", str(single), "--trainer.accelerator", "cpu",
         "--trainer.devices", "1"])
    reference = shard_lines(single)
    assert [r["sample_id"] for r in records] == [r["sample_id"] for r in reference]
    # identical captions and masks; scores may differ in the last digit (1 vs 2 CPU threads per process)
    scores = ("dos", "uos", "cos")
    assert [{k: v for k, v in r.items() if k not in scores} for r in records] == [
        {k: v for k, v in r.items() if k not in scores} for r in reference]
    for mine, theirs in zip(records, reference):
        for key in scores:
            assert [v is None for v in mine[key]] == [v is None for v in theirs[key]]
            pairs = [(a, b) for a, b in zip(mine[key], theirs[key]) if a is not None]
            assert [a for a, _ in pairs] == pytest.approx([b for _, b in pairs], rel=1e-4, abs=1e-4)
