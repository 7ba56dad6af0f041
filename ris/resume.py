"""Runs that survive a kill and resume exactly: atomic checkpoints, damaged-checkpoint errors, RNG state and
training dataloaders that resume mid-epoch (docs/guarantees.md).

- :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file **beside** its destination, fsyncs it and
  renames it into place, so a kill at any point leaves the old checkpoint or the new one, never a partial file.
  (Lightning's own writer stages the file in the system temp folder; when that is another filesystem the final
  move is a copy, and a kill during it leaves ``last.ckpt`` empty or truncated.) Loading checks the file first.
- :func:`checkpoint_problem` / :func:`check_checkpoint`: an empty, truncated or foreign file is reported as a
  :class:`ris.errors.DamagedCheckpointError` naming it and the newest good checkpoint beside it.
- :class:`ResumeState` (added to every RIS model by :meth:`ris.models.base.RISModule.configure_callbacks`): installs
  :class:`AtomicCheckpointIO` on the trainer's strategy (unless another checkpoint IO was chosen), stores the random
  number generators (torch, CUDA, numpy, Python) in every checkpoint and restores them right before the first
  training batch after a resume.
- :class:`ResumableSampler` + :class:`ResumableDataLoader`: Lightning's stateful-dataloader protocol
  (``state_dict`` / ``load_state_dict``, saved in checkpoints by the fit loop). The order of an epoch depends only
  on ``seed`` and the epoch; a loader restored mid-epoch skips the batches already trained on (their indices, not
  their data) and counts on from there.

Together, on CPU with ``num_workers: 0``, a run killed and resumed from any checkpoint ends with the same weights,
bit for bit, as an uninterrupted one (``tests/test_resume.py``).
"""

from __future__ import annotations

import glob
import itertools
import os
import random
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.plugins.io.wrapper import _WrappingCheckpointIO
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ris.errors import DamagedCheckpointError

RNG_KEY = "rng"


