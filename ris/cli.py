"""The ``ris`` command line: a LightningCLI in subclass mode plus the framework commands of :mod:`ris.commands`."""

from __future__ import annotations

import sys
from argparse import RawDescriptionHelpFormatter
from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

from ris import commands


class RISCLI(LightningCLI):
    """LightningCLI over any ``LightningModule`` / ``LightningDataModule``.

    Classes in :mod:`models` and :mod:`datamodules` are importable by short name (``--model CRIS``); configs are
    saved into the run folder.
    """


def build_cli(args: Sequence[str] | None = None, run: bool = True) -> RISCLI:
    """Build (and by default run) the LightningCLI with the framework's settings."""
    import datamodules  # noqa: F401  (registers the datamodule classes for short names)
    import models  # noqa: F401  (registers the model classes for short names)

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
