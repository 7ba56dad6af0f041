"""``ris demo``: the whole Pseudo-RIS pipeline on the embedded default (the synthetic referring world), on CPU.

Stages, each one an ordinary ``ris`` command run in-process, all outputs under one run folder:

1. ``world/``: the synthetic world (``ris synth``), in the RefCOCO and PhraseCut formats;
2. the synthetic CoCa (``ris fit`` of ``ris.models.CoCaTrainer``), cached in the user cache and re-used;
3. ``pseudo_labels/``: pseudo-supervision for the world's train images (``ris generate``): unsupervised masks,
   distinctive caption sampling, distinctiveness filtering; with its picture report in ``pseudo_labels/report/``;
4. ``runs/cris_pseudo``: CRIS trained on the pseudo-labels only (``ris fit``), tested on the ground-truth
   expressions (``ris test``);
5. ``runs/global_local_clip``: the zero-shot Global-Local CLIP baseline on the same sets (``ris test``);
6. ``results.md`` / ``results.csv``: both rows side by side (``ris report``), printed at the end.

Nothing is downloaded. ``--fast`` shrinks every stage (the test suite runs it). The argument builders below are
shared with ``bench/synthetic_table.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ris.pseudo.distinctiveness import DEFAULT_TAU
from ris.synthetic.vocabulary import world_nouns
from ris.synthetic.world import WorldPaths, WorldSettings, write_world
from ris.synthetic.zoo import CoCaRecipe, synthetic_coca

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the stages (defaults: the full demo, minutes on 2 CPU cores)."""

    world: WorldSettings = WorldSettings()
    coca: CoCaRecipe = CoCaRecipe()
    seq_len: int = 12
    min_seq_len: int = 3
    tau: float = DEFAULT_TAU
    input_size: int = 96
    word_length: int = 12
    epochs: int = 12
    batch_size: int = 32
    lr: float = 1e-3


FAST = DemoSettings(
    world=WorldSettings(seed=0, image_size=64, n_train=6, n_val=3, n_test=3, n_b_train=2, n_b_val=2, n_b_test=2),
    coca=CoCaRecipe(model_name="tiny-coca", max_steps=2, batch_size=8),
    seq_len=5,
    min_seq_len=2,
    input_size=64,
    epochs=1,
    batch_size=4,
)


def refer_set(world: WorldPaths, split: str, dataset: str = "refcoco") -> str:
    """An evaluation-set spec (YAML flow mapping) of the world's domain A (RefCOCO or RefCOCO+ style)."""
    return f"{{dataset: {dataset}, data_root: {world.refer_root}, split_by: unc, split: {split}}}"


def phrasecut_set(world: WorldPaths, split: str) -> str:
    """An evaluation-set spec of the world's domain B (PhraseCut format)."""
    return f"{{dataset: phrasecut, data_root: {world.phrasecut_root}, split: {split}}}"


def generate_args(
    settings: DemoSettings, world: WorldPaths, coca: str, out: Path, masks: Sequence[str] = ()
) -> list[str]:
    """``ris generate`` arguments for the world's train images: the synthetic CoCa as captioner and as CLIP scorer.

    ``masks`` replaces the default mask source (the unsupervised segmenter), e.g. ground-truth masks.
    """
    return [
        "--seed_everything", "0",
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        *(masks or ["--model.masks", "ris.pseudo.masks.SegmenterMaskSource"]),
        "--model.captioner", coca,
        "--model.decoding.seq_len", str(settings.seq_len),
        "--model.decoding.min_seq_len", str(settings.min_seq_len),
        "--model.scorer", "null",
        "--model.scorer_pretrained", "null",
        "--model.tau", str(settings.tau),
        "--model.known_nouns", json.dumps(world_nouns()),
        "--data.source", "ris.pseudo.images.ReferImages",
        "--data.source.data_root", str(world.refer_root),
        "--data.source.dataset", "refcoco",
        "--data.source.split", "train",
        "--output.dir", str(out),
    ]


def trainer_args(runs: Path, name: str, epochs: int | None = None) -> list[str]:
    """CPU trainer with a CSV logger writing to ``runs/name``; with ``epochs``, validation only at the end."""
    args = [
        "--seed_everything", "0",
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir", str(runs),
        "--trainer.logger.name", name,
    ]
    if epochs is not None:
        args += [
            "--trainer.max_epochs", str(epochs),
            "--trainer.num_sanity_val_steps", "0",
            "--trainer.check_val_every_n_epoch", str(max(epochs, 1)),
        ]
    return args


def cris_args(settings: DemoSettings, coca: str, init_from: str | None = None) -> list[str]:
    """A small CRIS on the synthetic CoCa's towers (the world's CLIP), the whole model at one learning rate.

    On this world the small neck (``fpn_out`` [32, 64, 128]) trained better than [64, 128, 256], and fine-tuning
    the tiny CoCa towers at the head's rate better than at ×0.1 (``docs/benchmarks.md``). Without dropout the
    decoder's attention runs fused, 15 % faster per step, which buys the demo more epochs in its time budget.
    """
    args = [
        "--model", "ris.models.CRIS",
        "--model.backbone", coca,
        "--model.pretrained", "null",
        "--model.fpn_out", "[32, 64, 128]",
        "--model.nhead", "4",
        "--model.dim_ffn", "128",
        "--model.dropout", "0.0",
        "--model.lr", str(settings.lr),
        "--model.backbone_lr_mult", "1.0",
        "--model.milestones", f"[{max(settings.epochs * 3 // 4, 1)}]",
    ]
    return args + (["--model.init_from", init_from] if init_from else [])


