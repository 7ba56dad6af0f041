"""Pseudo-label records, training-time caption choice, shard writing/manifests and the shard readers."""

import json
import pickle
import random
from collections import Counter

import numpy as np
import pytest
from torch.utils.data import DataLoader

from ris.pseudo.caption_choice import choose_caption, eligible_captions, kept_flags
from ris.pseudo.provenance import provenance_id
from ris.pseudo.records import PseudoRecord, mask_box, mask_to_rle, rle_to_mask
from ris.pseudo.shards import (
    GenerationStats,
    ImageResult,
    ShardRecords,
    ShardSet,
    ShardWriter,
    StreamingShardRecords,
    done_image_ids,
    merge_manifests,
)

PROVENANCE = {"captioner": "tiny-coca", "seed": 0, "decoding": {"top_k": (5, 7)}}


def make_record(image_id: str = "7", k: int = 0, captions=None, dos=None, one_mask: bool = False) -> PseudoRecord:
    mask = np.zeros((6, 8), dtype=bool)
    mask[1:3, 2 + k : 5 + k] = True
    captions = ["a red circle", "the big square", "a star", "a shape"] if captions is None else captions
    dos = [1.5, 1.2, 1.31, 0.9] if dos is None else dos
    n = len(captions)
    return PseudoRecord(
        sample_id=f"{image_id}:{k}", image_id=image_id, image=f"{image_id}.png", height=6, width=8, mask_index=k,
        mask=mask_to_rle(mask), box=mask_box(mask), area=int(mask.sum()), num_masks=1 if one_mask else 2,
        one_mask=one_mask, contrast=not one_mask, captions=captions, sampler=["beam", "top_k=5"] * (n // 2),
        crop=[0] * n, dos=dos, uos=[None if one_mask else 1.0] * n, cos=[20.0] * n, generator="",
    )


def result(image_id: str, masks: int = 2, skip: str | None = None) -> ImageResult:
    if skip:
        return ImageResult(image_id, skip_reason=skip, masks_dropped={"small": 1})
    return ImageResult(image_id, [make_record(image_id, k) for k in range(masks)], masks_dropped={"duplicate": 1})


# --- records -------------------------------------------------------------------------------------------------------


def test_rle_and_box_round_trip():
    mask = np.zeros((5, 7), dtype=bool)
    mask[0, 6] = mask[4, 0] = mask[2, 3] = True
    rle = mask_to_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [5, 7]
    assert np.array_equal(rle_to_mask(json.loads(json.dumps(rle))), mask)
    assert mask_box(mask) == [0, 0, 6, 4]
    with pytest.raises(ValueError, match="empty"):
        mask_box(np.zeros((3, 3), dtype=bool))


def test_record_json_round_trip_and_validation():
    record = make_record()
    line = record.to_json()
    assert "image_bytes" not in json.loads(line)
    assert PseudoRecord.from_json(line) == record
    assert np.array_equal(record.decode_mask(), rle_to_mask(record.mask))
    bad = json.loads(line)
    bad["dos"] = bad["dos"][:2]
    with pytest.raises(ValueError, match=r"shard-x.jsonl:3: record '7:0' has 2 'dos' entries for 4 captions"):
        PseudoRecord.from_json(json.dumps(bad), "shard-x.jsonl:3")
    del bad["captions"]
    with pytest.raises(ValueError, match="lacks field"):
        PseudoRecord.from_json(json.dumps(bad), "f:1")
    with pytest.raises(ValueError, match="f:2: not a JSON object"):
        PseudoRecord.from_json("{oops", "f:2")
    wrong_size = json.loads(line) | {"height": 9}
    with pytest.raises(ValueError, match=r"mask size \[6, 8\] != image size \[9, 8\]"):
        PseudoRecord.from_json(json.dumps(wrong_size))


# --- caption choice ----------------------------------------------------------------------------------------------


def test_caption_choice_draws_uniformly_above_tau_strictly():
    record = make_record(dos=[1.5, 1.3, 1.31, 0.9])
    assert eligible_captions(record, tau=1.3) == [0, 2]
    rng = random.Random(0)
    counts = Counter(choose_caption(record, 1.3, rng) for _ in range(2000))
    assert set(counts) == {0, 2} and abs(counts[0] - counts[2]) < 200
    assert kept_flags(record, 1.3) == [True, False, True, False]


def test_caption_choice_fallback_when_nothing_passes():
    record = make_record(dos=[1.0, 1.2, None, 0.9])
    assert eligible_captions(record, tau=1.3) == [0, 1, 2, 3]
    assert eligible_captions(record, tau=1.3, fallback="best") == [1]
    with pytest.raises(ValueError, match="fallback"):
        eligible_captions(record, 1.3, fallback="worst")


def test_caption_choice_one_mask_takes_top_half_of_raw_scores():
    record = make_record(captions=["a", "b", "c", "d", "e", "f"], dos=[20.0, 25.0, 21.0, 30.0, 19.0, 24.0],
                         one_mask=True)
    assert eligible_captions(record, tau=1.3) == [1, 3, 5]
    assert kept_flags(record, 1.3) == [False, True, False, True, False, True]


def test_caption_choice_never_returns_empty_captions():
    record = make_record(captions=["", "  ", "a star", ""], dos=[2.0, 2.0, 0.5, 2.0])
    assert eligible_captions(record, 1.3) == [2]
    assert kept_flags(record, 1.3) == [False, False, False, False]
    empty = make_record(captions=["", " ", "", ""])
    assert eligible_captions(empty, 1.3) == [] and choose_caption(empty, 1.3, random.Random(0)) is None


# --- writing -------------------------------------------------------------------------------------------------------


def test_writer_writes_whole_images_per_shard_and_a_manifest(tmp_path):
    writer = ShardWriter(tmp_path, rank=2, provenance=PROVENANCE, images_per_shard=2, tau=1.3, image_root="/imgs")
    for r in [result("a"), result("b", skip="unreadable"), result("c", 3)]:
        writer.add(r)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest-r002.json", "shard-r002-000000.jsonl"]
    writer.flush()
    writer.flush()
    manifest = json.loads((tmp_path / "manifest-r002.json").read_text())
    assert [s["file"] for s in manifest["shards"]] == ["shard-r002-000000.jsonl", "shard-r002-000001.jsonl"]
    first = manifest["shards"][0]
    assert first["images"] == ["a"] and first["skipped"] == {"b": "unreadable"} and first["records"] == 2
    assert first["stats"]["skipped"] == {"unreadable": 1} and first["stats"]["masks_dropped"] == {
        "duplicate": 1, "small": 1}
    assert manifest["provenance_id"] == provenance_id(PROVENANCE) and manifest["image_root"] == "/imgs"
    lines = (tmp_path / "shard-r002-000001.jsonl").read_text().splitlines()
    assert [json.loads(x)["sample_id"] for x in lines] == ["c:0", "c:1", "c:2"]
    assert all(json.loads(x)["generator"] == provenance_id(PROVENANCE) for x in lines)
    assert done_image_ids(tmp_path) == {"a", "b", "c"}
    assert not list(tmp_path.glob(".*"))


def test_restarted_writer_continues_numbering_and_removes_unfinished_files(tmp_path):
    writer = ShardWriter(tmp_path, 0, PROVENANCE, images_per_shard=1)
    writer.add(result("a"))
    (tmp_path / "shard-r000-000001.jsonl").write_text("half")
    (tmp_path / ".shard-r000-000002.jsonl.tmp123").write_text("half")
    (tmp_path / "shard-r001-000000.jsonl").write_text("another rank's file")
    again = ShardWriter(tmp_path, 0, PROVENANCE, images_per_shard=1)
    assert not (tmp_path / "shard-r000-000001.jsonl").exists() and not list(tmp_path.glob(".shard-r000-*"))
    assert (tmp_path / "shard-r001-000000.jsonl").exists()
    again.add(result("b"))
    assert [s["file"] for s in again.manifest["shards"]] == ["shard-r000-000000.jsonl", "shard-r000-000001.jsonl"]


def test_writer_refuses_a_folder_with_other_provenance(tmp_path):
    ShardWriter(tmp_path, 0, PROVENANCE).add(result("a"))
    ShardWriter(tmp_path, 0, PROVENANCE).flush()
    ShardWriter(tmp_path, 0, PROVENANCE, images_per_shard=1).add(result("a"))
    with pytest.raises(ValueError, match=r"manifest-r000.json was written by a generator with different settings "
                                         r"\(differing keys: captioner, seed\)"):
        ShardWriter(tmp_path, 1, PROVENANCE | {"seed": 1, "captioner": "other"})


def test_merge_sums_ranks_and_removes_orphans(tmp_path):
    for rank, ids in ((0, "ab"), (1, "cd")):
        writer = ShardWriter(tmp_path, rank, PROVENANCE, images_per_shard=1, image_root="/imgs")
        for image_id in ids:
            writer.add(result(image_id, 2 if image_id != "d" else 1))
    (tmp_path / "shard-r005-000000.jsonl").write_text("orphan of a killed run")
    merged = merge_manifests(tmp_path, complete=False)
    assert not (tmp_path / "shard-r005-000000.jsonl").exists()
    assert merged["ranks"] == [0, 1] and not merged["complete"] and merged["image_root"] == "/imgs"
    totals = GenerationStats.from_dict(merged["totals"])
    assert (totals.images, totals.masks, totals.candidates) == (4, 7, 28)
    assert totals.kept == 7 * 2 and totals.masks_dropped == {"duplicate": 4}
    assert totals.mean_dos == pytest.approx((1.5 + 1.2 + 1.31 + 0.9) / 4)
    assert json.loads((tmp_path / "manifest.json").read_text()) == merged


def test_merge_rejects_an_image_written_twice(tmp_path):
    ShardWriter(tmp_path, 0, PROVENANCE, images_per_shard=1).add(result("a"))
    ShardWriter(tmp_path, 1, PROVENANCE, images_per_shard=1).add(result("a"))
    with pytest.raises(ValueError, match="image 'a' is in both shard-r000-000000.jsonl and shard-r001-000000.jsonl"):
        merge_manifests(tmp_path)


def test_merge_of_an_empty_folder_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no per-process manifest"):
        merge_manifests(tmp_path)


# --- reading -------------------------------------------------------------------------------------------------------


@pytest.fixture
def shard_folder(tmp_path):
    """8 shards of 1–2 images (3 masks each for odd images), written by two ranks."""
    for rank in (0, 1):
        writer = ShardWriter(tmp_path, rank, PROVENANCE, images_per_shard=1)
        for i in range(rank, 8, 2):
            writer.add(result(f"img{i}", 3 if i % 2 else 2))
    merge_manifests(tmp_path)
    return tmp_path


def test_shard_set_reads_and_verifies(shard_folder):
    shards = ShardSet(shard_folder)
    records = list(shards)
    assert shards.num_records == len(records) == 4 * 2 + 4 * 3
    assert shards.provenance == json.loads(json.dumps(PROVENANCE))
    shards.verify()
    path = shard_folder / "shard-r001-000000.jsonl"
    path.write_text(path.read_text().replace("red", "blu"))
    with pytest.raises(ValueError, match="shard-r001-000000.jsonl: content differs from the manifest's sha256"):
        ShardSet(shard_folder).verify()


def test_shard_set_needs_a_finished_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest.json.*ris generate"):
        ShardSet(tmp_path)


def test_map_style_records_by_offset_with_filter(shard_folder):
    every = ShardRecords(ShardSet(shard_folder))
    assert len(every) == 20 and every.dropped == 0
    ids = [every[i].sample_id for i in range(len(every))]
    assert ids == [r.sample_id for r in ShardSet(shard_folder)]
    odd = ShardRecords(ShardSet(shard_folder), keep=lambda r: r.mask_index == 2)
    assert len(odd) == 4 and odd.dropped == 16 and {odd[i].mask_index for i in range(4)} == {2}
    copy = pickle.loads(pickle.dumps(every))
    assert copy[5] == every[5]


def test_streaming_splits_shards_over_ranks_and_workers_with_equal_counts(shard_folder):
    shards = ShardSet(shard_folder)
    per_rank = []
    for rank in (0, 1):
        stream = StreamingShardRecords(shards, num_workers=2, shuffle=False, rank=rank, world_size=2)
        loader = DataLoader(stream, batch_size=None, num_workers=2)
        per_rank.append([r.sample_id for r in loader])
    # shards 0-3 hold 2-mask images, 4-7 3-mask ones; reader r (of 4) reads shards r and r + 4: 5 records each
    assert [len(ids) for ids in per_rank] == [10, 10] == [len(stream)] * 2
    images = [{i.split(":")[0] for i in ids} for ids in per_rank]
    assert not images[0] & images[1]
    assert len(set(per_rank[0] + per_rank[1])) == 20
    # 3 ranks: readers hold 7, 8 and 5 records; every rank yields the smallest count
    counts = [len(list(StreamingShardRecords(shards, shuffle=False, rank=r, world_size=3))) for r in range(3)]
    assert counts == [5, 5, 5]


def test_streaming_shuffles_each_pass_and_refills_filtered_records(shard_folder):
    shards = ShardSet(shard_folder)
    stream = StreamingShardRecords(shards, shuffle=True, seed=3, buffer_size=4)
    first, second = [r.sample_id for r in stream], [r.sample_id for r in stream]
    assert len(first) == len(second) == 20 and sorted(first) == sorted(second) and first != second
    kept = StreamingShardRecords(shards, shuffle=False, keep=lambda r: r.mask_index == 0)
    ids = [r.sample_id for r in kept]
    assert len(ids) == 20 and {i.split(":")[1] for i in ids} == {"0"}
    with pytest.raises(ValueError, match="8 shards cannot feed 9 streaming readers"):
        StreamingShardRecords(shards, num_workers=3, rank=0, world_size=3)
