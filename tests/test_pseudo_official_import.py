"""``ris import-labels``: the official Pseudo-RIS output (JSON Lines / CSV + mask PNGs) → our shards."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from ris.cli import main as ris_main
from ris.datamodules import PseudoRISDataModule
from ris.pseudo.official_import import OFFICIAL_SAMPLERS, REPORT_FILE, import_official, read_rows
from ris.pseudo.shards import ShardSet
from ris.tokenizer import WordTokenizer

FIXTURE = Path(__file__).resolve().parent / "data" / "official_pseudo_ris"
SPEC = importlib.util.spec_from_file_location("make_official_output", FIXTURE / "make_official_output.py")
MAKER = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(MAKER)


def _import(tmp_path, source: str = MAKER.JSON_FILE, **kwargs):
    out = tmp_path / kwargs.pop("name", "shards")
    manifest, stats = import_official(FIXTURE / source, FIXTURE / "masks", FIXTURE / "images", out, progress=False,
                                      **kwargs)
    return out, manifest, stats


def _png(img_id: int, j: int) -> np.ndarray:
    return np.asarray(Image.open(FIXTURE / "masks" / str(img_id) / f"{j}.png")) > 0


def _official_rows() -> dict[tuple[int, int], dict]:
    """The first run of rows per (img_id, seg_id) of the committed JSON Lines file."""
    rows = {}
    for line in (FIXTURE / MAKER.JSON_FILE).read_text().splitlines():
        row = json.loads(line)
        rows.setdefault((row["img_id"], row["seg_id"]), row)
    return rows


def test_committed_fixture_is_what_its_script_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(MAKER, "HERE", tmp_path)
    MAKER.main()
    for name in (MAKER.JSON_FILE, MAKER.CSV_FILE, "masks/22/1.png", "masks/22/3.png"):
        assert (tmp_path / name).read_bytes() == (FIXTURE / name).read_bytes(), name


def test_json_lines_import_keeps_dos_one_mask_and_maps_filtered_seg_ids(tmp_path):
    out, manifest, stats = _import(tmp_path)
    records = {r.sample_id: r for r in ShardSet(out)}
    official = _official_rows()
    # seg_id caveat: image 22's PNG 1 is all zero, so its seg_ids 0, 1, 2 are the PNGs 0, 2, 3
    assert sorted(records) == sorted(f"{img}:{png}" for (img, _), png in MAKER.EXPECTED.items())
    for (img_id, seg_id), png in MAKER.EXPECTED.items():
        record = records[f"{img_id}:{png}"]
        row = official[(img_id, seg_id)]
        assert record.mask_index == png and np.array_equal(record.decode_mask(), _png(img_id, png))
        assert record.captions == row["pseudo_caption"] and record.dos == row["doc"]
        assert record.one_mask == bool(row["one_mask"]) == (img_id == 33)
        assert record.num_masks == {11: 2, 22: 3, 33: 1}[img_id]
        assert record.contrast == (img_id != 33)
        assert record.sampler == OFFICIAL_SAMPLERS * 4 and record.crop == [t for t in range(4) for _ in range(11)]
        assert record.uos == [None] * 44 and record.image == row["img_name"]
        assert (record.height, record.width) == MAKER.IMAGES[img_id][:2]
    assert stats.seg_id_remapped == 1 and stats.rows == 8 and stats.duplicate_rows == 2  # image 11 appended again
    assert stats.bad_rows == {} and stats.one_mask_mismatch == 0
    assert manifest["totals"]["masks_dropped"] == {"single_valued": 1} and manifest["totals"]["one_mask"] == 1
    assert manifest["image_root"] == str((FIXTURE / "images").resolve())
    assert json.loads((out / REPORT_FILE).read_text())["seg_id_remapped"] == 1


def test_csv_import_equals_the_json_lines_import(tmp_path):
    json_out, _, _ = _import(tmp_path, name="from_json")
    csv_out, _, stats = _import(tmp_path, MAKER.CSV_FILE, name="from_csv")
    strip = lambda r: {k: v for k, v in vars(r).items() if k != "generator"}  # noqa: E731
    assert [strip(r) for r in ShardSet(csv_out)] == [strip(r) for r in ShardSet(json_out)]
    assert stats.duplicate_rows == 2 and stats.seg_id_remapped == 1


def test_file_seg_ids_take_the_png_name_and_drop_single_valued(tmp_path):
    out, _, stats = _import(tmp_path, seg_ids="file")
    records = {r.sample_id for r in ShardSet(out)}
    assert {"22:0", "22:2"} <= records and "22:1" not in records and "22:3" not in records
    assert stats.bad_rows == {"mask_not_loadable": 1} and stats.seg_id_remapped == 0


def test_imported_shards_train_through_the_pseudo_datamodule(tmp_path):
    out, _, _ = _import(tmp_path)
    dm = PseudoRISDataModule(shards=str(out), tau=1.3, tokenizer=WordTokenizer(MAKER.WORDS), input_size=32,
                             word_length=8, batch_size=2)
    dm.setup("fit")
    assert len(dm.train_dataset) == 6
    sample = dm.train_dataset[0]
    record = next(iter(ShardSet(out)))
    assert sample.sample_id == record.sample_id and sample.text in [c.strip() for c in record.captions]
    assert tuple(sample.image.shape) == (3, 32, 32)


def test_rerun_resumes_without_duplicates(tmp_path):
    out, _, _ = _import(tmp_path, images_per_shard=1)
    lines = sorted(p.read_text() for p in out.glob("shard-*.jsonl"))
    (out / "manifest.json").unlink()
    last = sorted(out.glob("shard-*.jsonl"))[-1]
    rank_manifest = json.loads((out / "manifest-r000.json").read_text())
    rank_manifest["shards"] = [s for s in rank_manifest["shards"] if s["file"] != last.name]  # killed before listing
    (out / "manifest-r000.json").write_text(json.dumps(rank_manifest))
    manifest, stats = import_official(FIXTURE / MAKER.JSON_FILE, FIXTURE / "masks", FIXTURE / "images", out,
                                      images_per_shard=1, progress=False)
    assert stats.images_done_before == 2
    assert sorted(p.read_text() for p in out.glob("shard-*.jsonl")) == lines
    assert manifest["totals"]["masks"] == 6


def test_bad_rows_and_images_are_counted_with_their_line(tmp_path, caplog):
    masks = tmp_path / "masks"
    shutil.copytree(FIXTURE / "masks", masks)
    shutil.rmtree(masks / "33")
    lines = (FIXTURE / MAKER.JSON_FILE).read_text().splitlines()
    broken = json.loads(lines[1])
    broken["doc"] = broken["doc"][:3]
    source = tmp_path / "out.json"
    source.write_text("\n".join([lines[0], json.dumps(broken), "{not json", *lines[2:]]) + "\n")
    manifest, stats = import_official(source, masks, FIXTURE / "images", tmp_path / "shards", progress=False)
    assert stats.bad_rows == {"unreadable": 2}
    assert f"{source}:2: 3 doc values for 44 captions" in caplog.text and f"{source}:3: not JSON" in caplog.text
    assert manifest["totals"]["skipped"] == {"masks_missing": 1} and manifest["totals"]["masks"] == 4


def test_csv_lists_are_parsed_as_literals_never_evaluated(tmp_path):
    source = tmp_path / "evil.csv"
    lines = (FIXTURE / MAKER.CSV_FILE).read_text().splitlines()
    source.write_text(lines[0] + "\n" + '0,x.jpg,11,0,1,"[__import__(\'os\').system(\'touch pwned\')]","[1.0]",0\n'
                      + '1,y.jpg,11,1,2,"[\'a \', \'b \']","[nan, 1.5]",0\n')
    rows = list(read_rows(source))
    assert isinstance(rows[0], ValueError) and "not a Python list literal" in str(rows[0])
    assert rows[1].captions == ["a ", "b "] and rows[1].doc == [None, 1.5]
    assert not (tmp_path / "pwned").exists()


def test_cli_imports_and_prints_the_summary(tmp_path, capsys):
    out = tmp_path / "shards"
    assert ris_main(["import-labels", str(FIXTURE / MAKER.CSV_FILE), "--mask-dir", str(FIXTURE / "masks"),
                     "--image-dir", str(FIXTURE / "images"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "images with remapped seg_ids 1" in printed and "duplicate rows 2" in printed
    assert ShardSet(out).num_records == 6
