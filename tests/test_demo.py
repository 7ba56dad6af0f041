"""The reduced demo (tiny sizes, few steps): every stage runs and leaves well-formed outputs."""

import csv
import json

from PIL import Image

from ris.cli import main


def test_fast_demo_runs_every_stage(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PSEUDO_RIS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    assert main(["demo", "--fast", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"All outputs are in {out}" in printed and "| cris_pseudo | pseudo |" in printed

    # 1. the world, in both formats
    world = json.loads((out / "world" / "world.json").read_text())
    assert world["settings"]["n_train"] == 6
    assert (out / "world" / "refer" / "refcoco" / "refs(unc).p").is_file()
    assert (out / "world" / "phrasecut" / "refer_test.json").is_file()
    # 2. the synthetic CoCa, cached
    assert len(list((tmp_path / "cache").glob("synthetic-coca-*/open_clip_config.json"))) == 1
    # 3. pseudo-labels: a complete manifest, records with every candidate scored, the picture report
    manifest = json.loads((out / "pseudo_labels" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["totals"]["masks"] > 0
    records = [json.loads(line) for shard in manifest["shards"]
               for line in (out / "pseudo_labels" / shard["file"]).read_text().splitlines()]
    assert len(records) == manifest["totals"]["masks"]
    assert all(len(r["captions"]) == 44 for r in records)
    with Image.open(out / "pseudo_labels" / "report" / "report.png") as image:
        assert image.width > 100 and image.height > 100
    # 4./5. both runs logged per-set test metrics
    for name in ("cris_pseudo", "global_local_clip"):
        (metrics,) = (out / "runs" / name).rglob("metrics.csv") if name == "global_local_clip" else [
            p for p in (out / "runs" / name).rglob("metrics.csv") if "test/refcoco/test/mIoU" in p.read_text()
        ]
        row = {k: v for r in csv.DictReader(metrics.open()) for k, v in r.items() if v}
        assert 0.0 <= float(row["test/refcoco/test/mIoU"]) <= 1.0
        assert 0.0 <= float(row["test/refcoco+/test/oIoU"]) <= 1.0
    # 6. the side-by-side table
    table = (out / "results.md").read_text()
    assert "| cris_pseudo | pseudo |" in table and "| global_local_clip | zero-shot |" in table
    assert (out / "results.csv").is_file()
