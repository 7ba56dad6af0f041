import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ris.batch import RISBatch
from ris.cli import main
from ris.contracts import InputSpec
from ris.metrics import logits_to_masks
from ris.models.base import RISModule
from ris.tokenizer import WordTokenizer

DATA = Path(__file__).parent / "data"


class OracleModel(RISModule):
    """Predicts the letterboxed target mask (downsampled to S/4): scores must come out high if the datamodule's
    letterbox, affine and original-resolution ground truth are consistent."""

    supervision = "masks"

    def __init__(self, sharpness: float = 12.0) -> None:
        super().__init__()
        self._tokenizer = WordTokenizer(["box", "square", "red", "hexagon"])
        self.sharpness = sharpness
        self.bias = nn.Parameter(torch.zeros(1))

    @property
    def tokenizer(self) -> WordTokenizer:
        return self._tokenizer

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(64)

    def forward(self, batch: RISBatch) -> torch.Tensor:
        return self.sharpness * (F.avg_pool2d(batch.mask, 4) - 0.5) + self.bias

    def training_step(self, batch: RISBatch, batch_idx: int) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self(batch), F.avg_pool2d(batch.mask, 4))

    def predict_masks(self, batch: RISBatch) -> list[torch.Tensor]:
        return logits_to_masks(self(batch), batch.affine, batch.orig_size, batch.image.shape[-1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.parametrize(
    "datamodule, options",
    [
        ("RefCOCODataModule", ["dataset:", "split_by:", "train_split:", "val_splits:", "test_splits:"]),
        ("PhraseCutDataModule", ["category_filter:", "seen_categories:", "val_splits:"]),
    ],
)
def test_print_config_shows_the_datamodule_options(capsys, datamodule, options):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--data", datamodule, "--print_config"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"class_path: ris.datamodules.{datamodule}" in out
    for option in [*options, "val_sets:", "test_sets:", "labeled_fraction:", "word_length:", "input_size:",
                   "on_bad_sample:", "train_unit:", "tokenizer:"]:
        assert option in out


def cli_args(stage: str, tmp_path: Path) -> list[str]:
    phrasecut = {"dataset": "phrasecut", "data_root": str(DATA / "phrasecut"), "split": "val"}
    return [
        stage,
        "--model", "tests.test_datamodule_cli.OracleModel",
        "--data", "RefCOCODataModule",
        "--data.data_root", str(DATA / "refer"),
        "--data.input_size", "64",
        "--data.batch_size", "2",
        "--data.val_splits", '["val"]',
        "--data.test_splits", '["testB"]',
        f"--data.{'val' if stage == 'validate' else 'test'}_sets", json.dumps([phrasecut]),
        "--trainer.accelerator", "cpu",
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir", str(tmp_path),
        "--trainer.logger.name", stage,
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(tmp_path),
    ]


def logged_metrics(tmp_path: Path, stage: str) -> dict[str, float]:
    (path,) = (tmp_path / stage).rglob("metrics.csv")
    rows = list(csv.DictReader(path.open()))
    return {k: float(v) for row in rows for k, v in row.items() if v not in ("", None)}


def test_validate_logs_per_set_metrics_for_two_evaluation_sets(tmp_path):
    assert main(cli_args("validate", tmp_path)) == 0
    metrics = logged_metrics(tmp_path, "validate")
    for name in ("refcoco/val", "phrasecut/val"):
        for key in ("oIoU", "mIoU", "Prec@0.5", "Prec@0.9"):
            assert f"val/{name}/{key}" in metrics
        assert metrics[f"val/{name}/mIoU"] > 0.7  # the oracle's letterboxed target maps back onto the GT
        assert metrics[f"val/{name}/Prec@0.5"] == 1.0
    (config,) = (tmp_path / "validate").rglob("config.yaml")
    assert "dataset: phrasecut" in config.read_text()


def test_test_prints_one_table_over_all_sets(tmp_path, capsys):
    assert main(cli_args("test", tmp_path)) == 0
    out = capsys.readouterr().out  # the metrics table goes to stdout
    assert out.count("| set |") == 1
    rows = [line for line in out.splitlines() if line.startswith(("| refcoco/", "| phrasecut/"))]
    assert [row.split("|")[1].strip() for row in rows] == ["refcoco/testB", "phrasecut/val"]
    metrics = logged_metrics(tmp_path, "test")
    assert {"test/refcoco/testB/mIoU", "test/phrasecut/val/mIoU"} <= set(metrics)
