"""What is on disk is verified (issue 17 item 2) and indexed (issue 15): damaged, missing and miscounted shards
through ``ris generate`` reruns, the merge, the readers and the training datamodule; the cached record index."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ris.pseudo.shards.index as index_module
from ris.datamodules import PseudoRISDataModule
from ris.pseudo.generate_command import run
from ris.pseudo.shards import (
    INDEX,
    ShardIndex,
    ShardRecords,
    ShardSet,
    ShardWriter,
    StreamingShardRecords,
    done_image_ids,
    merge_manifests,
)
from ris.tokenizer import WordTokenizer
from tests.pseudo_generate_world import ImageSpec, gt_args, make_zoo, shard_lines, three_boxes, write_images
from tests.test_pseudo_shards import PROVENANCE, result

TOKENIZER = WordTokenizer(["a", "the", "red", "blue", "big", "circle", "square", "star", "shape"])


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _drop_line(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[1:]))


DAMAGE = {"truncated": _truncate, "deleted": Path.unlink, "line removed": _drop_line}


@pytest.fixture
def folder(tmp_path):
    """4 shards of one image each (img0, img2: 2 masks; img1, img3: 3 masks), rank 0, merged."""
    writer = ShardWriter(tmp_path / "shards", 0, PROVENANCE, images_per_shard=1)
    for i in range(4):
        writer.add(result(f"img{i}", 3 if i % 2 else 2))
    merge_manifests(tmp_path / "shards", progress=False)
    return tmp_path / "shards"


def _shard(folder: Path, seq: int) -> Path:
    return folder / f"shard-r000-{seq:06d}.jsonl"


def _set_count(folder: Path, seq: int, count: int, merged: bool = False) -> None:
    name = "manifest.json" if merged else "manifest-r000.json"
    manifest = json.loads((folder / name).read_text())
    manifest["shards"][seq]["records"] = count
    (folder / name).write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_shards_are_not_done_and_a_restarted_writer_drops_them(folder, damage):
    DAMAGE[damage](_shard(folder, 1))
    assert done_image_ids(folder) == {"img0", "img2", "img3"}
    writer = ShardWriter(folder, 0, PROVENANCE, images_per_shard=1)
    assert [s["file"] for s in writer.manifest["shards"]] == [_shard(folder, i).name for i in (0, 2, 3)]
    assert not _shard(folder, 1).exists()  # the damaged file became an orphan and was removed
    writer.add(result("img1", 3))
    writer.flush()
    manifest = merge_manifests(folder, progress=False)
    assert manifest["complete"] and manifest["totals"]["masks"] == 10
    ShardSet(folder).verify()


def test_merge_takes_counts_from_the_files_and_marks_lost_images(folder):
    _set_count(folder, 0, 8)  # content intact, count edited 2 -> 8
    _drop_line(_shard(folder, 3))
    manifest = merge_manifests(folder, progress=False)
    assert [s["records"] for s in manifest["shards"]] == [2, 3, 2]
    assert not manifest["complete"]  # img3's shard was damaged: rerun to make it again
    assert json.loads((folder / "manifest-r000.json").read_text())["shards"][0]["records"] == 2


def test_readers_count_from_the_files_not_the_manifest(folder):
    _set_count(folder, 0, 8, merged=True)
    shards = ShardSet(folder)
    assert shards.problems()[0].problem == "miscounted"
    index = ShardIndex.open(shards)
    ids = [r.sample_id for r in StreamingShardRecords(index, shuffle=False)]
    assert len(ids) == len(set(ids)) == 10
    assert len(ShardRecords(index)) == 10


def test_index_is_cached_and_start_up_parses_no_record(folder, monkeypatch):
    assert (folder / INDEX).is_file()  # written by the merge
    parsed = []
    original = index_module.index_shard
    monkeypatch.setattr(index_module, "index_shard", lambda *a: parsed.append(a[1]) or original(*a))
    records = ShardRecords(ShardIndex.open(ShardSet(folder)))
    assert len(records) == 10 and parsed == []
    # a regenerated shard (new sha256 in the manifest) is indexed again; the others come from the cache
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["shards"][2]["sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="shard-r000-000002.jsonl: content differs"):
        ShardIndex.open(ShardSet(folder))
    assert parsed == [_shard(folder, 2).name]


def test_index_is_built_with_a_progress_bar_when_missing(folder, capsys):
    (folder / INDEX).unlink()
    index = ShardIndex.open(ShardSet(folder))
    assert "index shards" in capsys.readouterr().err and (folder / INDEX).is_file()
    assert [index.count(s) for s in index.shard_ids] == [2, 3, 2, 3]
    assert all(np.array_equal(a.offsets, b.offsets)
               for a, b in zip(index.entries.values(), ShardIndex.open(ShardSet(folder)).entries.values()))


@pytest.fixture
def images(folder):
    root = folder.parent / "images"
    root.mkdir()
    for i in range(4):
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / f"img{i}.png")
    return root


@pytest.mark.parametrize("damage", DAMAGE)
def test_training_refuses_damaged_shards_or_skips_and_reports_them(folder, images, damage):
    DAMAGE[damage](_shard(folder, 1))
    options = {"shards": str(folder), "image_root": str(images), "tokenizer": TOKENIZER, "input_size": 16,
               "word_length": 6}
    with pytest.raises(ValueError, match=r"1 missing or damaged shard\(s\): shard-r000-000001.jsonl.*damaged_shards"):
        PseudoRISDataModule(**options).setup("fit")
    dm = PseudoRISDataModule(**options, damaged_shards="skip")
    dm.setup("fit")
    assert dm.skipped_shards == [_shard(folder, 1).name] and len(dm.train_dataset) == 7


# --- ris generate reruns -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("generated")
    zoo = make_zoo(root / "zoo")
    images = root / "images"
    annotations = write_images(images, [ImageSpec(f"img{i}", three_boxes()[: 1 + i % 3]) for i in range(3)])
    out = root / "out"
    args = gt_args(zoo, images, annotations, out, "--output.images_per_shard", "1", "--output.report_images", "0")
    run(args)
    return args, out, shard_lines(out)


@pytest.mark.parametrize("damage", DAMAGE)
def test_generate_rerun_regenerates_damaged_shards(generated, tmp_path, damage, one_thread):
    args, original, expected = generated
    out = tmp_path / "out"
    shutil.copytree(original, out)
    DAMAGE[damage](out / "shard-r000-000001.jsonl")
    manifest = run([a if a != str(original) else str(out) for a in args])
    ShardSet(out).verify()
    assert manifest["complete"] and manifest["totals"]["images"] == 3
    assert shard_lines(out) == expected


def test_bad_record_lines_stay_out_of_the_index_and_are_kept_for_the_policy(folder, monkeypatch):
    """A null caption (a bad record line) is left out of offsets and counts; its error survives the cache and the
    streaming reader stays aligned with the index."""
    import hashlib

    path = _shard(folder, 1)
    lines = path.read_text().splitlines(keepends=True)
    record = json.loads(lines[1])
    record["captions"][0] = None
    lines[1] = json.dumps(record) + "\n"
    path.write_text("".join(lines))
    for name in ("manifest.json", "manifest-r000.json"):
        manifest = json.loads((folder / name).read_text())
        manifest["shards"][1]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        (folder / name).write_text(json.dumps(manifest))
    index = ShardIndex.open(ShardSet(folder))
    (bad,) = index.bad_records()
    assert bad.source == f"{path}:2" and "caption 0 is None, not text" in bad.reason
    assert len(ShardRecords(index)) == 9
    ids = [r.sample_id for r in StreamingShardRecords(index, shuffle=False)]
    assert len(ids) == len(set(ids)) == 9 and record["sample_id"] not in ids

    parsed = []
    original = index_module.index_shard
    monkeypatch.setattr(index_module, "index_shard", lambda *a: parsed.append(a[1]) or original(*a))
    cached = ShardIndex.open(ShardSet(folder))
    assert parsed == [] and [str(e) for e in cached.bad_records()] == [str(bad)]