def data_args(settings: DemoSettings, world: WorldPaths, shards: Path | None = None, tau: float | None = None,
              labeled_fraction: float = 1.0) -> list[str]:
    """Training data: pseudo-label ``shards`` (with caption threshold ``tau``), or the world's GT train split
    (``labeled_fraction`` of its images); validation on the GT val expressions."""
    common = [
        "--data.batch_size", str(settings.batch_size),
        "--data.input_size", str(settings.input_size),
        "--data.word_length", str(settings.word_length),
        "--data.val_sets", f"[{refer_set(world, 'val')}]",
    ]
    if shards is not None:
        return [
            "--data", "ris.datamodules.PseudoRISDataModule",
            "--data.shards", str(shards),
            "--data.tau", str(settings.tau if tau is None else tau),
            *common,
        ]
    return [
        "--data", "ris.datamodules.RefCOCODataModule",
        "--data.data_root", str(world.refer_root),
        "--data.dataset", "refcoco",
        "--data.val_splits", "[]",
        "--data.test_splits", "[]",
        "--data.labeled_fraction", str(labeled_fraction),
        *common,
    ]


def test_args(
    model: Sequence[str], settings: DemoSettings, world: WorldPaths, test_sets: Sequence[str], runs: Path, name: str
) -> list[str]:
    """``ris test`` of ``model`` (``--ckpt_path X`` or ``--model ...`` arguments) on ``test_sets``."""
    return [
        "test",
        *model,
        *trainer_args(runs, name),
        "--data", "ris.datamodules.RefCOCODataModule",
        "--data.data_root", str(world.refer_root),
        "--data.val_splits", "[]",
        "--data.test_splits", "[]",
        "--data.input_size", str(settings.input_size),
        "--data.word_length", str(settings.word_length),
        "--data.eval_batch_size", str(max(settings.batch_size, 1)),
        "--data.test_sets", "[" + ", ".join(test_sets) + "]",
    ]


def baseline_model_args(coca: str) -> list[str]:
    """The zero-shot baseline: Global-Local CLIP with the CoCa's towers and the same unsupervised masks."""
    return [
        "--model", "ris.models.GlobalLocalCLIP",
        "--model.clip_model", coca,
        "--model.clip_pretrained", "null",
        "--model.masked_layers", "1",
        "--model.masks", "ris.pseudo.masks.SegmenterMaskSource",
    ]


def fit(args: Sequence[str]) -> str:
    """Run ``ris fit`` in-process and return the path of the last checkpoint."""
    from ris.cli import build_cli

    callback = build_cli(["fit", *args]).trainer.checkpoint_callback
    return callback.last_model_path or callback.best_model_path


def generate(args: Sequence[str]) -> None:
    """Run ``ris generate`` in-process (a finished output folder is left as it is)."""
    from ris.pseudo.generate_command import main as generate_main

    if generate_main(list(args)):
        raise RuntimeError("ris generate failed")


def run_demo(out: str | Path, settings: DemoSettings = DemoSettings()) -> Path:
    """Run every stage into ``out`` and return the path of the results table."""
    from ris.cli import build_cli
    from ris.results import main as report_main

    out = Path(out).resolve()
    runs, shards = out / "runs", out / "pseudo_labels"
    log.info("1/6 synthetic world → %s", out / "world")
    world = write_world(out / "world", **asdict(settings.world))
    log.info("2/6 synthetic CoCa (trained once, then cached)")
    coca = synthetic_coca(settings.world, settings.coca)
    log.info("3/6 pseudo-supervision → %s", shards)
    generate(generate_args(settings, world, coca, shards))
    log.info("4/6 CRIS on the pseudo-labels")
    checkpoint = fit([*trainer_args(runs, "cris_pseudo", settings.epochs), *cris_args(settings, coca),
                      *data_args(settings, world, shards)])
    test_sets = [refer_set(world, "test"), refer_set(world, "test", "refcoco+")]
    build_cli(test_args(["--ckpt_path", checkpoint], settings, world, test_sets, runs, "cris_pseudo"))
    log.info("5/6 zero-shot Global-Local CLIP")
    build_cli(test_args(baseline_model_args(coca), settings, world, test_sets, runs, "global_local_clip"))
    log.info("6/6 results table")
    report_main([str(runs / "cris_pseudo"), str(runs / "global_local_clip"), "--out", str(out)])
    return out / "results.md"


def main(argv: Sequence[str]) -> int:
    """Entry point of ``ris demo``."""
    parser = argparse.ArgumentParser(
        prog="ris demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    parser.add_argument("--fast", action="store_true", help="tiny sizes and few steps (a smoke test of every stage)")
    parser.add_argument("--epochs", type=int, help="CRIS training epochs")
    args = parser.parse_args(list(argv))
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("ris").setLevel(logging.INFO)
    settings = FAST if args.fast else DemoSettings()
    if args.epochs is not None:
        settings = replace(settings, epochs=args.epochs)
    table = run_demo(args.out, settings)
    print(table.read_text())
    print(f"All outputs are in {table.parent}")
    return 0
