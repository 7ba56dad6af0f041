"""`ris test` over several evaluation sets and `ris report` over the resulting runs, with the committed configs."""

import csv
import sys
from pathlib import Path

import pytest
from PIL import Image

from ris.cli import main
from tests.workflow_world import SIZE, clip_dir

REPO = Path(__file__).resolve().parents[1]
SETS = ["refcoco/val", "refcoco/test", "refcoco+/test", "phrasecut/test", "phrasecut-unseen/test"]
METRIC_KEYS = ["oIoU", "mIoU", "Prec@0.5", "Prec@0.6", "Prec@0.7", "Prec@0.8", "Prec@0.9"]
TINY_CRIS = [
    "--model.init_args.pretrained", "null", "--model.init_args.input_size", str(SIZE),
    "--model.init_args.fpn_out", "[16, 32, 64]", "--model.init_args.nhead", "2", "--model.init_args.dim_ffn", "32",
    "--model.init_args.num_layers", "1",
]
CPU = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.enable_progress_bar", "false",
       "--trainer.enable_model_summary", "false"]


def config(*names: str) -> list[str]:
    return [arg for name in names for arg in ("--config", str(REPO / "configs" / name))]


def logged(folder: Path) -> dict[str, float]:
    (path,) = folder.rglob("metrics.csv")
    with path.open() as handle:
        return {k: float(v) for row in csv.DictReader(handle) for k, v in row.items() if v and k.startswith("test/")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_world):
    """Two fits (supervised on 100 %, fine-tuned on 50 %), their `ris test` over 5 sets, and a zero-shot run.

    Runs in a folder laid out like the configs' placeholders (``data/synthetic``), so the committed configs are
    used as they are, apart from the tiny model and sizes."""
    root = tmp_path_factory.mktemp("multi")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setattr(sys, "argv", ["ris"])
        Path("data/synthetic").mkdir(parents=True)
        for part in ("refer", "phrasecut"):  # the session's world, where the configs' placeholders point
            Path("data/synthetic", part).symlink_to(tiny_world.root / part)
        clip_dir(Path("data/synthetic"), "tiny-coca", name="coca")
        fit_common = [
            "--model.init_args.backbone", "local-dir:data/synthetic/coca", *TINY_CRIS,
            "--data.init_args.data_root", "data/synthetic/refer", "--data.init_args.word_length", "8",
            "--data.init_args.batch_size", "4", *CPU,
            "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0",
        ]
        assert main(["fit", *config("semi/cris_supervised.yaml", "semi/labeled_100pct.yaml"), *fit_common]) == 0
        (supervised,) = Path("runs/semi/cris_supervised").rglob("last.ckpt")
        assert main(["fit", *config("semi/cris_finetune.yaml"), "--data.init_args.labeled_fraction", "0.5",
                     "--trainer.logger.init_args.name", "labeled_50pct", "--model.init_args.init_from",
                     str(supervised), *fit_common]) == 0
        (finetuned,) = Path("runs/semi/cris_finetune/labeled_50pct").rglob("last.ckpt")
        test_common = [*config("cross_domain/synthetic_world.yaml", "cross_domain/synthetic_cris.yaml"), *TINY_CRIS,
                       "--data.init_args.word_length", "8", *CPU]
        for name, ckpt in (("supervised_100", supervised), ("finetuned_50", finetuned)):
            assert main(["test", *test_common, "--ckpt_path", str(ckpt), "--trainer.logger.init_args.name", name]) == 0
        assert main(["test", *config("zero_shot/synthetic_global_local_clip.yaml"), *CPU,
                     "--model.init_args.input_size", str(SIZE), "--data.init_args.word_length", "8"]) == 0
        yield root


def test_ris_test_writes_metrics_of_every_set(runs):
    for name in ("supervised_100", "finetuned_50"):
        values = logged(runs / "runs" / "synthetic_cross_domain" / name)
        assert sorted(values) == sorted(f"test/{s}/{k}" for s in SETS for k in METRIC_KEYS)
        assert all(0.0 <= v <= 1.0 for v in values.values())
        for s in SETS:
            assert values[f"test/{s}/Prec@0.5"] >= values[f"test/{s}/Prec@0.9"]
    zero_shot = logged(runs / "runs" / "synthetic" / "global_local_clip")
    assert {k.rsplit("/", 1)[0] for k in zero_shot} == {"test/refcoco/val", "test/refcoco/test", "test/refcoco+/test"}


