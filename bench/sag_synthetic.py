"""SaG on the synthetic world: ``ris fit --config configs/sag_synthetic.yaml`` on the world's ground-truth train
expressions (text only), then the test mIoU / oIoU beside the two trivial baselines on the same samples:

- **whole image**: every pixel predicted;
- **random slot**: the trained model's attention map of one entity slot drawn at random per sample (seeded), through
  the same binarisation as SaG's ``Σ_k A_fuse · A_slot`` — what the slots alone give without the text.

    python bench/sag_synthetic.py                      # the recipe of configs/synthetic/sag.yaml
    python bench/sag_synthetic.py --epochs 6 -- --model.lr 1e-3

Arguments after ``--`` are appended to the ``ris fit`` command line. The world (default ``WorldSettings``, 96 px) is
written under ``--out`` if it is not there yet; the synthetic CoCa (text encoder) comes from the user cache
(``ris.synthetic.zoo.synthetic_coca``, trained once if missing).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch import Trainer

from ris.cli import build_cli
from ris.datamodules import RefCOCODataModule
from ris.evaluation import format_table
from ris.metrics import RISMetrics
from ris.models import SaG
from ris.synthetic.world import WorldPaths, WorldSettings, write_world
from ris.synthetic.zoo import synthetic_coca

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sag_synthetic.yaml"


def baselines(model: SaG, data: RefCOCODataModule, seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """``{baseline: {set: metrics}}`` of the whole-image and random-slot masks on every test set of ``data``."""
    generator = torch.Generator().manual_seed(seed)
    num_slots = model.network.entity_discovery.slots.num_slots
    model.eval()
    results: dict[str, dict[str, dict[str, float]]] = {"whole image": {}, "random slot": {}}
    for name, loader in zip(data.eval_set_names("test"), data.test_dataloader()):
        whole, random_slot = RISMetrics(), RISMetrics()
        with torch.no_grad():
            for batch in loader:
                whole.update([torch.ones_like(g) for g in batch.gt_masks], batch.gt_masks)
                slots = torch.randint(num_slots, (len(batch),), generator=generator)
                random_slot.update(model.slot_masks(batch, slots), batch.gt_masks)
        results["whole image"][name] = {k: float(v) for k, v in whole.compute().items()}
        results["random slot"][name] = {k: float(v) for k, v in random_slot.compute().items()}
    return results


def main(argv: list[str]) -> int:
    own, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/sag_synthetic")
    parser.add_argument("--epochs", type=int, help="override the config's max_epochs")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(own)
    torch.set_num_threads(args.threads)
    out = Path(args.out).resolve()
    world = WorldPaths.at(out / "world")
    if not world.settings.is_file():
        world = write_world(out / "world")
    coca = synthetic_coca(WorldSettings())
    fit_args = [
        "fit", "--config", str(CONFIG),
        "--model.text_encoder", coca,
        "--data.data_root", str(world.refer_root),
        "--trainer.logger.save_dir", str(out / "runs"),
        "--trainer.enable_progress_bar", "false",
        *(["--trainer.max_epochs", str(args.epochs), "--trainer.check_val_every_n_epoch", str(args.epochs)]
          if args.epochs else []),
        *extra,
    ]
    started = time.time()
    cli = build_cli(fit_args)
    fit_minutes = (time.time() - started) / 60
    checkpoint = cli.trainer.checkpoint_callback.last_model_path
    model = SaG.load_from_checkpoint(checkpoint)
    data = RefCOCODataModule(data_root=str(world.refer_root), dataset="refcoco", val_splits=[],
                             test_splits=["val", "test"], word_length=12, eval_batch_size=32)
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False)
    sag: dict[str, dict[str, float]] = {}
    for logged in trainer.test(model, datamodule=data, verbose=False):
        for key, value in logged.items():
            name, _, metric = key.removeprefix("test/").rpartition("/")
            sag.setdefault(name, {})[metric] = float(value)
    print(format_table(sag, f"SaG ({checkpoint}, fit {fit_minutes:.1f} min, {cli.trainer.global_step} steps)"))
    for name, results in baselines(model, data).items():
        print("\n" + format_table(results, name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
