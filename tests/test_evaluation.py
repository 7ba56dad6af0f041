import torch

from ris.batch import RISSample, collate
from ris.evaluation import MultiSetEvaluator, format_table
from ris.letterbox import letterbox_matrix


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
    ev = MultiSetEvaluator()
    ev.start("test", ["refcoco+/testA", "phrasecut/test"], torch.device("cpu"))
    full = torch.ones(16, 16, dtype=torch.bool)
    logits_all = torch.full((1, 1, 4, 4), 10.0)
    ev.update("test", _batch("refcoco+", "testA", full), logits_all)  # perfect
    ev.update("test", _batch("phrasecut", "test", full), -logits_all)  # empty prediction
    rec = _Recorder()
    results = ev.log_and_reset(rec, "test")
    assert rec.logged["test/refcoco+/testA/mIoU"] == 1.0
    assert rec.logged["test/phrasecut/test/mIoU"] == 0.0
    assert set(results) == {"refcoco+/testA", "phrasecut/test"}
    table = format_table(results)
    assert "| refcoco+/testA | 100.00 | 100.00 |" in table and "| phrasecut/test | 0.00 |" in table
