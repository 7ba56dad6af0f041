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
    gallery = (out / "pseudo_labels" / "report" / "report.html").read_text()
    assert f"generator provenance id</th><td>{manifest['provenance_id']}" in gallery
    assert f"masks (records)</th><td>{manifest['totals']['masks']}" in gallery
    # 4./5. both runs logged per-set test metrics
    logged = {}
    for name in ("cris_pseudo", "global_local_clip"):
        (metrics,) = (out / "runs" / name).rglob("metrics.csv") if name == "global_local_clip" else [
            p for p in (out / "runs" / name).rglob("metrics.csv") if "test/refcoco/test/mIoU" in p.read_text()
        ]
        row = {k: v for r in csv.DictReader(metrics.open()) for k, v in r.items() if v}
        logged[name] = [100 * float(row[f"test/{s}/{m}"]) for s in ("refcoco/test", "refcoco+/test")
                        for m in ("oIoU", "mIoU")]
        assert all(0.0 <= v <= 100.0 for v in logged[name])
    # 6. the side-by-side table shows exactly the logged values
    table = (out / "results.md").read_text()
    assert "| cris_pseudo | pseudo |" in table and "| global_local_clip | zero-shot |" in table
    for name, values in logged.items():
        line = next(x for x in table.splitlines() if x.startswith(f"| {name} |"))
        assert [float(c) for c in line.strip("|").split("|")[4:]] == [round(v, 2) for v in values]
    assert (out / "results.csv").is_file()
    assert not (out / "semi_supervised.png").exists(), "no labelled fraction to plot: pseudo-only and zero-shot runs"