def _is_local(path: str | os.PathLike) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_atomically(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` to ``.<name>.tmp<pid>`` beside ``path``, fsync, rename into place (docstring above); the
    temporary files of killed earlier saves of ``path`` are removed."""
    path = Path(str(path).removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    for stale in path.parent.glob(f".{glob.escape(path.name)}.tmp*"):
        stale.unlink(missing_ok=True)
    try:
        with open(tmp, "wb") as handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why the Lightning checkpoint ``path`` cannot be read, or ``None`` for a readable one.

    Checks what a kill or a wrong file leaves: missing, empty, not a ``torch.save`` zip archive (truncated files
    lose the archive's central directory), no ``data.pkl`` record, or a ``data.pkl`` whose CRC does not match.
    """
    path = Path(path)
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "not a file"
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes: a save was interrupted)"
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pickles:
                return f"not a PyTorch checkpoint ({size} bytes, a zip archive without data.pkl)"
            archive.read(pickles[0])
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"truncated or corrupt ({size} bytes: {err})"
    return None


def last_good_checkpoint(path: str | os.PathLike) -> Path | None:
    """The newest other ``*.ckpt`` beside ``path`` that :func:`checkpoint_problem` accepts, if any."""
    path = Path(path)
    others = sorted(
        (p for p in path.parent.glob("*.ckpt") if p.resolve() != path.resolve() and p.is_file()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    return next((p for p in others if checkpoint_problem(p) is None), None)


def damaged_message(path: str | os.PathLike, problem: str) -> str:
    """``problem`` plus the newest good checkpoint beside ``path`` (or that there is none)."""
    good = last_good_checkpoint(path)
    if good is None:
        return f"{problem}; no good checkpoint beside it"
    return f"{problem}; the last good checkpoint beside it is {good} (resume with --ckpt_path {good})"


def check_checkpoint(path: str | os.PathLike) -> None:
    """Raise :class:`DamagedCheckpointError` (naming ``path`` and the last good checkpoint) if ``path`` is damaged."""
    problem = checkpoint_problem(path)
    if problem is not None and problem != "no such file":
        raise DamagedCheckpointError(f"checkpoint {path}: {damaged_message(path, problem)}")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's :class:`TorchCheckpointIO` with atomic local saves and checked loads (module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        save_atomically(checkpoint, path)

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if _is_local(path):
            check_checkpoint(path)
        return super().load_checkpoint(path, *args, **kwargs)


def collect_rng_states() -> dict[str, Any]:
    """The global RNG states as tensors and ints only (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, python_state, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": list(python_state), "gauss": python_gauss},
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    """Set the global RNG states of :func:`collect_rng_states`."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def install_atomic_checkpoints(trainer: Trainer) -> None:
    """Make the trainer's strategy save through :class:`AtomicCheckpointIO` unless a custom IO was chosen."""
    strategy = trainer.strategy
    io = strategy.checkpoint_io
    if type(io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()
    elif isinstance(io, _WrappingCheckpointIO) and type(io.checkpoint_io) is TorchCheckpointIO:
        io.checkpoint_io = AtomicCheckpointIO()


class ResumeState(Callback):
    """Atomic checkpoints and the RNG states in every checkpoint, restored before the first batch after a resume.

    The states are captured when the checkpoint is written and set again in ``on_train_start``, after everything
    that draws numbers while a run starts (model construction, the sanity check, the dataloader iterator) and
    before the first training batch of the resumed run is fetched (Lightning skips ``on_train_epoch_start`` when
    it resumes mid-epoch). Under DDP every rank restores rank 0's states; they are equal after ``seed_everything``
    unless the ranks draw different amounts of randomness.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        install_atomic_checkpoints(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {RNG_KEY: collect_rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get(RNG_KEY)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._pending is not None:
            restore_rng_states(self._pending)
            self._pending = None


def global_seed() -> int:
    """The seed of ``seed_everything`` (``PL_GLOBAL_SEED``; 0 when unset), as Lightning's own samplers use it."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class ResumableSampler(DistributedSampler):
    """A :class:`DistributedSampler` (one replica without ``torch.distributed``) that can resume an epoch.

    The order depends only on ``seed`` and the epoch (:meth:`set_epoch`, called by Lightning every epoch).
    :meth:`skip_next` drops the first ``n`` indices of the next pass once. Subclasses define the order of one pass
    in :meth:`epoch_indices`.
    """

    def __init__(self, dataset: Dataset, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        if num_replicas is None and not (dist.is_available() and dist.is_initialized()):
            num_replicas, rank = 1, 0
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self._skip = 0

    def epoch_indices(self) -> Iterator[int]:
        """This process's indices of the current epoch."""
        return super().__iter__()

    def skip_next(self, count: int) -> None:
        """Leave out the first ``count`` indices of the next pass (a resumed epoch)."""
        self._skip = count

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        return itertools.islice(self.epoch_indices(), skip, None)


class ResumableDataLoader(DataLoader):
    """A training :class:`DataLoader` over a :class:`ResumableSampler` with Lightning's stateful protocol.

    ``state_dict()`` is ``{"epoch", "batches"}``: the sampler's epoch and the batches yielded in it so far.
    ``load_state_dict`` makes the next pass of that same epoch skip those batches; a pass of another epoch (the
    checkpoint was written at an epoch's end) starts at its beginning. Without a ``generator`` the loader gets one
    seeded with the sampler's seed, so starting a pass never draws from the global RNG (the resumed run draws the
    same numbers as the uninterrupted one).
    """

    def __init__(self, dataset: Dataset, *, sampler: ResumableSampler, **kwargs: Any) -> None:
        if not isinstance(sampler, ResumableSampler):
            raise TypeError(f"ResumableDataLoader needs a ResumableSampler, got {type(sampler).__name__}")
        kwargs.setdefault("generator", torch.Generator().manual_seed(sampler.seed))
        super().__init__(dataset, sampler=sampler, **kwargs)
        self._batches = 0
        self._resume: tuple[int, int] | None = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.sampler.epoch), "batches": self._batches}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = (int(state_dict["epoch"]), int(state_dict["batches"]))

    def __iter__(self) -> Iterator[Any]:
        # a generator: runs at the first batch, after Lightning's set_epoch for the epoch
        start = 0
        if self._resume is not None:
            epoch, batches = self._resume
            self._resume = None
            if epoch == self.sampler.epoch and batches < len(self):
                start = batches
                self.sampler.skip_next(batches * self.batch_size)
        self._batches = start
        for batch in super().__iter__():
            self._batches += 1
            yield batch
