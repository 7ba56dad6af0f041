"""Benchmark: the synthetic world's statistics beside RefCOCO's, and the cost of writing and reading it.

Writes the default world into a fresh temporary folder (or reads ``--world``), measures it from its refer files
(:func:`ris.synthetic.statistics.world_statistics`) and prints one Markdown table: each statistic of the world, the
RefCOCO / RefCOCO+ / RefCOCOg figure and where that figure comes from ("not found" when no source could be checked).
With ``--loader``, also the throughput of one pass over the domain-A training loader (``train_unit="ref"``, one
process, no workers) at a few input sizes, i.e. the data side of a synthetic training epoch.

Run: ``.venv/bin/python bench/synthetic_world.py [--world DIR] [--loader --input-sizes 64 96] [--threads 2]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ris.datamodules import RefCOCODataModule
from ris.synthetic import world_tokenizer, write_world
from ris.synthetic.statistics import SMALL_AREA, WorldStatistics, world_statistics
from ris.synthetic.world import SPLITS, WorldPaths

SOURCES = {
    "T": "TFDS `ref_coco` dataset card (tensorflow.org/datasets/catalog/ref_coco): words per expression, the RefCOCO+ "
         "ban on location words, refs and images per split",
    "F": "FlagEval RefCOCO page (flageval.baai.ac.cn): RefCOCO sentences per split (sum 142,210), over TFDS's refs",
    "C": "codesota.com RefCOCO/+/g page, quoting Yu et al. 2016 and Mao et al. 2016: total expressions, objects and "
         "images",
    "P": "RefCOCO's collection protocol (only objects of categories with several instances in the image were "
         "referred) as stated in issue #13 and the synthetic-world specification; the papers' own text could not be "
         "read with the search tools",
}
TFDS, FLAGEVAL, CODESOTA, PROTOCOL = "[T]", "[F]", "[C]", "[P]"
NOT_FOUND = "not found"

# RefCOCO-side figures, by statistic: (figure, source). Splits of the real data: test = testA + testB (UNC).
REFCOCO_SPLITS = {"train": (42404, 16994), "val": (3811, 1500), "test": (1975 + 1810, 750 + 750)}
REFCOCOG_SPLITS = {"train": (42226, 21899), "val": (2573, 1300), "test": (5023, 2600)}


def pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def rows(stats: WorldStatistics) -> list[tuple[str, str, str, str]]:
    """``(statistic, world, RefCOCO figure, source)`` rows."""
    styles = stats.styles
    missing = "– (no such set)"

    def style(name: str, value) -> str:
        return value(styles[name]) if name in styles else missing

    p10, p50, p90 = stats.area_quantiles
    table = [
        ("referred objects with a same-category distractor", pct(stats.with_distractor), "100 %", PROTOCOL),
        ("same-category distractors per referred object", f"{stats.distractors:.2f}", NOT_FOUND, ""),
        ("clutter (annotated, never referred) objects per image", f"{stats.clutter_per_image:.2f}", NOT_FOUND, ""),
        ("referred objects per image", f"{stats.referred / max(stats.images, 1):.2f}",
         "2.50 (50,000 / 19,994); RefCOCOg 1.93 (49,822 / 25,799, UMD)", f"{CODESOTA}; {TFDS}"),
        ("RefCOCO style: expressions with a location word", style("refcoco", lambda s: pct(s.location_share)),
         NOT_FOUND + " (RefCOCO is known for positional cues; no measured share found)", ""),
        ("RefCOCO+ style: expressions with a location word", style("refcoco+", lambda s: pct(s.location_share)),
         "0 % (location words banned)", TFDS),
        ("RefCOCOg style: expressions with a relation to another object",
         style("refcocog", lambda s: pct(s.relation_share)), NOT_FOUND, ""),
        ("RefCOCOg style: expressions with a location word", style("refcocog", lambda s: pct(s.location_share)),
         NOT_FOUND, ""),
        ("RefCOCO style: words per expression", style("refcoco", lambda s: f"{s.words:.2f}"), "3.5", TFDS),
        ("RefCOCO+ style: words per expression", style("refcoco+", lambda s: f"{s.words:.2f}"), NOT_FOUND, ""),
        ("RefCOCOg style: words per expression", style("refcocog", lambda s: f"{s.words:.2f}"), "8.4", TFDS),
        ("referred object area / image area: 10 % / 50 % / 90 % quantiles", f"{pct(p10)} / {pct(p50)} / {pct(p90)}",
         NOT_FOUND, ""),
        (f"referred objects under {pct(SMALL_AREA)} of the image", pct(stats.small_share), NOT_FOUND, ""),
        (f"annotated objects under {pct(SMALL_AREA)} of the image", pct(stats.small_share_all), NOT_FOUND, ""),
        ("RefCOCO style: expressions per referred object", style("refcoco", lambda s: f"{s.per_object:.2f}"),
         "2.84 (142,210 / 50,000)", FLAGEVAL),
        ("RefCOCO+ style: expressions per referred object", style("refcoco+", lambda s: f"{s.per_object:.2f}"),
         "2.84 (141,564 / 49,856)", CODESOTA),
        ("RefCOCOg style: expressions per referred object", style("refcocog", lambda s: f"{s.per_object:.2f}"),
         "1.56 (85,474 / 54,822, Google release; the UMD split's sentence count is unverified)", CODESOTA),
    ]
    for split in SPLITS:
        refcoco = styles["refcoco"]
        table.append((f"referred objects / images, {split}", f"{refcoco.split_refs[split]} / "
                      f"{refcoco.split_images[split]}", "{:,} / {:,}".format(*REFCOCO_SPLITS[split])
                      + "; RefCOCOg (UMD) {:,} / {:,}".format(*REFCOCOG_SPLITS[split]),
                      TFDS + (" (test = testA + testB)" if split == "test" else "")))
    return table


def render(stats: WorldStatistics, world: str) -> str:
    lines = [f"World: {world}; {stats.images} images, {stats.annotations} annotated objects, {stats.referred} "
             "referred (domain A, all splits).", "",
             "| statistic | synthetic world | RefCOCO | source of the RefCOCO figure |", "|---|---:|---|---|"]
    lines += [f"| {name} | {ours} | {theirs} | {source or '–'} |" for name, ours, theirs, source in rows(stats)]
    lines += ["", "Sources: " + "; ".join(f"[{key}] {text}" for key, text in SOURCES.items()) + "."]
    return "\n".join(lines)


def loader_rows(paths: WorldPaths, input_sizes: Sequence[int]) -> list[str]:
    lines = ["| measurement | result |", "|---|---|"]
    for size in input_sizes:
        dm = RefCOCODataModule(data_root=str(paths.refer_root), tokenizer=world_tokenizer(), input_size=size,
                               batch_size=32)
        dm.setup("fit")
        start = time.perf_counter()
        samples = sum(len(batch) for batch in dm.train_dataloader())
        elapsed = time.perf_counter() - start
        lines.append(f"| train epoch, input {size} ({samples} refs) | {elapsed:.1f} s ({samples / elapsed:.0f} "
                     "samples/s) |")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=Path, help="an existing world folder (default: write the default world)")
    parser.add_argument("--loader", action="store_true", help="also time one pass over the training loader")
    parser.add_argument("--input-sizes", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.world is None:
            start = time.perf_counter()
            paths = write_world(tmp)
            label = f"the default world (`write_world` defaults, written in {time.perf_counter() - start:.1f} s)"
        else:
            paths, label = WorldPaths.at(args.world), str(args.world)
        print(render(world_statistics(paths.refer_root), label))
        if args.loader:
            print("\n" + "\n".join(loader_rows(paths, args.input_sizes)))


if __name__ == "__main__":
    main()
