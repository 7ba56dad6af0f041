"""The synthetic world's foundation model: a tiny CoCa, trained once with ``ris fit`` and cached.

:func:`synthetic_coca` returns the ``local-dir:`` folder of a CoCa trained on web-like captions of object crops of
the world's train scenes (``ris.models.CoCaTrainer`` on ``ris.datamodules.SyntheticCaptionsDataModule``). The
folder lives in the user cache (``$PSEUDO_RIS_CACHE`` or ``~/.cache/pseudo-ris``) under a key made of every setting
that changes the result (world, training recipe, architecture), so it is re-used when present and retrained when a
setting changes. Its contrastive towers are this world's CLIP (distinctiveness filter, zero-shot baseline, RIS
backbone option).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ris.open_clip_models import model_config
from ris.synthetic.world import FORMAT_VERSION, WorldSettings

log = logging.getLogger(__name__)

ZOO_VERSION = 1


@dataclass(frozen=True)
class CoCaRecipe:
    """How the synthetic CoCa is trained (defaults: a few CPU minutes)."""

    model_name: str = "synthetic-coca"
    max_steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    captions_per_crop: int = 2
    seed: int = 0


def cache_root() -> Path:
    """The user cache folder of pseudo-ris."""
    return Path(os.environ.get("PSEUDO_RIS_CACHE", Path.home() / ".cache" / "pseudo-ris"))


def cache_key(world: WorldSettings, recipe: CoCaRecipe) -> str:
    """A short hash of everything that determines the trained model."""
    payload = {
        "version": ZOO_VERSION,
        "world_version": FORMAT_VERSION,
        "world": {"seed": world.seed, "image_size": world.image_size, "n_train": world.n_train},
        "recipe": asdict(recipe),
        "architecture": model_config(recipe.model_name),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def fit_args(world: WorldSettings, recipe: CoCaRecipe, export_dir: Path, log_dir: Path) -> list[str]:
    """The ``ris fit`` arguments that train the synthetic CoCa."""
    return [
        "fit",
        "--seed_everything", str(recipe.seed),
        "--model", "ris.models.CoCaTrainer",
        "--model.model_name", recipe.model_name,
        "--model.lr", str(recipe.lr),
        "--model.export_dir", str(export_dir),
        "--data", "ris.datamodules.SyntheticCaptionsDataModule",
        "--data.seed", str(world.seed),
        "--data.image_size", str(world.image_size),
        "--data.n_train", str(world.n_train),
        "--data.captions_per_crop", str(recipe.captions_per_crop),
        "--data.caption_seed", str(recipe.seed),
        "--data.batch_size", str(recipe.batch_size),
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.max_steps", str(recipe.max_steps),
        "--trainer.max_epochs", "-1",
        "--trainer.enable_checkpointing", "false",
        "--trainer.default_root_dir", str(log_dir),
        "--trainer.log_every_n_steps", "10",
    ]


def synthetic_coca(
    world: WorldSettings | None = None, recipe: CoCaRecipe | None = None, cache_dir: str | Path | None = None
) -> str:
    """The ``local-dir:`` name of the synthetic CoCa for ``world``, training it first if it is not cached."""
    from ris.cli import build_cli

    world = world or WorldSettings()
    recipe = recipe or CoCaRecipe()
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    folder = root / f"synthetic-coca-{cache_key(world, recipe)}"
    if (folder / "open_clip_config.json").is_file():
        log.info("using the cached synthetic CoCa %s", folder)
        return f"local-dir:{folder}"
    log.info("training the synthetic CoCa (%d steps) into %s", recipe.max_steps, folder)
    build_cli(fit_args(world, recipe, folder, root / "logs" / folder.name))
    if not (folder / "open_clip_config.json").is_file():
        raise RuntimeError(f"training the synthetic CoCa did not write {folder}")
    return f"local-dir:{folder}"
