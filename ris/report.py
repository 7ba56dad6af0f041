"""``ris report``: gather the metrics of several runs into one paper-style table and the semi-supervised curve.

``ris report RUN_DIR... --out DIR`` writes

- ``DIR/results.md`` and ``DIR/results.csv``: one row per run; columns: the run's kind, labelled fraction and
  ``init_from``, then ``oIoU`` and ``mIoU`` (percent) of every evaluation set (``dataset/split``) any run reports;
- ``DIR/semi_supervised.png``: ``--metric`` (mIoU) on ``--curve-set`` (default: the first set) against the labelled
  fraction (log axis), one line per kind (pseudo-pretrained → fine-tuned, joint, supervised only); runs without
  labels (pseudo-only training, zero-shot) are drawn as horizontal reference lines. It is written only when some
  run has human labels at a known fraction (the runs of ``ris demo`` have none: no plot).

How a run is read (one ``RUN_DIR`` = one row):

- **metrics**: every ``metrics.csv`` below ``RUN_DIR`` (Lightning's ``CSVLogger``: ``<save_dir>/<name>/version_N/``),
  in version order; for each column ``{stage}/{dataset}/{split}/{metric}`` the last non-empty value counts, so a
  later ``ris test`` in the same folder overrides an earlier one. ``--stage`` (``test``) selects the stage.
- **provenance**: the ``run.json`` the :class:`ris.evaluation.Evaluator` wrote beside the latest ``metrics.csv``
  (the latest one found when none sits there): what the model and the data declared (:mod:`ris.contracts`), with
  the training record a checkpoint carries, so a ``ris test`` of a checkpoint reports how it was trained. The kind
  (:func:`run_kind`): a model with ``supervision: none`` → ``zero-shot``; trained on ``pseudo`` labels →
  ``pseudo`` (``pseudo, text only`` for a text-supervised model such as SaG); ``joint`` → ``joint``; ``human``
  labels → ``text-supervised`` for a text-supervised model, else ``fine-tuned`` when the weights started from
  ``init_from``, else ``supervised``. The labelled fraction is the training datamodule's (0 without human
  labels).

All files are written to a temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ris.atomic import atomic_write

log = logging.getLogger(__name__)

METRICS = ("oIoU", "mIoU")
DATASET_ORDER = ("refcoco", "refcoco+", "refcocog", "phrasecut")
SPLIT_ORDER = ("val", "testA", "testB", "test")
RUN_RECORD = "run.json"
KIND_LABELS = {
    "fine-tuned": "pseudo-pretrained → fine-tuned",
    "joint": "joint pseudo + labelled",
    "supervised": "supervised only",
    "text-supervised": "text-supervised (expressions, no masks)",
}
UNLABELLED_KINDS = ("pseudo", "pseudo, text only", "zero-shot")


@dataclass
class Run:
    """One run folder's metrics and provenance.

    Attributes:
        name: row label (the folder name).
        path: the run folder.
        metrics: ``{set: {metric: fraction in [0, 1]}}`` of the selected stage.
        kind: ``fine-tuned``, ``joint``, ``supervised``, ``text-supervised``, ``pseudo``, ``pseudo, text only``,
            ``zero-shot`` or ``unknown`` (:func:`run_kind`).
        labeled_fraction: fraction of labelled training images (0 for kinds without labels, ``None`` if unknown).
        init_from: the checkpoint the weights started from, if any.
        record: the ``run.json`` used (``None`` when the folder has none).
    """

    name: str
    path: Path
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    kind: str = "unknown"
    labeled_fraction: float | None = None
    init_from: str | None = None
    record: Path | None = None


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.as_posix())]


def read_metrics_csv(path: Path, stage: str) -> dict[str, dict[str, float]]:
    """``{set: {metric: value}}`` of the ``stage/…`` columns of a CSVLogger ``metrics.csv`` (last non-empty value)."""
    out: dict[str, dict[str, float]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                if key is None or value in (None, "") or not key.startswith(f"{stage}/"):
                    continue
                parts = key.split("/")
                if len(parts) < 4:
                    continue
                try:
                    number = float(value)
                except ValueError as err:
                    raise ValueError(f"{path}: column {key!r} holds {value!r}, expected a number") from err
                out.setdefault("/".join(parts[1:-1]), {})[parts[-1]] = number
    return out


def _load_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read the run record ({err})") from err
    if not isinstance(record, dict) or "supervision" not in record:
        raise ValueError(f"{path}: expected a run record with a 'supervision' entry (written by ris.evaluation)")
    return record


def run_kind(record: dict[str, Any]) -> tuple[str, float | None, str | None]:
    """``(kind, labeled_fraction, init_from)`` of a run record (see the module docstring)."""
    supervision = record.get("supervision")
    if supervision == "none":
        return "zero-shot", 0.0, None
    training = record.get("training") or {}
    labels, init_from = training.get("labels"), training.get("init_from")
    fraction = training.get("labeled_fraction")
    if labels == "pseudo":
        return ("pseudo, text only" if supervision == "text" else "pseudo"), 0.0, init_from
    if labels == "joint":
        return "joint", fraction, init_from
    if labels == "human":
        if supervision == "text":
            return "text-supervised", fraction, init_from
        return ("fine-tuned" if init_from else "supervised"), fraction, init_from
    return "unknown", None, init_from


def read_run(folder: str | Path, stage: str = "test") -> Run:
    """Metrics and provenance of one run folder (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"run folder not found: {folder}")
    files = sorted(folder.rglob("metrics.csv"), key=_natural_key)
    if not files:
        raise FileNotFoundError(f"{folder}: no metrics.csv below this folder (log with the CSVLogger)")
    run = Run(name=folder.resolve().name, path=folder)
    for path in files:
        for name, values in read_metrics_csv(path, stage).items():
            run.metrics.setdefault(name, {}).update(values)
    records = sorted(folder.rglob(RUN_RECORD), key=_natural_key)
    beside = files[-1].parent / RUN_RECORD
    chosen = beside if beside.is_file() else (records[-1] if records else None)
    if chosen is not None:
        run.record = chosen
        run.kind, run.labeled_fraction, run.init_from = run_kind(_load_record(chosen))
    return run


