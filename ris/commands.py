"""Framework subcommands of ``ris`` beside Lightning's fit/validate/test/predict.

Each entry maps a command name to ``"module:function"`` (imported only when the command runs) and a one-line help.
The function takes the remaining argument list and returns an exit code (or ``None`` for success).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("ris.demo:main", "the whole pipeline on the synthetic world: pseudo-labels, CRIS, zero-shot baseline"),
    "generate": (
        "ris.pseudo.generate_command:main", "generate pseudo-label shards from raw images (Lightning predict)"
    ),
    "synth": ("ris.synthetic.world:main", "write the synthetic referring world (refer + PhraseCut formats)"),
    "pseudo-report": ("ris.pseudo.gallery:main", "picture report (PNG + HTML) of pseudo-label shards at a given tau"),
    "report": ("ris.report:main", "gather run metrics into Markdown/CSV tables and the semi-supervised plot"),
}


def resolve(name: str) -> Callable[[Sequence[str]], int | None]:
    """The function behind framework command ``name``."""
    target, _ = COMMANDS[name]
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def epilog() -> str:
    """Help text listing the framework commands."""
    width = max(len(n) for n in COMMANDS)
    lines = [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in sorted(COMMANDS.items())]
    return "framework commands (ris COMMAND --help):\n" + "\n".join(lines)
