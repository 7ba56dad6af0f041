"""Packaging: ``models/`` and ``datamodules/`` install and import as ``ris.models`` / ``ris.datamodules``, so a user's
own ``models`` or ``datamodules`` package cannot shadow them (editable and wheel installs)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = {"ris.models": "models", "ris.datamodules": "datamodules"}

PRINT_CONFIG = [sys.executable, "-m", "ris", "fit", "--config", str(ROOT / "configs/cris_pseudo_synthetic.yaml"),
                "--print_config"]


def _folder(package: str) -> Path:
    for prefix, folder in PACKAGE_DIR.items():
        if package == prefix or package.startswith(prefix + "."):
            return ROOT / folder / Path(*package[len(prefix) + 1:].split(".")) if package != prefix else ROOT / folder
    return ROOT / Path(*package.split("."))


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == PACKAGE_DIR
    listed = set(config["packages"])
    found = set()
    for top, prefix in (("ris", "ris"), ("models", "ris.models"), ("datamodules", "ris.datamodules")):
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / top).parts
            found.add(".".join([prefix, *parts]))
    assert listed == found
    assert all(_folder(p).is_dir() for p in listed)


@pytest.fixture
def shadowing_folder(tmp_path: Path) -> Path:
    """A working directory holding a user's own ``models`` and ``datamodules`` packages that fail on import."""
    for name in ("models", "datamodules"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name} package')\n")
    return tmp_path


def _run(args: list[str], cwd: Path, env_path: str | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    if env_path is not None:
        env["PYTHONPATH"] = env_path
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_python_m_ris_resolves_our_classes_beside_a_users_models_package(shadowing_folder):
    result = _run(PRINT_CONFIG, shadowing_folder)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "class_path: ris.models.CRIS" in result.stdout
    assert "class_path: ris.datamodules.PseudoRISDataModule" in result.stdout


def test_wheel_installs_ris_models_and_datamodules(tmp_path, shadowing_folder):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("ris", "models", "datamodules"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("pseudo_ris-*.whl")
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    assert (target / "ris" / "models" / "cris.py").is_file()
    assert (target / "ris" / "datamodules" / "refcoco.py").is_file()
    assert (target / "ris" / "model_configs" / "tiny-coca.json").is_file()
    assert not (target / "models").exists() and not (target / "datamodules").exists()
    probe = _run([sys.executable, "-c", "import ris.models, ris.datamodules, ris.open_clip_models; "
                  "print(ris.models.__file__); print(ris.datamodules.__file__)"], shadowing_folder, str(target))
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.split() == [str(target / "ris/models/__init__.py"), str(target / "ris/datamodules/__init__.py")]
    printed = _run(PRINT_CONFIG, shadowing_folder, str(target))
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert "class_path: ris.models.CRIS" in printed.stdout
