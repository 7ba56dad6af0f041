import csv
import json
from pathlib import Path

import pytest

from ris import commands
from ris.cli import main
from ris.report import read_metrics_csv, read_run, run_kind, write_report


def write_metrics(folder: Path, rows: list[dict[str, float | str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for row in rows for k in row})
    with open(folder / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    return folder / "metrics.csv"


def write_record(folder: Path, supervision: str, labels: str | None = "human", fraction: float = 1.0,
                 init_from: str | None = None) -> Path:
    """A ``run.json`` as :class:`ris.evaluation.Evaluator` writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    training = None if labels is None else {"labels": labels, "labeled_fraction": fraction, "init_from": init_from}
    record = {"stage": "test", "model": "x.Model", "supervision": supervision, "data": "x.Data", "training": training}
    (folder / "run.json").write_text(json.dumps(record))
    return folder / "run.json"


def metrics_row(sets: dict[str, tuple[float, float]], stage: str = "test") -> dict[str, float]:
    return {f"{stage}/{s}/{m}": v for s, (o, i) in sets.items() for m, v in (("oIoU", o), ("mIoU", i))}


def test_metrics_csv_keeps_the_last_value_per_column_and_set_names_with_slashes(tmp_path):
    path = write_metrics(tmp_path, [
        {"epoch": 0, "step": 10, "val/refcoco/val/mIoU": 0.1},
        {"epoch": 1, "step": 20, "val/refcoco/val/mIoU": 0.3},
        {"epoch": 1, "step": 20, "test/refcocog-umd/val/mIoU": 0.5, "test/phrasecut-non_coco/test/oIoU": 0.25},
    ])
    assert read_metrics_csv(path, "val") == {"refcoco/val": {"mIoU": 0.3}}
    expected = {"refcocog-umd/val": {"mIoU": 0.5}, "phrasecut-non_coco/test": {"oIoU": 0.25}}
    assert read_metrics_csv(path, "test") == expected
    bad = write_metrics(tmp_path / "bad", [{"test/refcoco/val/mIoU": "nan-ish"}])
    with pytest.raises(ValueError, match=r"metrics.csv: column 'test/refcoco/val/mIoU' holds 'nan-ish'"):
        read_metrics_csv(bad, "test")


@pytest.mark.parametrize(
    ("supervision", "labels", "fraction", "init_from", "expected"),
    [
        ("masks", "human", 0.01, None, ("supervised", 0.01)),
        ("masks", "human", 0.05, "p.ckpt", ("fine-tuned", 0.05)),
        ("masks", "joint", 0.1, None, ("joint", 0.1)),
        ("masks", "pseudo", 0.0, None, ("pseudo", 0.0)),
        ("text", "human", 1.0, None, ("text-supervised", 1.0)),
        ("text", "pseudo", 0.0, None, ("pseudo, text only", 0.0)),
        ("none", None, 0.0, None, ("zero-shot", 0.0)),
        ("masks", None, 0.0, None, ("unknown", None)),
    ],
)
def test_the_kind_comes_from_what_model_and_data_declare(tmp_path, supervision, labels, fraction, init_from, expected):
    record = json.loads(write_record(tmp_path, supervision, labels, fraction, init_from).read_text())
    kind, labelled, origin = run_kind(record)
    assert (kind, labelled) == expected
    assert origin == init_from


def test_a_test_run_reports_how_its_checkpoint_was_trained(tmp_path):
    """The evaluator of a ``ris test --ckpt_path`` run writes the training record the checkpoint carries."""
    record = write_record(tmp_path / "test" / "version_0", "masks", "human", 0.01, init_from="pseudo.ckpt")
    write_metrics(tmp_path / "test" / "version_0", [metrics_row({"refcoco/val": (0.4, 0.5)})])
    run = read_run(tmp_path / "test")
    assert (run.kind, run.labeled_fraction, run.init_from, run.record) == ("fine-tuned", 0.01, "pseudo.ckpt", record)
    (tmp_path / "bad" / "version_0").mkdir(parents=True)
    (tmp_path / "bad" / "version_0" / "run.json").write_text('{"model": "x"}')
    write_metrics(tmp_path / "bad" / "version_0", [metrics_row({"refcoco/val": (0.4, 0.5)})])
    with pytest.raises(ValueError, match=r"run.json: expected a run record with a 'supervision' entry"):
        read_run(tmp_path / "bad")


def test_later_versions_override_earlier_ones_in_natural_order(tmp_path):
    write_record(tmp_path / "version_0", "masks", "human", 0.1)
    write_metrics(tmp_path / "version_0", [metrics_row({"refcoco/val": (0.1, 0.1)}, "val")])
    write_metrics(tmp_path / "version_2", [metrics_row({"refcoco/val": (0.2, 0.2), "refcoco/testA": (0.3, 0.3)})])
    write_metrics(tmp_path / "version_10", [metrics_row({"refcoco/val": (0.6, 0.7)})])
    run = read_run(tmp_path)
    assert run.metrics == {"refcoco/val": {"oIoU": 0.6, "mIoU": 0.7}, "refcoco/testA": {"oIoU": 0.3, "mIoU": 0.3}}
    assert (run.kind, run.labeled_fraction) == ("supervised", 0.1), "the only run.json is used"
    assert read_run(tmp_path, "val").metrics == {"refcoco/val": {"oIoU": 0.1, "mIoU": 0.1}}


def test_report_orders_sets_like_the_paper_and_marks_missing_values(tmp_path):
    a = tmp_path / "a" / "cris"
    b = tmp_path / "b" / "cris"
    write_metrics(a, [metrics_row({"phrasecut-non_coco/test": (0.1, 0.2), "refcoco/testB": (0.3, 0.4),
                                   "refcoco/val": (0.5, 0.6), "refcocog-umd/val": (0.7, 0.8)})])
    write_record(a, "masks", "human", 0.01)
    write_metrics(b, [metrics_row({"refcoco+/testA": (0.15, 0.25), "phrasecut/test": (0.35, 0.45)})])
    report = write_report([a, b], tmp_path / "out")
    assert report.sets == ["refcoco/val", "refcoco/testB", "refcoco+/testA", "refcocog-umd/val", "phrasecut/test",
                           "phrasecut-non_coco/test"]
    assert [r.name for r in report.runs] == [str(a), str(b)], "equal folder names fall back to the given paths"
    rows = list(csv.reader(report.csv.read_text().splitlines()))
    assert rows[0][:6] == ["run", "kind", "labeled %", "init_from", "refcoco/val oIoU", "refcoco/val mIoU"]
    assert rows[1][1:6] == ["supervised", "1", "", "50.0000", "60.0000"]
    assert rows[2][1:4] == ["unknown", "", ""] and rows[2][4] == ""
    markdown = report.markdown.read_text()
    assert f"| {b} | unknown |  |  | – | – | – | – | 15.00 | 25.00 | – | – | 35.00 | 45.00 | – | – |" in markdown
    assert report.plot is not None and report.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "out").glob(".*tmp*")), "no temporary files left"


def test_report_errors_name_the_problem(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no metrics.csv below this folder"):
        write_report([tmp_path], tmp_path / "out")
    write_metrics(tmp_path / "run", [metrics_row({"refcoco/val": (0.1, 0.2)}, "val")])
    with pytest.raises(ValueError, match="no test metrics in"):
        write_report([tmp_path / "run"], tmp_path / "out")
    message = r"--curve-set 'refcoco/testA' is not among the reported sets \['refcoco/val'\]"
    with pytest.raises(ValueError, match=message):
        write_report([tmp_path / "run"], tmp_path / "out", stage="val", curve_set="refcoco/testA")
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2 and "run folder not found" in capsys.readouterr().err
    assert "report" in commands.COMMANDS and "report" in commands.epilog()


def test_semi_supervised_plot_only_with_labelled_fractions(tmp_path):
    """``ris demo`` reports a pseudo-only run and a zero-shot one: reference lines only, so no plot; a run with
    human labels at a known fraction brings the plot."""
    pseudo, zero_shot, labelled = tmp_path / "pseudo", tmp_path / "zero_shot", tmp_path / "sup_10"
    write_record(pseudo, "masks", "pseudo", 0.0)
    write_metrics(pseudo, [metrics_row({"refcoco/test": (0.3, 0.35)})])
    write_record(zero_shot, "none", None)
    write_metrics(zero_shot, [metrics_row({"refcoco/test": (0.2, 0.25)})])
    report = write_report([pseudo, zero_shot], tmp_path / "out")
    assert [r.kind for r in report.runs] == ["pseudo", "zero-shot"]
    assert report.plot is None and not (tmp_path / "out" / "semi_supervised.png").exists()
    write_record(labelled, "masks", "human", 0.1)
    write_metrics(labelled, [metrics_row({"refcoco/test": (0.4, 0.45)})])
    report = write_report([pseudo, zero_shot, labelled], tmp_path / "out2")
    assert report.plot == tmp_path / "out2" / "semi_supervised.png" and report.plot.stat().st_size > 1000
