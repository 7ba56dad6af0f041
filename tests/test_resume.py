"""Runs survive kills (docs/guarantees.md): atomic checkpoints, damaged checkpoints named with the last good one,
and a resumed ``ris fit`` that equals an uninterrupted one bit for bit (RNG states, mid-epoch dataloaders)."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from ris.cli import build_cli, main
from ris.errors import DamagedCheckpointError
from ris.resume import AtomicCheckpointIO, ResumableDataLoader, ResumableSampler, check_checkpoint, save_atomically
from tests.workflow_world import clip_dir, cris_args

REPO = Path(__file__).resolve().parents[1]

KILLER = """
import builtins, os, shutil, signal, sys
from pathlib import Path

ckpt_dir, limit, args = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
shutil._USE_CP_SENDFILE = False  # copies go through file.write, where the kill is injected
real_open = builtins.open


class KilledAfter:
    '''A file whose writes SIGKILL the process once `limit` bytes are written (no cleanup code runs).'''

    def __init__(self, handle):
        self._handle, self._written = handle, 0

    def write(self, data):
        if self._written + len(data) > limit:
            self._handle.write(data[: limit - self._written])
            self._handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        self._written += len(data)
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._handle.__exit__(*exc)


def killing_open(file, mode="r", *rest, **kwargs):
    armed = (  # replacing an existing last.ckpt (the file itself or a temporary file for it)
        isinstance(file, (str, os.PathLike)) and "w" in mode and "last.ckpt" in Path(file).name
        and Path(file).parent.resolve() == ckpt_dir.resolve() and (ckpt_dir / "last.ckpt").exists()
    )
    handle = real_open(file, mode, *rest, **kwargs)
    return KilledAfter(handle) if armed else handle


builtins.open = killing_open
from ris.cli import build_cli, main

sys.exit(main(args))
"""


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return clip_dir(tmp_path_factory.mktemp("resume_models"), "tiny-RN")


def _fit_args(world, backbone: str, root: Path, epochs: int, extra: list[str] = ()) -> list[str]:
    return [
        "fit", *cris_args(backbone),
        "--data", "RefCOCODataModule", "--data.data_root", str(world.refer_root), "--data.word_length", "8",
        "--data.batch_size", "8", "--data.val_splits", "[]",
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.max_epochs", str(epochs),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.logger", "false", "--trainer.default_root_dir", str(root), *extra,
    ]


def _other_filesystem_tmp(tmp_path: Path) -> Path:
    """A temp folder on another filesystem than ``tmp_path`` when the machine has one (``/dev/shm``)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        folder = shm / f"ris-test-{os.getpid()}"
        folder.mkdir(exist_ok=True)
        return folder
    return tmp_path / "tmp"


def test_a_kill_while_last_ckpt_is_replaced_keeps_the_previous_one(tmp_path, tiny_world, backbone, one_thread):
    """The process is SIGKILLed after 1000 bytes of the second save of ``last.ckpt``, with the system temp folder on
    another filesystem (Lightning's writer then copies into the run folder): the previous ``last.ckpt`` survives
    intact and the run resumes from it."""
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    args = _fit_args(tiny_world, backbone, tmp_path / "run", 2, [
        "--trainer.limit_train_batches", "2",
        "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.dirpath", str(ckpt_dir),
        "--trainer.callbacks.save_last", "true",
    ])
    temp = _other_filesystem_tmp(tmp_path)
    temp.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(temp), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", KILLER, str(ckpt_dir), "1000", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == -9, proc.stderr[-3000:]  # killed while saving epoch 1
    last = ckpt_dir / "last.ckpt"
    check_checkpoint(last)
    state = torch.load(last, weights_only=True, map_location="cpu")
    assert (state["epoch"], state["global_step"]) == (0, 2)

    assert main([*args, "--ckpt_path", str(last)]) == 0
    assert torch.load(last, weights_only=True, map_location="cpu")["global_step"] == 4
    assert not list(ckpt_dir.glob(".*")), "the killed save's temporary file is cleaned up by the next save"


def test_a_damaged_checkpoint_is_named_with_the_last_good_one(tmp_path, tiny_world, backbone, capsys, monkeypatch):
    built = []

    def record(*args, **kwargs):
        built.append(args)
        raise AssertionError("a model was built")

    monkeypatch.setattr("ris.models.base.create_backbone", record)
    good = tmp_path / "epoch=3-step=40.ckpt"
    save_atomically({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, good)
    last = tmp_path / "last.ckpt"
    last.write_bytes(b"")
    assert main(_fit_args(tiny_world, backbone, tmp_path / "run", 1, ["--ckpt_path", str(last)])) == 1
    err = capsys.readouterr().err
    assert f"ckpt_path  {last}: empty file (0 bytes: a save was interrupted)" in err
    assert f"the last good checkpoint beside it is {good}" in err
    assert "Traceback" not in err and not built

    last.write_bytes(good.read_bytes()[:500])  # truncated
    with pytest.raises(DamagedCheckpointError, match=rf"{last}: truncated or corrupt .* last good .* {good}"):
        AtomicCheckpointIO().load_checkpoint(last)


def test_atomic_save_leaves_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_atomically({"step": torch.tensor(1)}, path)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        save_atomically({"step": torch.tensor(2)}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_resumable_loader_continues_an_epoch_and_restarts_the_next():
    data = list(range(10))
    loader = ResumableDataLoader(data, sampler=ResumableSampler(data, seed=3), batch_size=3)
    loader.sampler.set_epoch(1)
    full = [b.tolist() for b in loader]
    it = iter(loader)
    first = [next(it).tolist(), next(it).tolist()]
    state = loader.state_dict()
    assert state == {"epoch": 1, "batches": 2} and first == full[:2]

    resumed = ResumableDataLoader(data, sampler=ResumableSampler(data, seed=3), batch_size=3)
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(1)
    assert [b.tolist() for b in resumed] == full[2:]
    assert resumed.state_dict() == {"epoch": 1, "batches": len(full)}
    resumed.sampler.set_epoch(2)
    assert len([b for b in resumed]) == len(full)  # the next epoch starts at its beginning


def test_resumed_fit_equals_an_uninterrupted_one_bit_for_bit(tmp_path, tiny_world, backbone, one_thread):
    """Checkpoints every 3 steps of 2 epochs of 4 batches (dropout on, a random expression per sample); resuming
    from step 3 (mid-epoch 0) and from step 6 (mid-epoch 1) ends with the uninterrupted run's weights."""
    def run(name: str, ckpt: Path | None = None) -> dict[str, torch.Tensor]:
        folder = tmp_path / name
        args = _fit_args(tiny_world, backbone, folder, 2, [
            "--trainer.limit_train_batches", "4", "--data.batch_size", "4",
            "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.dirpath", str(folder),
            "--trainer.callbacks.filename", "{step}", "--trainer.callbacks.every_n_train_steps", "3",
            "--trainer.callbacks.save_top_k", "-1",
        ])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cli = build_cli([*args, *(["--ckpt_path", str(ckpt)] if ckpt else [])])
        assert not [w for w in caught if "not resumable" in str(w.message)]
        assert cli.trainer.global_step == 8
        return {k: v.detach().clone() for k, v in cli.model.state_dict().items()}

    expected = run("full")
    steps = sorted(p.name for p in (tmp_path / "full").glob("step=*.ckpt"))
    assert steps == ["step=3.ckpt", "step=6.ckpt"]
    for start in steps:
        resumed = run(f"from_{start}", tmp_path / "full" / start)
        assert resumed.keys() == expected.keys()
        assert all(torch.equal(resumed[k], expected[k]) for k in expected), start
