"""The LightningCLI behind ``ris fit/validate/test/predict`` (and the base of ``ris generate``'s).

:class:`ProjectCLI` adds to LightningCLI what every ``ris`` command does (docs/guarantees.md):

- **fail fast**: before any class is instantiated, :func:`ris.preflight.preflight` checks every input path, model
  name and pretrained tag of the parsed config, and the checkpoint given as ``--ckpt_path``, and reports all
  problems at once by config key; OpenAI's model spellings are rewritten to open_clip's;
- **quiet output**: Lightning's advertising tips, its accelerator inventory ("GPU available: …"), "Seed set to"
  and warnings that do not concern the user are filtered (:func:`quiet_lightning`).

:class:`RISCLI` (``ris fit/validate/test/predict``) works in subclass mode over every ``LightningModule`` /
``LightningDataModule`` (short names once :mod:`ris.models` and :mod:`ris.datamodules` are imported). ``--ckpt_path``
alone selects the model: its class comes from the checkpoint's hyper-parameters. ``ris test`` and ``ris validate``
print the RIS metrics table (per set: oIoU, mIoU, Prec@0.5…0.9, samples) on stdout as their last output, instead
of Lightning's per-dataloader table.
"""

from __future__ import annotations

import logging
import sys
import warnings
from argparse import RawDescriptionHelpFormatter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import yaml
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from ris import commands
from ris.evaluation import Evaluator, format_table
from ris.preflight import PreflightError, preflight
from ris.resume import checkpoint_problem, damaged_message

log = logging.getLogger(__name__)

QUIET_MESSAGES = ("💡 Tip:", "GPU available:", "TPU available:", "HPU available:", "Seed set to")
"""Lightning info lines that are not about the user's run (after an optional ``[rank: N]`` prefix)."""
QUIET_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.fabric.utilities.seed",
)
QUIET_WARNINGS = (
    "LightningCLI's args parameter",  # ris passes its own argument list on purpose
    ".*LeafSpec.*",  # torch/lightning version skew inside Lightning
    "The dirpath has changed from",  # testing a checkpoint in a new run folder
    "Total length of `list` across ranks is zero",  # a datamodule without validation sets
)
EVALUATION_WARNINGS = ("Be aware that when using `ckpt_path`, callbacks used to create the checkpoint",)
"""Warnings about training callbacks that do not matter when a checkpoint is only evaluated."""
SPECIAL_CKPT_PATHS = ("last", "best", "hpc", "registry")
"""``--ckpt_path`` values Lightning resolves itself."""
EVALUATION_COMMANDS = ("validate", "test")


class QuietFilter(logging.Filter):
    """Drops log records whose message starts with one of :data:`QUIET_MESSAGES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.getMessage())
        if message.startswith("[rank: "):
            message = message.split("] ", 1)[-1]
        return not message.startswith(QUIET_MESSAGES)


def quiet_lightning() -> None:
    """Filter Lightning's tips, accelerator inventory and the warnings of :data:`QUIET_WARNINGS` (idempotent)."""
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietFilter) for f in logger.filters):
            logger.addFilter(QuietFilter())
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def config_files(node: Any) -> list[str]:
    """Every config file a parsed config came from (``config`` entries and ``__path__`` of sub-configs)."""
    found: list[str] = []
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in ("config", "__path__") and value:
                found += [str(v) for v in (value if isinstance(value, list) else [value])]
            else:
                found += config_files(value)
    elif isinstance(node, list):
        for value in node:
            found += config_files(value)
    return found


def checkpoint_problems(ckpt_path: Any) -> list[tuple[str, str, str]]:
    """The ``ckpt_path`` problem (missing, damaged with the last good checkpoint), as a preflight problem line."""
    if not ckpt_path or str(ckpt_path) in SPECIAL_CKPT_PATHS or "://" in str(ckpt_path):
        return []
    problem = checkpoint_problem(ckpt_path)
    if problem is None:
        return []
    what = problem if problem == "no such file" else damaged_message(ckpt_path, problem)
    return [("ckpt_path", str(ckpt_path), what)]


