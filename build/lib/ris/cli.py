"""The ``ris`` command line: a LightningCLI in subclass mode plus the framework commands of :mod:`ris.commands`."""

from __future__ import annotations

import sys
from argparse import RawDescriptionHelpFormatter
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from ris import commands


class RISCLI(LightningCLI):
    """LightningCLI over any ``LightningModule`` / ``LightningDataModule``.

    Classes in :mod:`models` and :mod:`datamodules` are importable by short name (``--model CRIS``); configs are
    saved into the run folder. ``--ckpt_path`` alone selects the model: its class and arguments come from the
    checkpoint's hyper-parameters (Lightning parses the arguments; the class default is set here because subclass
    mode otherwise requires ``--model`` before the checkpoint is read).
    """

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        if args is None:
            argv = sys.argv[1:]
        else:
            argv = list(args) if isinstance(args, (list, tuple)) else []  # a dict/Namespace names no checkpoint
        subcommand = next((a for a in argv if a in self.subcommands()), None)
        class_path = _checkpoint_class_path(_option(argv, "--ckpt_path"))
        if subcommand and class_path:
            parser._subcommands_action._name_parser_map[subcommand].set_defaults(model={"class_path": class_path})
        super().parse_arguments(parser, args)


def _option(argv: Sequence[str], name: str) -> str | None:
    """The value of ``name`` in ``argv`` (``--name value`` or ``--name=value``)."""
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _checkpoint_class_path(ckpt_path: str | None) -> str | None:
    """The model class path stored in a Lightning checkpoint's hyper-parameters (by LightningCLI), if any."""
    if not ckpt_path or not Path(ckpt_path).is_file():
        return None
    hparams = torch.load(ckpt_path, weights_only=True, map_location="cpu", mmap=True).get("hyper_parameters", {})
    return hparams.get("_class_path")


def build_cli(args: Sequence[str] | None = None, run: bool = True) -> RISCLI:
    """Build (and by default run) the LightningCLI with the framework's settings."""
    import ris.datamodules  # noqa: F401  (registers the datamodule classes for short names)
    import ris.models  # noqa: F401  (registers the model classes for short names)

    return RISCLI(
        model_class=None,
        datamodule_class=None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={
            "description": "pseudo-ris: referring image segmentation without human labels.",
            "epilog": commands.epilog(),
            "formatter_class": RawDescriptionHelpFormatter,
        },
        args=list(args) if args is not None else None,
        run=run,
    )


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of ``ris`` and ``python -m ris``; ``args`` defaults to ``sys.argv[1:]``."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in commands.COMMANDS:
        return int(commands.resolve(argv[0])(argv[1:]) or 0)
    build_cli(None if args is None else argv)
    return 0
