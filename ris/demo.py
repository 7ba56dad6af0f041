"""``ris demo``: the whole Pseudo-RIS pipeline on the embedded default (the synthetic referring world), on CPU.

Stages, each one an ordinary ``ris`` command run in-process on the committed configs (``configs/generate/
synthetic.yaml``, ``configs/synthetic/*.yaml``), all outputs under one run folder:

1. ``world/``: the synthetic world (``ris synth``), in the RefCOCO and PhraseCut formats;
2. the synthetic CoCa (``ris fit`` of ``ris.models.CoCaTrainer``), cached in the user cache and re-used;
3. ``pseudo_labels/``: pseudo-supervision for the world's train images (``ris generate``): unsupervised masks,
   distinctive caption sampling, distinctiveness filtering; with its picture report in ``pseudo_labels/report/``;
4. ``runs/cris_pseudo``: CRIS trained on the pseudo-labels only (``ris fit``), tested on the ground-truth
   expressions (``ris test``);
5. ``runs/global_local_clip``: the zero-shot Global-Local CLIP baseline on the same sets (``ris test``);
6. ``results.md`` / ``results.csv``: both rows side by side (``ris report``), printed at the end.

Nothing is downloaded. The demo only fills in the paths of this run (world, CoCa, shards, run folders) and, for
``--fast`` or ``--epochs``, the sizes; every recipe value comes from the configs. The argument builders below are
shared with ``bench/synthetic_table.py`` and ``bench/cris_recipe.py``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ris.pseudo.distinctiveness import DEFAULT_TAU
from ris.synthetic.world import WorldPaths, WorldSettings, write_world
from ris.synthetic.zoo import CoCaRecipe, synthetic_coca

log = logging.getLogger(__name__)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
"""The repository's ``configs/`` folder (the demo runs from a source checkout)."""


def config(name: str) -> str:
    """The path of the committed config ``configs/<name>``."""
    path = CONFIGS / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: committed config not found (ris demo runs from a checkout of the repository)")
    return str(path)


@dataclass(frozen=True)
class DemoSettings:
    """What the demo sets beside the configs: the world, the CoCa recipe, the epochs and, for ``--fast``, smaller
    sizes (``None`` = the config's value).

    Attributes:
        world: the synthetic world.
        coca: the synthetic CoCa's training recipe.
        epochs: CRIS epochs; the learning rate drops ×0.1 after three quarters of them.
        seq_len, min_seq_len: caption lengths of the generator (``None``: ``configs/generate/synthetic.yaml``).
        input_size: network input side (``None``: ``configs/synthetic/cris.yaml``).
        batch_size: training batch size (``None``: ``configs/synthetic/*_data.yaml``).
        tau: the DoS threshold of the training-time caption choice.
    """

    world: WorldSettings = WorldSettings()
    coca: CoCaRecipe = CoCaRecipe()
    epochs: int = 12
    seq_len: int | None = None
    min_seq_len: int | None = None
    input_size: int | None = None
    batch_size: int | None = None
    tau: float = DEFAULT_TAU


FAST = DemoSettings(
    world=WorldSettings(seed=0, image_size=64, n_train=6, n_val=3, n_test=3, n_b_train=2, n_b_val=2, n_b_test=2),
    coca=CoCaRecipe(model_name="tiny-coca", max_steps=2, batch_size=8),
    epochs=1,
    seq_len=5,
    min_seq_len=2,
    input_size=64,
    batch_size=4,
)


def _given(pairs: Sequence[tuple[str, object | None]]) -> list[str]:
    """``--key value`` for every pair whose value is not ``None``."""
    return [arg for key, value in pairs if value is not None for arg in (key, str(value))]


def refer_set(world: WorldPaths, split: str, dataset: str = "refcoco") -> str:
    """An evaluation-set spec (YAML flow mapping) of the world's domain A (RefCOCO or RefCOCO+ style)."""
    return f"{{dataset: {dataset}, data_root: {world.refer_root}, split_by: unc, split: {split}}}"


def phrasecut_set(world: WorldPaths, split: str) -> str:
    """An evaluation-set spec of the world's domain B (PhraseCut format)."""
    return f"{{dataset: phrasecut, data_root: {world.phrasecut_root}, split: {split}}}"


