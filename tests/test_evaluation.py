import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from ris.batch import RISSample, collate
from ris.contracts import InputSpec
from ris.evaluation import Evaluator, format_table
from ris.letterbox import letterbox_matrix
from ris.models.base import RISModule
from ris.tokenizer import WordTokenizer


class _Recorder:
    def __init__(self):
        self.logged = {}

    def log_dict(self, values, **kwargs):
        self.logged.update({k: float(v) for k, v in values.items()})


def _batch(dataset, split, gt):
    h, w = gt.shape
    sample = RISSample(
        image=torch.zeros(3, 16, 16), mask=torch.zeros(1, 16, 16), text="x", tokens=torch.zeros(4, dtype=torch.long),
        orig_size=(h, w), affine=letterbox_matrix(h, w, 16), gt_mask=gt, dataset=dataset, split=split,
    )
    return collate([sample])


def test_two_sets_get_separate_metrics_and_log_keys():
    ev = Evaluator()
    ev.start("test", ["refcoco+/testA", "phrasecut/test"], torch.device("cpu"))
    full = torch.ones(16, 16, dtype=torch.bool)
    ev.update("test", _batch("refcoco+", "testA", full), [full], torch.device("cpu"))  # perfect
    ev.update("test", _batch("phrasecut", "test", full), [~full], torch.device("cpu"))  # empty prediction
    rec = _Recorder()
    results = ev.finish(rec, "test")
    assert rec.logged["test/refcoco+/testA/mIoU"] == 1.0
    assert rec.logged["test/phrasecut/test/mIoU"] == 0.0
    assert set(results) == {"refcoco+/testA", "phrasecut/test"}
    table = format_table(results)
    assert "| refcoco+/testA | 100.00 | 100.00 |" in table and "| phrasecut/test | 0.00 |" in table


def test_update_checks_what_the_step_returned():
    ev = Evaluator()
    batch = _batch("refcoco", "val", torch.ones(4, 4, dtype=torch.bool))
    for bad in (None, []):
        try:
            ev.update("validate", batch, bad, torch.device("cpu"))
        except TypeError as err:
            assert "validate_step must return one bool mask per sample (1)" in str(err)
        else:
            raise AssertionError("a step without masks must be refused")


class _Half(RISModule):
    """Predicts the left half of every image: IoU 0.5 against full ground truth."""

    supervision = "none"

    @property
    def tokenizer(self):
        return WordTokenizer(["x"])

    @property
    def input_spec(self):
        return InputSpec(16)

    def predict_masks(self, batch):
        out = []
        for h, w in batch.orig_size.tolist():
            mask = torch.zeros(h, w, dtype=torch.bool)
            mask[:, : w // 2] = True
            out.append(mask)
        return out


def test_every_module_gets_the_evaluator_and_writes_its_run_record(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    model = _Half()
    assert [type(c) for c in model.configure_callbacks()] == [Evaluator]
    batch = _batch("refcoco", "val", torch.ones(4, 8, dtype=torch.bool))
    loader = DataLoader([batch], batch_size=None)
    trainer = Trainer(accelerator="cpu", logger=CSVLogger(tmp_path, name="run"), enable_progress_bar=False,
                      enable_model_summary=False)
    (metrics,) = trainer.test(model, dataloaders=loader, verbose=False)
    assert metrics["test/refcoco/val/mIoU"] == 0.5 and metrics["test/refcoco/val/Prec@0.5"] == 1.0
    record = (tmp_path / "run" / "version_0" / "run.json").read_text()
    assert '"supervision": "none"' in record and '"model": "tests.test_evaluation._Half"' in record
