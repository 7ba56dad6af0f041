"""The mini paper table: the claims of the paper measured on the synthetic world, on CPU, at several seeds.

Every run is an ordinary ``ris generate`` / ``ris fit`` / ``ris test`` (the argument builders of ``ris.demo``).
Each seed draws its own world and seeds generation and training with the same number. Writes
``docs/synthetic_table.md`` (mean ± std over the seeds, each claim's verdict at every seed) and
``docs/synthetic_semi.png``, and prints the table. A claim holds when it holds at every seed.

    python bench/synthetic_table.py --seeds 0 1 2 --out runs/synthetic_table

Claims (paper reference in brackets):
1. mean DoS of the candidates: distinctive caption sampling (DCS) > plain top-k/top-p sampling [Table 13];
2. mIoU of CRIS trained on the pseudo-labels: naive < DCS-only, filter-only < DCS + filter [Table 5];
3. CRIS and ETRIS trained on the pseudo-labels > zero-shot Global-Local CLIP, in oIoU and mIoU [Tables 1–2];
4. pseudo-trained CRIS > SaG trained on the human expressions (text only) [Table 1, weakly supervised];
5. fully supervised (GT expressions) ≥ pseudo with GT masks ≥ pseudo with unsupervised masks [Table 6];
6. pseudo-pretrained then fine-tuned on 1 % / 10 % GT > the same fraction alone and > the pseudo model [Fig. 4];
7. trained on domain A, tested on domain B: the pseudo model loses less than the fully supervised one, and beats it
   on B [Tables 3–4].
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ris.cli import build_cli  # noqa: E402
from ris.demo import (  # noqa: E402
    FAST,
    DemoSettings,
    baseline_model_args,
    config,
    cris_args,
    data_args,
    fit,
    generate,
    generate_args,
    phrasecut_set,
    refer_set,
    test_args,
    trainer_args,
)
from ris.report import read_run  # noqa: E402
from ris.synthetic.world import write_world  # noqa: E402
from ris.synthetic.zoo import synthetic_coca  # noqa: E402

log = logging.getLogger("synthetic_table")
NO_FILTER = -1e9  # every caption passes: caption drawn uniformly among all candidates
FRACTIONS = (0.01, 0.1)


A, B = "refcoco/test", "phrasecut/test"


@dataclass
class SeedRun:
    """Everything one seed measured: ``results`` ``{run: {set: metrics}}``, mean DoS and totals per generation."""

    seed: int
    results: dict[str, dict[str, dict[str, float]]]
    mean_dos: dict[str, float]
    totals: dict[str, dict]
    seconds: float


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/synthetic_table")
    parser.add_argument("--docs", default="docs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="world and training seeds (default: 0)")
    parser.add_argument("--epochs", type=int, help="CRIS / ETRIS / SaG epochs (default: the demo's)")
    parser.add_argument("--fast", action="store_true", help="the demo's tiny --fast sizes (a smoke test of the script)")
    parser.add_argument("--fraction-epochs", type=int, help="epochs of the 1 %% / 10 %% runs (default: 5 × --epochs); "
                        "supervised-only and fine-tuned runs of a fraction get the same schedule")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = FAST if args.fast else DemoSettings()
    if args.epochs is not None:
        settings = replace(settings, epochs=args.epochs)
    fraction_epochs = args.fraction_epochs or 5 * settings.epochs
    runs = [run_seed(seed, settings, Path(args.out).resolve() / f"seed{seed}", fraction_epochs) for seed in args.seeds]
    table = render(runs, settings, fraction_epochs, args.fast)
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "synthetic_table.md").write_text(table)
    plot_semi(runs, docs / "synthetic_semi.png")
    print(table)
    return 0


def run_seed(seed: int, settings: DemoSettings, out: Path, fraction_epochs: int) -> SeedRun:
    """Every row of the table at one seed (world, generation and training seeds)."""
    started = time.time()
    settings = replace(settings, world=replace(settings.world, seed=seed))
    runs = out / "runs"
    world = write_world(out / "world", **asdict(settings.world))
    coca = synthetic_coca(settings.world, settings.coca)
    test_sets = [refer_set(world, "test"), phrasecut_set(world, "test")]
    seeded = ["--seed_everything", str(seed)]
    results: dict[str, dict[str, dict[str, float]]] = {}

    def evaluate(name: str, model: list[str]) -> None:
        build_cli([*test_args(model, settings, world, test_sets, runs, name), *seeded])
        results[name] = read_run(runs / name).metrics

    def train(name: str, epochs: int, model: list[str] | None = None, extra: Sequence[str] = (), **data) -> str:
        init_from = data.pop("init_from", None)
        model = model or cris_args(settings, coca, init_from, epochs=epochs)
        checkpoint = fit([*trainer_args(runs, name, epochs), *seeded, *model, *data_args(settings, world, **data),
                          *extra])
        evaluate(name, ["--ckpt_path", checkpoint])
        return checkpoint

    # Generations: DCS vs plain sampling on unsupervised masks; DCS on ground-truth masks.
    shards = {"dcs": out / "pseudo_dcs", "plain": out / "pseudo_plain", "gt_masks": out / "pseudo_gt_masks"}
    generation = [*seeded, "--model.seed", str(seed)]
    generate([*generate_args(settings, world, coca, shards["dcs"]), *generation])
    generate([*generate_args(settings, world, coca, shards["plain"]), *generation, "--model.decoding.contrast", "none"])
    gt_masks = ["--model.masks", "ris.pseudo.masks.GroundTruthMaskSource",
                "--model.masks.annotations", str(world.refcoco / "instances.json")]
    generate([*generate_args(settings, world, coca, shards["gt_masks"], masks=gt_masks), *generation])
    totals = {k: json.loads((v / "manifest.json").read_text())["totals"] for k, v in shards.items()}
    mean_dos = {k: t["dos_sum"] / max(t["dos_count"], 1) for k, t in totals.items()}

    epochs = settings.epochs
    train("naive", epochs, shards=shards["plain"], tau=NO_FILTER)
    train("dcs_only", epochs, shards=shards["dcs"], tau=NO_FILTER)
    train("filter_only", epochs, shards=shards["plain"], tau=settings.tau)
    pseudo_ckpt = train("dcs_filter", epochs, shards=shards["dcs"], tau=settings.tau)
    train("etris_pseudo", epochs, model=etris_args(settings, coca, epochs), shards=shards["dcs"], tau=settings.tau)
    train("pseudo_gt_masks", epochs, shards=shards["gt_masks"], tau=settings.tau)
    evaluate("zero_shot_gl_clip", baseline_model_args(settings, coca))
    train("sag_text_only", epochs, model=sag_args(settings, coca),
          extra=["--data.init_args.train_unit", "sentence", "--trainer.gradient_clip_val", "0.1"])
    train("supervised_100", epochs, labeled_fraction=1.0)
    for fraction in FRACTIONS:
        pct = f"{fraction * 100:g}"
        train(f"supervised_{pct}", fraction_epochs, labeled_fraction=fraction)
        train(f"finetuned_{pct}", fraction_epochs, labeled_fraction=fraction, init_from=pseudo_ckpt)
    return SeedRun(seed, results, mean_dos, totals, time.time() - started)


def etris_args(settings: DemoSettings, coca: str, epochs: int) -> list[str]:
    """``configs/synthetic/etris.yaml`` on the synthetic CoCa's towers; milestone at 3/4 of ``epochs``."""
    return [
        "--model", config("synthetic/etris.yaml"),
        "--model.init_args.backbone", coca,
        "--model.init_args.milestones", f"[{max(epochs * 3 // 4, 1)}]",
        *(["--model.init_args.input_size", str(settings.input_size)] if settings.input_size else []),
    ]