def test_ris_report_tables_and_plot_match_the_logged_metrics(runs, monkeypatch):
    monkeypatch.chdir(runs)
    folders = ["runs/synthetic_cross_domain/supervised_100", "runs/synthetic_cross_domain/finetuned_50",
               "runs/synthetic/global_local_clip"]
    assert main(["report", *folders, "--out", "results", "--curve-set", "refcoco/test"]) == 0
    rows = list(csv.DictReader(Path("results/results.csv").read_text().splitlines()))
    assert [r["run"] for r in rows] == ["supervised_100", "finetuned_50", "global_local_clip"]
    assert [(r["kind"], r["labeled %"]) for r in rows] == [("supervised", "100"), ("fine-tuned", "50"),
                                                          ("zero-shot", "0")]
    assert rows[1]["init_from"].endswith(".ckpt") and rows[0]["init_from"] == ""
    columns = [c for c in rows[0] if c.endswith(("oIoU", "mIoU"))]
    assert columns == [f"{s} {m}" for s in SETS for m in ("oIoU", "mIoU")], "paper order, oIoU then mIoU"
    markdown = Path("results/results.md").read_text()
    for row, folder in zip(rows, folders):
        values = logged(Path(folder))
        for s in SETS:
            for m in ("oIoU", "mIoU"):
                key = f"test/{s}/{m}"
                if key in values:
                    assert float(row[f"{s} {m}"]) == pytest.approx(100 * values[key], abs=5e-5)
                else:
                    assert row[f"{s} {m}"] == ""
        line = next(x for x in markdown.splitlines() if x.startswith(f"| {row['run']} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[4:] == [f"{100 * values[f'test/{s}/{m}']:.2f}" if f"test/{s}/{m}" in values else "–"
                             for s in SETS for m in ("oIoU", "mIoU")]
    with Image.open("results/semi_supervised.png") as png:
        assert png.format == "PNG" and png.size == (720, 480)
        assert len(set(png.convert("L").getdata())) > 10, "the plot is not blank"


@pytest.mark.parametrize(
    ("subcommand", "configs", "expected"),
    [
        ("fit", ["semi/cris_finetune.yaml", "semi/labeled_0.1pct.yaml"],
         ["labeled_fraction: 0.001", "init_from: runs/"]),
        ("fit", ["semi/cris_supervised.yaml", "semi/labeled_1pct.yaml"], ["labeled_fraction: 0.01", "init_from: null"]),
        ("fit", ["semi/cris_joint.yaml", "semi/labeled_5pct.yaml"], ["labeled_fraction: 0.05", "labeled_ratio: 0.5"]),
        ("test", ["zero_shot/global_local_clip_vit_b32.yaml"], ["clip_model: ViT-B-32", "SAMMaskSource"]),
        ("test", ["zero_shot/global_local_clip_vit_b32.yaml", "zero_shot/clip_rn50.yaml"], ["clip_model: RN50"]),
        ("test", ["zero_shot/pseudo_trained_cris.yaml"], ["class_path: ris.models.CRIS", "split: testB"]),
        ("test", ["zero_shot/pseudo_trained_cris.yaml", "zero_shot/pseudo_trained_etris.yaml"], ["ris.models.ETRIS"]),
        ("test", ["cross_domain/all_benchmarks.yaml", "cross_domain/model_cris.yaml"], ["category_filter: non_coco"]),
        ("test", ["cross_domain/all_benchmarks.yaml", "cross_domain/model_etris.yaml"], ["ris.models.ETRIS"]),
        ("test", ["cross_domain/all_benchmarks.yaml", "cross_domain/model_global_local_clip.yaml"],
         ["ris.models.GlobalLocalCLIP", "split_by: umd"]),
    ],
)
def test_committed_configs_parse(subcommand, configs, expected, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ris"])
    with pytest.raises(SystemExit) as exc:
        main([subcommand, *config(*configs), "--print_config"])
    out = capsys.readouterr().out
    assert exc.value.code == 0, out
    for text in expected:
        assert text in out
