"""The ``ris`` command: Lightning's fit/validate/test/predict (:mod:`ris.lightning_cli`) and the framework commands
of :mod:`ris.commands`.

This module imports neither torch nor Lightning, so ``ris --version``, ``ris report`` and ``ris synth --help``
start in about a second; each command imports what it needs. The project's user errors (:mod:`ris.errors`) print as
``error: …`` plus a hint, without a traceback; ``--debug`` (anywhere on the command line) or ``RIS_DEBUG=1`` shows
the traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import ris
from ris import commands
from ris.errors import debug_requested, format_user_error, user_error

VERSION_FLAGS = ("--version", "-V")


def build_cli(args: Sequence[str] | None = None, run: bool = True) -> Any:
    """Build (and by default run) the ``ris`` LightningCLI (:func:`ris.lightning_cli.build_cli`)."""
    from ris.lightning_cli import build_cli as build

    return build(args, run)


def run(argv: Sequence[str]) -> int:
    """Run one ``ris`` command line (without ``--debug``); errors propagate."""
    if argv and argv[0] in VERSION_FLAGS:
        print(f"pseudo-ris {ris.__version__}")
        return 0
    if argv and argv[0] in commands.COMMANDS:
        return int(commands.resolve(argv[0])(argv[1:]) or 0)
    build_cli(argv)
    return 0


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of ``ris`` and ``python -m ris``; ``args`` defaults to ``sys.argv[1:]``."""
    argv = list(sys.argv[1:] if args is None else args)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    try:
        return run(argv)
    except Exception as error:
        cause = user_error(error)
        if debug or cause is None:
            raise
        print(format_user_error(cause), file=sys.stderr)
        return 1
