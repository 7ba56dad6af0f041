import re
import subprocess
import sys
from pathlib import Path

import pytest

import ris
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


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def nothing_built(monkeypatch):
    """Records every instantiation of the parsed classes; a preflight error must come before any."""
    from ris.lightning_cli import ProjectCLI

    calls = []
    monkeypatch.setattr(ProjectCLI, "instantiate_classes", lambda self: calls.append(self) or pytest.fail("built"))
    monkeypatch.setattr("sys.argv", ["ris"])
    return calls


def test_missing_paths_are_reported_at_once_by_key_before_anything_is_built(tmp_path, capsys, nothing_built):
    args = ["fit", "--config", str(REPO / "configs" / "cris-rn50_refcoco.yaml"),
            "--model.init_args.pretrained", "null", "--model.init_args.backbone", "tiny-RN",
            "--model.init_args.init_from", str(tmp_path / "pseudo.ckpt"),
            "--data.init_args.data_root", str(tmp_path / "refer")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "2 problems found before anything was built:" in err
    assert re.search(rf"model\.init_args\.init_from +{re.escape(str(tmp_path / 'pseudo.ckpt'))}: no such file", err)
    assert re.search(rf"data\.init_args\.data_root +{re.escape(str(tmp_path / 'refer'))}: no such folder", err)
    assert "hint: fix the config or override a key" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 5 and not nothing_built


def test_generate_placeholders_are_reported_together(tmp_path, capsys, nothing_built, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "--config", str(REPO / "configs" / "generate" / "refcoco+_sam_cutler_coca.yaml")]) == 1
    err = capsys.readouterr().err
    for key, value in [
        ("model.masks.init_args.inner.init_args.checkpoint", "checkpoints/sam_vit_h_4b8939.pth"),
        ("model.masks.init_args.guide_dir", "data/cutler_masks/refcoco+_train"),
        ("model.captioner_pretrained", "checkpoints/coca_vit_l14_cc3m.pt"),
        ("model.scorer_pretrained", "checkpoints/RN50.pt"),
    ]:
        assert re.search(rf"{re.escape(key)} +{re.escape(value)}: placeholder, fill it in \(no such", err), key
    assert re.search(r"data\.source\.init_args\.data_root +data/refer: no such folder", err)
    assert "5 problems found" in err and not nothing_built


def test_a_typo_in_the_backbone_gets_suggestions(capsys, nothing_built, tiny_world):
    assert main(["fit", "--model", "CRIS", "--model.backbone", "ViT-B-61", "--model.pretrained", "null",
                 "--data", "RefCOCODataModule", "--data.data_root", str(tiny_world.refer_root)]) == 1
    err = capsys.readouterr().err
    assert re.search(r"model\.init_args\.backbone +ViT-B-61: did you mean ViT-B-16", err)
    assert "timm:NAME, local-dir:PATH" in err and len(err) < 1000 and not nothing_built


def test_openai_spellings_become_open_clip_names(monkeypatch, tiny_world):
    from ris.lightning_cli import ProjectCLI

    seen = {}

    def stop(self):
        seen["backbone"] = self.config["fit"]["model"]["init_args"]["backbone"]
        raise KeyboardInterrupt

    monkeypatch.setattr(ProjectCLI, "instantiate_classes", stop)
    monkeypatch.setattr("sys.argv", ["ris"])
    with pytest.raises(KeyboardInterrupt):
        main(["fit", "--model", "ETRIS", "--model.backbone", "ViT-B/16", "--model.pretrained", "null",
              "--data", "RefCOCODataModule", "--data.data_root", str(tiny_world.refer_root)])
    assert seen == {"backbone": "ViT-B-16"}


