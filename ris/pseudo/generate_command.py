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

At the end, rank 0 merges the manifests into ``manifest.json``, prints a summary (images, masks, candidates, kept
after τ, mean DoS, skips by reason), writes ``report/report.{png,html}`` for a sample of images and saves the
resolved config as ``generate-config.yaml``.

Example::

    ris generate --config configs/generate/synthetic.yaml --output.dir pseudo/synthetic
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from rich.console import Console
from rich.table import Table

from ris.pseudo.gallery import write_report
from ris.pseudo.generator import PseudoRISGenerator
from ris.pseudo.images import GenerationImages
from ris.pseudo.records import PseudoRecord
from ris.pseudo.shards import GenerationStats, ShardSet, merge_manifests
from ris.pseudo.shards.prediction_writer import ShardPredictionWriter

log = logging.getLogger(__name__)

CONFIG_FILE = "generate-config.yaml"
REPORT_DIR = "report"


class GenerateCLI(LightningCLI):
    """LightningCLI for generation: generator model, image datamodule, forced shard writer under ``output``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ShardPredictionWriter, "output")
        parser.link_arguments("output.dir", "data.skip_done")


def build_cli(args: Sequence[str]) -> GenerateCLI:
    """Parse ``args`` and instantiate model, datamodule and trainer (nothing runs yet)."""
    with warnings.catch_warnings():
        # `ris generate ARGS` passes ARGS explicitly while sys.argv also holds them: not a mistake here
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return _generate_cli(args)


def _generate_cli(args: Sequence[str]) -> GenerateCLI:
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
    kept = f"{stats.kept} ({100 * stats.kept / stats.candidates:.1f}%)" if stats.candidates else "0"
    rows = [
        ("images with records", str(stats.images)),
        ("images skipped", str(sum(stats.skipped.values()))),
        *((f"  skipped: {reason}", str(n)) for reason, n in sorted(stats.skipped.items())),
        ("images done before this run", str(before)),
        ("masks (records)", str(stats.masks)),
        *((f"  masks dropped: {reason}", str(n)) for reason, n in sorted(stats.masks_dropped.items()) if n),
        ("single-mask images", str(stats.one_mask)),
        ("multi-mask records without contrast", str(stats.no_contrast)),
        ("candidate captions", str(stats.candidates)),
        ("empty captions", str(stats.empty_captions)),
        (f"kept after τ = {tau:g}", kept),
        ("mean DoS (multi-mask)", f"{stats.mean_dos:.4f}"),
        ("negative DoS values", str(stats.negative_scores)),
        ("shards", str(shards)),
    ]
    for name, value in rows:
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
    (console or Console()).print(summary_table(totals, manifest["tau"], len(manifest["shards"]),
                                               cli.datamodule.already_done))
    if writer.report_images > 0 and totals.masks > 0:
        shards = ShardSet(out)
        png, page = write_report(_report_records(shards, writer.report_images), out / REPORT_DIR,
                                 shards.image_root, manifest["tau"], writer.report_images, seed=cli.model.seed)
        log.info("report written: %s, %s", png, page)
    return manifest


def run(args: Sequence[str], console: Console | None = None) -> dict[str, Any] | None:
    """Run generation with CLI-style ``args``; rank 0 returns the merged manifest, other ranks ``None``."""
    cli = build_cli(args)
    cli.trainer.predict(cli.model, datamodule=cli.datamodule, return_predictions=False)
    cli.trainer.strategy.barrier("ris-generate-finish")
    return finish(cli, console) if cli.trainer.is_global_zero else None


def main(argv: Sequence[str]) -> int:
    """Entry point of ``ris generate``."""
    run(argv)
    return 0
