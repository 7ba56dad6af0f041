"""``ris generate``: run the Pseudo-RIS generator over an image list and write pseudo-label shards.

Generation is Lightning ``predict`` (docs/pseudo_labels.md): a LightningCLI with the generator module
(:class:`ris.pseudo.generator.PseudoRISGenerator`, ``model.*``), the image datamodule
(:class:`ris.pseudo.images.GenerationImages`, ``data.*``), the shard writer callback
(:class:`~ris.pseudo.shards.prediction_writer.ShardPredictionWriter`, ``output.*``) and the usual ``trainer.*``
options. So ``--trainer.devices 8 --trainer.strategy ddp --trainer.num_nodes 4`` spreads the images over 32
processes; each image goes to exactly one process (``UnrepeatedDistributedSampler``) and every process writes its
own shards.

Resume: rerunning the same command after a kill continues where it stopped. The images listed in the folder's
manifests are removed from the input list before it is split across processes, and each image's randomness is
seeded by ``seed ⊕ image_id``, so the records equal those of an uninterrupted run. Changing the generator's settings
for an existing folder is refused.

Before anything is built, every input path of the config (image source, SAM/CutLER/CoCa/CLIP files) is checked
and all problems are reported at once by config key (:mod:`ris.preflight`; the ``FILL-IN`` placeholders of
``configs/generate/refcoco+_sam_cutler_coca.yaml`` are named as such).

At the end, rank 0 merges the manifests into ``manifest.json``, prints a summary (images, masks, candidates, kept
after τ, mean DoS, skips by reason) and the skipped images with their reasons (the first
:data:`SKIPPED_LISTED`, then how many more), writes the pseudo-label gallery ``report/report.html`` and the picture
grid ``report/report.png`` for a sample of images and saves the resolved config as ``generate-config.yaml``.

Example::

    ris generate --config configs/generate/synthetic.yaml --output.dir pseudo/synthetic
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser
from rich.console import Console
from rich.table import Table

from ris.lightning_cli import ProjectCLI
from ris.pseudo.gallery import GalleryContext, write_report
from ris.pseudo.generator import PseudoRISGenerator
from ris.pseudo.images import GenerationImages
from ris.pseudo.records import PseudoRecord
from ris.pseudo.shards import GenerationStats, ShardSet, merge_manifests
from ris.pseudo.shards.manifest import SkippedImage, skipped_images
from ris.pseudo.shards.prediction_writer import ShardPredictionWriter

log = logging.getLogger(__name__)

CONFIG_FILE = "generate-config.yaml"
REPORT_DIR = "report"
SKIPPED_LISTED = 10
"""Skipped images named in the summary; the rest are counted (all are in the per-process manifests)."""


def skipped_lines(skipped: Sequence[SkippedImage], folder: str | Path, listed: int = SKIPPED_LISTED) -> list[str]:
    """The summary's list of skipped images: the first ``listed``, then how many more and where they are."""
    if not skipped:
        return []
    lines = [f"skipped images ({len(skipped)}):", *(f"  {s}" for s in skipped[:listed])]
    if len(skipped) > listed:
        lines.append(f"  … and {len(skipped) - listed} more (all listed in {Path(folder) / 'manifest-r*.json'})")
    return lines


class GenerateCLI(ProjectCLI):
    """LightningCLI for generation: generator model, image datamodule, forced shard writer under ``output``."""

    preflight_stage = "predict"
    preflight_roots = {"model": PseudoRISGenerator, "data": GenerationImages}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ShardPredictionWriter, "output")
        parser.link_arguments("output.dir", "data.skip_done")


def build_cli(args: Sequence[str]) -> GenerateCLI:
    """Parse ``args``, check the inputs and instantiate model, datamodule and trainer (nothing runs yet)."""
    return GenerateCLI(
        model_class=PseudoRISGenerator,
        datamodule_class=GenerationImages,
        save_config_callback=None,
        seed_everything_default=0,
        trainer_defaults={"logger": False, "enable_checkpointing": False},
        parser_kwargs={"description": "Generate Pseudo-RIS pseudo-labels (shards) from raw images."},
        args=list(args),
        run=False,
    )


def summary_table(stats: GenerationStats, tau: float, shards: int, before: int) -> Table:
    """The end-of-run summary of a shard folder's totals."""
    table = Table(title="pseudo-label generation summary")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for name, value in stats.summary_rows(tau, shards, before):
        table.add_row(name, value)
    return table


def _report_records(shards: ShardSet, images: int) -> list[PseudoRecord]:
    """Records of the first shards, enough for about ``4 · images`` images to sample the report from."""
    records: list[PseudoRecord] = []
    seen: set[str] = set()
    for index in range(len(shards.files)):
        for record in shards.read_shard(index):
            records.append(record)
            seen.add(record.image_id)
        if len(seen) >= 4 * images:
            break
    return records


def finish(cli: GenerateCLI, console: Console | None = None) -> dict[str, Any]:
    """Rank 0: merge the manifests, print the summary, write the report and the config. Returns the manifest."""
    writer: ShardPredictionWriter = next(c for c in cli.trainer.callbacks if isinstance(c, ShardPredictionWriter))
    out = Path(writer.dir)
    manifest = merge_manifests(out, str(cli.datamodule.source.root), complete=cli.datamodule.left_for_later == 0)
    cli.parser.save(cli.config, out / CONFIG_FILE, overwrite=True, skip_check=True)
    totals = GenerationStats.from_dict(manifest["totals"])
    console = console or Console()
    console.print(summary_table(totals, manifest["tau"], len(manifest["shards"]), cli.datamodule.already_done))
    skipped = skipped_images(out, cli.datamodule.paths)
    for line in skipped_lines(skipped, out):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if writer.report_images > 0 and totals.masks > 0:
        shards = ShardSet(out)
        context = GalleryContext.from_manifest(manifest, skipped)
        png, page = write_report(_report_records(shards, writer.report_images), out / REPORT_DIR,
                                 shards.image_root, manifest["tau"], writer.report_images, seed=cli.model.seed,
                                 context=context)
        log.info("report written: %s, %s", png, page)
    return manifest


def run(args: Sequence[str], console: Console | None = None) -> dict[str, Any] | None:
    """Run generation with CLI-style ``args``; rank 0 returns the merged manifest, other ranks ``None``."""
    cli = build_cli(args)
    cli.trainer.predict(cli.model, datamodule=cli.datamodule, return_predictions=False)
    cli.trainer.strategy.barrier("ris-generate-finish")
    return finish(cli, console) if cli.trainer.is_global_zero else None


def main(argv: Sequence[str]) -> int:
    """Entry point of ``ris generate``: exit code 1 when the folder holds no record at all although images were
    listed (every image skipped, e.g. a wrong guide or image folder), else 0."""
    manifest = run(argv)
    if manifest is None:
        return 0
    totals = GenerationStats.from_dict(manifest["totals"])
    if totals.images == 0 and totals.skipped:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(totals.skipped.items()))
        log.error("no image produced records (skipped: %s); see the reasons above", reasons)
        return 1
    return 0
