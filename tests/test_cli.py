import subprocess
import sys

import pytest

from ris import commands
from ris.cli import main


def test_help_lists_lightning_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for sub in ("fit", "validate", "test", "predict"):
        assert sub in out


def test_print_config_runs_in_process(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--print_config"])
    assert exc.value.code == 0
    assert "seed_everything: 0" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "ris", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "fit" in out.stdout


def test_framework_command_dispatch(monkeypatch):
    seen = []
    monkeypatch.setitem(commands.COMMANDS, "echo", ("tests.test_cli:_echo", "echo arguments"))
    monkeypatch.setattr(sys.modules[__name__], "_echo", lambda argv: seen.append(list(argv)) or 3, raising=False)
    assert main(["echo", "a", "--b"]) == 3
    assert seen == [["a", "--b"]]
    assert "echo arguments" in commands.epilog()