def sag_args(settings: DemoSettings, coca: str) -> list[str]:
    """``configs/synthetic/sag.yaml`` with the synthetic CoCa's text tower as the sentence encoder (an input size
    override is rounded down to a multiple of the config's ViT patch)."""
    recipe = yaml.safe_load(Path(config("synthetic/sag.yaml")).read_text())["init_args"]
    size = []
    if settings.input_size:
        patch = recipe["vit_overrides"]["patch_size"]
        size = ["--model.init_args.input_size", str(settings.input_size // patch * patch)]
    return ["--model", config("synthetic/sag.yaml"), "--model.init_args.text_encoder", coca, *size]


def miou(results: dict, run: str, set_name: str = A) -> float:
    return 100 * results[run][set_name]["mIoU"]


def oiou(results: dict, run: str, set_name: str = A) -> float:
    return 100 * results[run][set_name]["oIoU"]


Claim = Callable[[SeedRun], tuple[str, bool]]


def _claims() -> list[tuple[str, Claim]]:
    """``(claim, at one seed: (numbers, holds))`` for claims 1–7 (module docstring)."""

    def dos(r: SeedRun) -> tuple[str, bool]:
        d = r.mean_dos
        return f"DCS {d['dcs']:.3f} vs plain {d['plain']:.3f}", d["dcs"] > d["plain"]

    def ablation(r: SeedRun) -> tuple[str, bool]:
        m = {k: miou(r.results, k) for k in ("naive", "dcs_only", "filter_only", "dcs_filter")}
        middle = (m["dcs_only"], m["filter_only"])
        ok = m["naive"] < min(middle) and max(middle) < m["dcs_filter"]
        return ", ".join(f"{k} {v:.2f}" for k, v in m.items()), ok

    def beats_baseline(r: SeedRun) -> tuple[str, bool]:
        res, base = r.results, "zero_shot_gl_clip"
        rows = {k: (miou(res, k), oiou(res, k)) for k in ("dcs_filter", "etris_pseudo", base)}
        ok = all(rows[k][0] > rows[base][0] and rows[k][1] > rows[base][1] for k in ("dcs_filter", "etris_pseudo"))
        return ", ".join(f"{k} {m:.2f}/{o:.2f}" for k, (m, o) in rows.items()) + " (mIoU/oIoU)", ok

    def beats_sag(r: SeedRun) -> tuple[str, bool]:
        m, s = miou(r.results, "dcs_filter"), miou(r.results, "sag_text_only")
        return f"pseudo CRIS {m:.2f} vs SaG (human text) {s:.2f}", m > s

    def supervision_order(r: SeedRun) -> tuple[str, bool]:
        m = {k: miou(r.results, k) for k in ("supervised_100", "pseudo_gt_masks", "dcs_filter")}
        return ", ".join(f"{k} {v:.2f}" for k, v in m.items()), m["supervised_100"] >= m["pseudo_gt_masks"] >= m[
            "dcs_filter"]

    def semi(r: SeedRun) -> tuple[str, bool]:
        parts, ok = [], True
        pseudo = miou(r.results, "dcs_filter")
        for pct in (f"{f * 100:g}" for f in FRACTIONS):
            ft, sup = miou(r.results, f"finetuned_{pct}"), miou(r.results, f"supervised_{pct}")
            parts.append(f"{pct} %: fine-tuned {ft:.2f} vs alone {sup:.2f}")
            ok = ok and ft > sup and ft > pseudo
        return "; ".join(parts) + f"; pseudo only {pseudo:.2f}", ok

    def cross_domain(r: SeedRun) -> tuple[str, bool]:
        res = r.results
        drop = {k: miou(res, k) - miou(res, k, B) for k in ("dcs_filter", "supervised_100")}
        on_b = {k: miou(res, k, B) for k in drop}
        text = (f"A→B drop pseudo {drop['dcs_filter']:.2f} vs supervised {drop['supervised_100']:.2f}; on B "
                f"{on_b['dcs_filter']:.2f} vs {on_b['supervised_100']:.2f}")
        return text, drop["dcs_filter"] < drop["supervised_100"] and on_b["dcs_filter"] > on_b["supervised_100"]

    return [
        ("1. DCS candidates are more distinctive (mean DoS)", dos),
        ("2. ablation: naive < DCS-only, filter-only < DCS + filter (mIoU on A)", ablation),
        ("3. CRIS and ETRIS on pseudo-labels beat zero-shot Global-Local CLIP (mIoU and oIoU on A)", beats_baseline),
        ("4. pseudo CRIS beats SaG trained on human expressions (mIoU on A)", beats_sag),
        ("5. fully supervised ≥ pseudo with GT masks ≥ pseudo (mIoU on A)", supervision_order),
        ("6. semi-supervised: fine-tuned beats the fraction alone and the pseudo model (mIoU on A)", semi),
        ("7. cross-domain A → B: the pseudo model loses less and beats the supervised one on B (mIoU)", cross_domain),
    ]


def mean_std(values: Sequence[float]) -> str:
    return f"{statistics.mean(values):.2f}" + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")


def render(runs: Sequence[SeedRun], settings: DemoSettings, fraction_epochs: int, fast: bool) -> str:
    seeds = [r.seed for r in runs]
    names = list(runs[0].results)
    rows = ["| run | A: refcoco/test mIoU | A: oIoU | B: phrasecut/test mIoU | B: oIoU |", "|---|---:|---:|---:|---:|"]
    for name in names:
        cells = [mean_std([100 * r.results[name][s][k] for r in runs]) for s in (A, B) for k in ("mIoU", "oIoU")]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    claims = []
    for title, claim in _claims():
        verdicts = [(r.seed, *claim(r)) for r in runs]
        holds = all(ok for _, _, ok in verdicts)
        claims.append(f"{title}: {'**holds at every seed**' if holds else '**does not hold at every seed**'}")
        claims += [f"   - seed {seed}: {text} — {'holds' if ok else 'does not hold'}" for seed, text, ok in verdicts]
    times = ", ".join(f"seed {r.seed}: {r.seconds / 60:.1f} min" for r in runs)
    generation = "; ".join(
        f"seed {r.seed}: " + ", ".join(f"{k} {t['masks']} masks, {t['candidates']} candidates, {t['kept']} kept"
                                       for k, t in r.totals.items()) for r in runs
    )
    command = f"python bench/synthetic_table.py --seeds {' '.join(map(str, seeds))}" + (" --fast" if fast else "")
    return "\n".join([
        "# Mini paper table on the synthetic world",
        "",
        f"Command: `{command}` (world {asdict(replace(settings.world, seed=seeds[0]))} with the seed of each column "
        f"set; synthetic CoCa {asdict(settings.coca)}; CRIS, ETRIS and SaG {settings.epochs} epochs "
        f"({fraction_epochs} on the 1 % / 10 % fractions, with or without pseudo-pretraining), recipes "
        f"configs/synthetic/{{cris,etris,sag}}.yaml, τ = {settings.tau}; 2 CPU cores, {times}). Test sets: domain A "
        "`refcoco/test` (GT RefCOCO-style expressions) and domain B `phrasecut/test`. Numbers in percent, mean ± "
        f"std over {len(runs)} seed(s).",
        "",
        *rows,
        "",
        "## Claims (a claim holds when it holds at every seed)",
        "",
        *claims,
        "",
        f"Generation: {generation}.",
        "",
    ])


def plot_semi(runs: Sequence[SeedRun], path: Path) -> None:
    """Mean mIoU on A against the labelled fraction (drawn only when there are fractions to plot)."""
    if not FRACTIONS:
        return
    xs = [100 * f for f in FRACTIONS] + [100.0]

    def mean(run: str) -> float:
        return statistics.mean(miou(r.results, run) for r in runs)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs[:-1], [mean(f"finetuned_{x:g}") for x in xs[:-1]], "o-", label="pseudo-pretrained → fine-tuned")
    ax.plot(xs, [mean(f"supervised_{x:g}") for x in xs], "s-", label="supervised only")
    ax.axhline(mean("dcs_filter"), ls="--", c="gray", label="pseudo only (0 labels)")
    ax.set_xscale("log")
    ax.set_xlabel("labelled images (%)")
    ax.set_ylabel(f"mIoU (%) on {A}, mean of {len(runs)} seed(s)")
    ax.set_title("Synthetic world: semi-supervised")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