def _set_key(name: str) -> tuple[Any, ...]:
    dataset, _, split = name.rpartition("/")
    base = dataset.split("-")[0]
    return (
        DATASET_ORDER.index(base) if base in DATASET_ORDER else len(DATASET_ORDER),
        dataset,
        SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER),
        split,
    )


def set_columns(runs: Sequence[Run]) -> list[str]:
    """Every evaluation set any run reports, in paper order (RefCOCO, RefCOCO+, RefCOCOg, PhraseCut; val, testA,
    testB, test)."""
    return sorted({name for run in runs for name in run.metrics}, key=_set_key)


def _fraction_text(fraction: float | None) -> str:
    return "" if fraction is None else f"{100 * fraction:g}"


def table_rows(runs: Sequence[Run], sets: Sequence[str]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows (numbers in percent, ``None`` where a run lacks a value)."""
    header = ["run", "kind", "labeled %", "init_from", *(f"{s} {m}" for s in sets for m in METRICS)]
    rows = []
    for run in runs:
        values = [
            100 * run.metrics[s][m] if s in run.metrics and m in run.metrics[s] else None for s in sets for m in METRICS
        ]
        rows.append([run.name, run.kind, _fraction_text(run.labeled_fraction), run.init_from or "", *values])
    return header, rows


def to_markdown(header: Sequence[str], rows: Sequence[Sequence[Any]], stage: str) -> str:
    """The Markdown table (2 decimals, ``–`` for missing values)."""
    def cell(value: Any) -> str:
        if value is None:
            return "–"
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = [
        f"RIS results ({stage} stage; oIoU and mIoU in percent)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * 4 + "---:|" * (len(header) - 4),
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows),
    ]
    return "\n".join(lines) + "\n"


def to_csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """CSV text (4 decimals, empty for missing values)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else f"{v:.4f}" if isinstance(v, float) else v for v in row])
    return buffer.getvalue()


def curve_points(runs: Sequence[Run], curve_set: str, metric: str) -> dict[str, list[tuple[float, float, str]]]:
    """``{kind: [(labelled fraction, value in percent, run name), ...]}`` sorted by fraction, for the runs that report
    ``metric`` on ``curve_set`` (kinds without labels under their own keys)."""
    points: dict[str, list[tuple[float, float, str]]] = {}
    for run in runs:
        value = run.metrics.get(curve_set, {}).get(metric)
        if value is None or run.labeled_fraction is None:
            continue
        points.setdefault(run.kind, []).append((run.labeled_fraction, 100 * value, run.name))
    return {kind: sorted(values) for kind, values in points.items()}