def test_user_errors_print_one_line_and_debug_brings_the_traceback_back(capsys, monkeypatch, tiny_world):
    monkeypatch.setattr("sys.argv", ["ris"])
    args = ["fit", "--model", "CRIS", "--model.backbone", "tiny-RN", "--model.pretrained", "null",
            "--data", "RefCOCODataModule", "--data.data_root", str(tiny_world.refer_root),
            "--data.labeled_fraction", "2.0", "--trainer.logger", "false"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "error: labeled_fraction must be in (0, 1], got 2.0" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="labeled_fraction must be in"):
        main([*args, "--debug"])
    monkeypatch.setenv("RIS_DEBUG", "1")
    with pytest.raises(ValueError, match="labeled_fraction must be in"):
        main(args)


def test_bugs_keep_their_traceback(monkeypatch):
    monkeypatch.setitem(commands.COMMANDS, "boom", ("tests.test_cli:_boom", "raises a bug"))
    with pytest.raises(ZeroDivisionError):
        main(["boom"])


def _boom(argv):
    return 1 // 0


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"pseudo-ris {ris.__version__}"


@pytest.mark.parametrize("command", [["synth", "--help"], ["report", "--help"], ["--version"]])
def test_framework_commands_that_need_no_torch_do_not_import_it(command):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ris", *command], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert not imported & {"torch", "lightning", "open_clip", "matplotlib"}, sorted(imported & {"torch", "lightning"})


def test_ris_test_output_is_quiet_and_ends_with_the_metrics_table(capsys, monkeypatch, tmp_path, tiny_world):
    from tests.workflow_world import clip_dir, cris_args

    monkeypatch.setattr("sys.argv", ["ris"])
    backbone = clip_dir(tmp_path, "tiny-RN")
    assert main(["test", *cris_args(backbone), "--data", "RefCOCODataModule", "--data.data_root",
                 str(tiny_world.refer_root), "--data.word_length", "8", "--data.test_splits", "[val, test]",
                 "--trainer.accelerator", "cpu", "--trainer.logger", "false", "--trainer.enable_progress_bar",
                 "false", "--trainer.default_root_dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[-4:-2] == ["| set | oIoU | mIoU | Prec@0.5 | Prec@0.6 | Prec@0.7 | Prec@0.8 | Prec@0.9 | samples |",
                            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    assert lines[-2].startswith("| refcoco/val |") and lines[-1].startswith("| refcoco/test |")
    assert "DataLoader 0" not in out  # Lightning's per-dataloader table is replaced
    for noise in ("Tip:", "GPU available", "TPU available", "Seed set to", "LeafSpec"):
        assert noise not in err


def test_synth_shows_progress(capsys, tmp_path):
    assert main(["synth", "--out", str(tmp_path / "w"), "--image-size", "32", "--n-train", "2", "--n-val", "1",
                 "--n-test", "1", "--n-b-train", "1", "--n-b-val", "1", "--n-b-test", "1"]) == 0
    err = capsys.readouterr().err
    assert "domain A train: 100%" in err and "2/2" in err and "domain B test" in err


def test_the_synthetic_vocabulary_keyword_is_not_taken_for_a_missing_file(monkeypatch, tmp_path):
    """``ris demo`` trains the synthetic CoCa with ``--model.vocabulary synthetic-world`` (a built-in tokenizer):
    the preflight must let it through to instantiation."""
    from ris.cli import build_cli
    from ris.lightning_cli import ProjectCLI
    from ris.synthetic.world import WorldSettings
    from ris.synthetic.zoo import CoCaRecipe, fit_args

    class Reached(Exception):
        pass

    def stop(self):
        raise Reached

    monkeypatch.setattr(ProjectCLI, "instantiate_classes", stop)
    monkeypatch.setattr("sys.argv", ["ris"])
    args = fit_args(WorldSettings(n_train=2), CoCaRecipe(model_name="tiny-coca"), tmp_path / "coca", tmp_path / "logs")
    assert "--model.vocabulary" not in args  # the default value: CoCaTrainer's vocabulary="synthetic-world"
    with pytest.raises(Reached):
        build_cli(args)
    with pytest.raises(Exception, match=r"model\.init_args\.vocabulary +" + re.escape(str(tmp_path / "v.json"))):
        build_cli([*args, "--model.vocabulary", str(tmp_path / "v.json")])
