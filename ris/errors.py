"""The project's user errors: what a person can act on, printed by ``ris`` as a few lines without a traceback.

:class:`RISError` is the base of the errors that mean "the input is wrong" (a missing or damaged file, a bad
setting, an unknown name) as opposed to a bug. Its subclasses also derive from the matching built-in exception, so
``except ValueError`` / ``except FileNotFoundError`` keep working. :func:`is_user_error` also accepts the
exceptions the project raised before this base existed: any exception class defined in the project's packages, and
a ``ValueError`` / ``OSError`` raised by a ``raise`` statement in the project's own code (its message was written
for the user). An error wrapping one of those (jsonargparse reports a failed class instantiation as "does not
validate against any of the Union subtypes" caused by the class's own error) counts as it (:func:`user_error`).
``ris`` prints them with :func:`format_user_error`; ``--debug`` or ``RIS_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

DEBUG_ENV = "RIS_DEBUG"
"""Set to ``1`` to get tracebacks for user errors (same as ``--debug``)."""
PROJECT_DIRS = tuple(str(Path(__file__).resolve().parents[1] / name) for name in ("ris", "models", "datamodules"))
"""Source folders of the project's packages (``ris``, ``ris.models``, ``ris.datamodules``)."""
PROJECT_PACKAGES = ("ris", "ris.")


class RISError(Exception):
    """A user error: the message names the file, key or setting and what was expected.

    Attributes:
        hint: what to do about it (printed on its own line), or ``""``.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(RISError, ValueError):
    """A setting that cannot work (names the config key)."""


class MissingFilesError(RISError, FileNotFoundError):
    """Files or folders a command needs that are missing or unreadable, all of them at once.

    Attributes:
        problems: ``(config key, path, what is wrong)`` per problem.
    """

    def __init__(self, problems: Sequence[tuple[str, str, str]], hint: str = "") -> None:
        self.problems = list(problems)
        width = max(len(key) for key, _, _ in self.problems)
        lines = [f"  {key.ljust(width)}  {path}: {what}" for key, path, what in self.problems]
        super().__init__(f"{len(self.problems)} path problem(s) before anything was built:\n" + "\n".join(lines), hint)


class UnknownNameError(RISError, ValueError):
    """A model or backbone name that is not known (the message carries "did you mean" suggestions)."""


class DamagedCheckpointError(RISError, ValueError):
    """A training checkpoint that cannot be read (empty, truncated, not a checkpoint)."""


def debug_requested(argv: Sequence[str]) -> bool:
    """Whether ``--debug`` is in ``argv`` or ``RIS_DEBUG`` is set to a true value."""
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes", "on")


def _raised_in_project(error: BaseException) -> bool:
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename.startswith(PROJECT_DIRS)


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is a user error of the project (see the module docstring)."""
    if isinstance(error, RISError):
        return True
    if type(error).__module__.startswith(PROJECT_PACKAGES) and isinstance(error, Exception):
        return True
    return isinstance(error, (ValueError, OSError)) and _raised_in_project(error)


def user_error(error: BaseException) -> BaseException | None:
    """``error`` or the first exception of its ``__cause__`` chain that :func:`is_user_error`, else ``None``."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if is_user_error(current):
            return current
        seen.add(id(current))
        current = current.__cause__
    return None


def format_user_error(error: BaseException) -> str:
    """``error: <message>`` plus the hint line (if any) and how to see the traceback."""
    lines = [f"error: {error}"]
    hint = getattr(error, "hint", "")
    if hint:
        lines.append(f"hint: {hint}")
    lines.append(f"(run with --debug or {DEBUG_ENV}=1 for the traceback)")
    return "\n".join(lines)