class ProjectCLI(LightningCLI):
    """LightningCLI with the preflight check and quiet output of every ``ris`` command (module docstring).

    Attributes:
        preflight_stage: the stage checked when the CLI runs no subcommand (``run=False``); ``None``: no check.
        preflight_roots: classes of top-level groups that are fixed (not ``class_path`` specs).
    """

    preflight_stage: ClassVar[str | None] = None
    preflight_roots: ClassVar[dict[str, type]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        quiet_lightning()
        super().__init__(*args, **kwargs)

    def before_instantiate_classes(self) -> None:
        stage = self.subcommand or self.preflight_stage
        if stage is None:
            return
        config = self.config[self.subcommand] if self.subcommand else self.config
        plain = config.as_dict()
        findings = preflight(plain, stage, self.preflight_roots, config_files(plain),
                             extra=checkpoint_problems(plain.get("ckpt_path")))
        for key, (old, new) in findings.renamed.items():
            config[key] = new
            log.info("%s: %r is open_clip's %r", key, old, new)


class RISCLI(ProjectCLI):
    """``ris fit/validate/test/predict`` (module docstring)."""

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        argv = list(args) if isinstance(args, (list, tuple)) else [] if args is not None else sys.argv[1:]
        subparsers = parser._subcommands_action._name_parser_map if parser._subcommands_action else {}
        subcommand = next((a for a in argv if a in subparsers), None)
        for name in EVALUATION_COMMANDS:
            if name in subparsers:
                subparsers[name].set_defaults(verbose=False)  # the RIS table replaces Lightning's (after_test)
        ckpt_path = _option(argv, "--ckpt_path")
        if subcommand and ckpt_path:
            class_path = _checkpoint_class_path(ckpt_path, model_given=_names_model(argv))
            if class_path:
                subparsers[subcommand].set_defaults(model={"class_path": class_path})
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        # Lightning reads the hyper-parameters of --ckpt_path while parsing; a damaged file is left to the
        # preflight check, which names it with the last good checkpoint instead of a torch.load traceback
        subcommand = self.config.get("subcommand")
        if subcommand and checkpoint_problems(self.config[subcommand].get("ckpt_path")):
            return
        super()._parse_ckpt_path()

    def _run_subcommand(self, subcommand: str) -> None:
        with warnings.catch_warnings():
            if subcommand in EVALUATION_COMMANDS:
                for message in EVALUATION_WARNINGS:
                    warnings.filterwarnings("ignore", message=message)
            super()._run_subcommand(subcommand)

    def _print_results(self) -> None:
        evaluator = next((c for c in self.trainer.callbacks if isinstance(c, Evaluator)), None)
        if self.trainer.is_global_zero and evaluator is not None and evaluator.last_results:
            print("\n" + format_table(evaluator.last_results, "RIS metrics (percent)"), flush=True)

    def after_test(self) -> None:
        self._print_results()

    def after_validate(self) -> None:
        self._print_results()


def _option(argv: Sequence[str], name: str) -> str | None:
    """The value of ``name`` in ``argv`` (``--name value`` or ``--name=value``)."""
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _names_model(argv: Sequence[str]) -> bool:
    """Whether ``argv`` selects a model itself: ``--model…`` or a ``--config`` file with a ``model`` entry."""
    if any(a == "--model" or a.startswith(("--model=", "--model.")) for a in argv):
        return True
    for index, arg in enumerate(argv):
        path = argv[index + 1] if arg in ("--config", "-c") and index + 1 < len(argv) else (
            arg.split("=", 1)[1] if arg.startswith("--config=") else None
        )
        if path and Path(path).is_file():
            try:
                if "model" in (yaml.safe_load(Path(path).read_text()) or {}):
                    return True
            except yaml.YAMLError:
                return True  # jsonargparse reports the broken file
    return False


def _checkpoint_class_path(ckpt_path: str, model_given: bool) -> str | None:
    """The model class path stored in a Lightning checkpoint's hyper-parameters (by LightningCLI), if any.

    A checkpoint that is missing or damaged is reported at once when nothing else names the model (the config
    cannot be parsed without it); otherwise the preflight check reports it with every other problem.
    """
    import torch

    if str(ckpt_path) in SPECIAL_CKPT_PATHS or "://" in str(ckpt_path):
        return None
    problems = checkpoint_problems(ckpt_path)
    if problems:
        if model_given:
            return None
        raise PreflightError(problems, hint="give an existing, complete checkpoint with --ckpt_path")
    hparams = torch.load(ckpt_path, weights_only=True, map_location="cpu", mmap=True).get("hyper_parameters", {})
    return hparams.get("_class_path")


def build_cli(args: Sequence[str] | None = None, run: bool = True) -> RISCLI:
    """Build (and by default run) :class:`RISCLI` with the framework's settings."""
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