def plot_curve(points: dict[str, list[tuple[float, float, str]]], curve_set: str, metric: str, path: Path) -> None:
    """Write the semi-supervised curve as a PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=120)
    labelled = {k: v for k, v in points.items() if k not in UNLABELLED_KINDS}
    for kind, values in labelled.items():
        xs = [100 * f for f, _, _ in values]
        ys = [y for _, y, _ in values]
        axis.plot(xs, ys, marker="o", label=KIND_LABELS.get(kind, kind))
    for kind in UNLABELLED_KINDS:
        for _, y, name in points.get(kind, []):
            axis.axhline(y, linestyle="--", linewidth=1, color="gray")
            axis.annotate(f"{name} ({kind})", (0.01, y), xycoords=("axes fraction", "data"), fontsize=7,
                          va="bottom", color="dimgray")
    xs_all = [100 * f for values in labelled.values() for f, _, _ in values if f > 0]
    if xs_all:
        axis.set_xscale("log")
        ticks = sorted(set(xs_all))
        axis.set_xticks(ticks, [f"{t:g}" for t in ticks])
        axis.minorticks_off()
    axis.set_xlabel("labelled training images (%)")
    axis.set_ylabel(f"{metric} on {curve_set} (%)")
    axis.set_title("Semi-supervised RIS")
    axis.grid(True, alpha=0.3)
    if labelled:
        axis.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write(path, buffer.getvalue())


@dataclass
class Report:
    """What :func:`write_report` wrote."""

    runs: list[Run]
    sets: list[str]
    markdown: Path
    csv: Path
    plot: Path | None


def write_report(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    stage: str = "test",
    metric: str = "mIoU",
    curve_set: str | None = None,
) -> Report:
    """Read the runs and write ``results.md``, ``results.csv`` and ``semi_supervised.png`` into ``out``."""
    if not run_dirs:
        raise ValueError("no run folder given")
    if metric not in METRICS:
        raise ValueError(f"--metric must be one of {METRICS}, got {metric!r}")
    runs = [read_run(folder, stage) for folder in run_dirs]
    names = [r.name for r in runs]
    for run, folder in zip(runs, run_dirs):
        if names.count(run.name) > 1:
            run.name = str(folder)
    sets = set_columns(runs)
    if not sets:
        folders = ", ".join(str(d) for d in run_dirs)
        raise ValueError(f"no {stage} metrics in {folders} (columns {stage}/<set>/<metric>)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header, rows = table_rows(runs, sets)
    markdown, table_csv = out / "results.md", out / "results.csv"
    atomic_write(markdown, to_markdown(header, rows, stage).encode())
    atomic_write(table_csv, to_csv(header, rows).encode())
    curve_set = curve_set or sets[0]
    if curve_set not in sets:
        raise ValueError(f"--curve-set {curve_set!r} is not among the reported sets {sets}")
    points = curve_points(runs, curve_set, metric)
    plot = None
    if any(kind not in UNLABELLED_KINDS for kind in points):
        plot = out / "semi_supervised.png"
        plot_curve(points, curve_set, metric, plot)
    else:  # only reference lines (pseudo-only, zero-shot runs, as in `ris demo`): nothing to plot against
        log.info("no run reports %s on %s with human labels at a known labelled fraction; no semi-supervised plot",
                 metric, curve_set)
    for run in runs:
        if run.kind == "unknown":
            log.warning("%s: no run.json declaring the model's supervision and training labels; kind unknown",
                        run.path)
    return Report(runs, sets, markdown, table_csv, plot)


def main(argv: Sequence[str]) -> int:
    """``ris report RUN_DIR... --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="ris report",
        description="Gather the metrics of several runs into one table (Markdown, CSV) and the semi-supervised plot.",
        epilog=__doc__.split("\n\n", 1)[1].split("All files")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (one table row each)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--stage", default="test", choices=("test", "val"), help="metric stage (default: test)")
    parser.add_argument("--metric", default="mIoU", choices=METRICS, help="metric of the plot (default: mIoU)")
    parser.add_argument("--curve-set", default=None, help="evaluation set of the plot (default: the first column)")
    args = parser.parse_args(list(argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        report = write_report(args.runs, args.out, args.stage, args.metric, args.curve_set)
    except (FileNotFoundError, TypeError, ValueError) as err:
        parser.error(str(err))
    log.info("wrote %s, %s%s", report.markdown, report.csv, f" and {report.plot}" if report.plot else "")
    return 0