def generate_args(
    settings: DemoSettings, world: WorldPaths, coca: str, out: Path, masks: Sequence[str] = ()
) -> list[str]:
    """``ris generate`` arguments: ``configs/generate/synthetic.yaml`` on this world's train images, with the
    synthetic CoCa as captioner and as CLIP scorer. ``masks`` replaces the config's mask source (e.g. GT masks)."""
    return [
        "--config", config("generate/synthetic.yaml"),
        "--seed_everything", "0",
        *masks,
        "--model.captioner", coca,
        *_given([("--model.decoding.seq_len", settings.seq_len),
                 ("--model.decoding.min_seq_len", settings.min_seq_len)]),
        "--model.tau", str(settings.tau),
        "--data.source.init_args.data_root", str(world.refer_root),
        "--output.dir", str(out),
    ]


def trainer_args(runs: Path, name: str, epochs: int | None = None) -> list[str]:
    """``configs/synthetic/trainer.yaml`` logging to ``runs/name``; with ``epochs``, validation only at the end."""
    args = [
        "--seed_everything", "0",
        "--trainer", config("synthetic/trainer.yaml"),
        "--trainer.logger.init_args.save_dir", str(runs),
        "--trainer.logger.init_args.name", name,
    ]
    if epochs is not None:
        args += ["--trainer.max_epochs", str(epochs), "--trainer.check_val_every_n_epoch", str(max(epochs, 1))]
    return args


def cris_args(settings: DemoSettings, coca: str, init_from: str | None = None, epochs: int | None = None) -> list[str]:
    """``configs/synthetic/cris.yaml`` on the synthetic CoCa's towers; milestone at 3/4 of ``epochs`` (default: the
    settings')."""
    epochs = settings.epochs if epochs is None else epochs
    return [
        "--model", config("synthetic/cris.yaml"),
        "--model.init_args.backbone", coca,
        "--model.init_args.milestones", f"[{max(epochs * 3 // 4, 1)}]",
        *_given([("--model.init_args.input_size", settings.input_size),
                 ("--model.init_args.init_from", init_from)]),
    ]


def data_args(settings: DemoSettings, world: WorldPaths, shards: Path | None = None, tau: float | None = None,
              labeled_fraction: float = 1.0) -> list[str]:
    """Training data: pseudo-label ``shards`` (``configs/synthetic/pseudo_data.yaml``, caption threshold ``tau``),
    or the world's GT train split (``configs/synthetic/human_data.yaml``, ``labeled_fraction`` of its images);
    validation on the GT val expressions."""
    common = [
        "--data.init_args.val_sets", f"[{refer_set(world, 'val')}]",
        *_given([("--data.init_args.batch_size", settings.batch_size)]),
    ]
    if shards is not None:
        return [
            "--data", config("synthetic/pseudo_data.yaml"),
            "--data.init_args.shards", str(shards),
            "--data.init_args.generate_config", "null",
            "--data.init_args.tau", str(settings.tau if tau is None else tau),
            *common,
        ]
    return [
        "--data", config("synthetic/human_data.yaml"),
        "--data.init_args.data_root", str(world.refer_root),
        "--data.init_args.labeled_fraction", str(labeled_fraction),
        *common,
    ]


def test_args(
    model: Sequence[str], settings: DemoSettings, world: WorldPaths, test_sets: Sequence[str], runs: Path, name: str
) -> list[str]:
    """``ris test`` of ``model`` (``--ckpt_path X`` or ``--model ...`` arguments) on ``test_sets``
    (``configs/synthetic/test_data.yaml`` with this world's sets)."""
    return [
        "test",
        *model,
        *trainer_args(runs, name),
        "--data", config("synthetic/test_data.yaml"),
        "--data.init_args.data_root", str(world.refer_root),
        "--data.init_args.test_splits", "[]",
        "--data.init_args.test_sets", "[" + ", ".join(test_sets) + "]",
        *_given([("--data.init_args.eval_batch_size", settings.batch_size)]),
    ]


def baseline_model_args(settings: DemoSettings, coca: str) -> list[str]:
    """The zero-shot baseline (``configs/synthetic/global_local_clip.yaml``) with the CoCa's towers."""
    return [
        "--model", config("synthetic/global_local_clip.yaml"),
        "--model.init_args.clip_model", coca,
        *_given([("--model.init_args.input_size", settings.input_size)]),
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
    from ris.report import main as report_main

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
    build_cli(test_args(baseline_model_args(settings, coca), settings, world, test_sets, runs, "global_local_clip"))
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

