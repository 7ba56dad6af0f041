"""``ris import-checkpoint``: an official CRIS.pytorch / ETRIS checkpoint → a checkpoint of ``ris.models``.

::

    ris import-checkpoint exp/refcoco/CRIS_R50/best_model.pth --out checkpoints/cris_r50_refcoco.ckpt
    ris test --ckpt_path checkpoints/cris_r50_refcoco.ckpt --data configs/...    # evaluate it
    ris fit --config ... --model.init_from checkpoints/cris_r50_refcoco.ckpt     # fine-tune from it

The model class and its architecture arguments are read off the official state dict
(:func:`ris.models.official_checkpoints.infer_model`; ``--backbone`` and ``--set KEY=VALUE`` override them), the
weights are mapped (:func:`ris.models.official_checkpoints.map_official_state_dict`) and the command fails, listing
them, when an official key does not land or a model key stays empty. The output is a Lightning checkpoint (weights,
the model's hyper-parameters with its class path, ``epoch`` 0, no optimizer state) that ``ris test --ckpt_path``,
``ris predict --ckpt_path`` and ``--model.init_from`` accept; ``imported_from`` records the source file, its
sha256 and the official epoch / IoU. ``--model.init_from OFFICIAL.pth`` also works directly (the same mapping).
"""

from __future__ import annotations

import argparse
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning
import torch
import yaml

from ris.atomic import atomic_write
from ris.pseudo.provenance import file_sha256

log = logging.getLogger(__name__)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["input_size=480", "threshold=0.4"]`` → ``{"input_size": 480, "threshold": 0.4}`` (YAML values)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def import_checkpoint(
    source: str | Path,
    out: str | Path,
    backbone: str | None = None,
    overrides: dict[str, Any] | None = None,
    unsafe: bool = False,
) -> tuple[dict[str, Any], Any]:
    """Convert ``source`` and write ``out``; returns the written checkpoint dict and the mapping report. Raises
    ``ValueError`` (with the report) when the weights do not map completely."""
    import ris.models as models
    from ris.models.official_checkpoints import (
        checkpoint_state_dict,
        infer_model,
        is_official_state_dict,
        map_official_state_dict,
        read_checkpoint,
    )

    source = Path(source)
    ckpt = read_checkpoint(source, unsafe=unsafe)
    state = checkpoint_state_dict(ckpt, source)
    if not is_official_state_dict(state):
        raise ValueError(f"{source}: not an official CRIS.pytorch / ETRIS checkpoint (no 'backbone.transformer.*' / "
                         "'proj.*' keys); checkpoints of this framework need no import")
    class_name, args = infer_model(state, backbone)
    args |= overrides or {}
    model = getattr(models, class_name)(**args)
    mapped, report = map_official_state_dict(state, model)
    if not report.complete:
        raise ValueError(f"{source}: the official weights do not fit {class_name}({args}):\n{report.describe(20)}")
    model.load_state_dict(mapped, strict=True)
    checkpoint = {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": lightning.__version__,
        "state_dict": model.state_dict(),
        "hyper_parameters": {"_class_path": f"ris.models.{class_name}", **dict(model.hparams)},
        "imported_from": {
            "file": str(source.resolve()),
            "sha256": file_sha256(source),
            **{k: ckpt[k] for k in ("epoch", "cur_iou", "best_iou") if isinstance(ckpt.get(k), (int, float))},
        },
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write(out, buffer.getvalue())
    return checkpoint, report


def main(argv: Sequence[str]) -> int:
    """Entry point of ``ris import-checkpoint``."""
    parser = argparse.ArgumentParser(
        prog="ris import-checkpoint",
        description="Map an official CRIS.pytorch / ETRIS checkpoint onto ris.models.CRIS / ETRIS and write a "
        "checkpoint that `ris test --ckpt_path` and `--model.init_from` accept.",
    )
    parser.add_argument("checkpoint", help="official checkpoint (best_model.pth / last_model.pth)")
    parser.add_argument("--out", required=True, help="the checkpoint to write (.ckpt)")
    parser.add_argument("--backbone", default=None,
                        help="backbone architecture name (default: detected, RN50 / RN101 / ViT-B-16)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a model argument, e.g. --set input_size=480 (repeatable)")
    parser.add_argument("--unsafe-load", action="store_true",
                        help="load the file with full pickle (weights_only=False): only for files you trust")
    args = parser.parse_args(list(argv))
    checkpoint, report = import_checkpoint(args.checkpoint, args.out, args.backbone, parse_overrides(args.set),
                                           args.unsafe_load)
    hparams = checkpoint["hyper_parameters"]
    print(f"{args.checkpoint} -> {args.out}: {hparams['_class_path']} (backbone {hparams['backbone']}, input size "
          f"{hparams['input_size']})")
    print(report.describe())
    return 0
