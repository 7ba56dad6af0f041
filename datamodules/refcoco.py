"""RefCOCO / RefCOCO+ / RefCOCOg datamodule (``refer`` format)."""

from __future__ import annotations

from typing import Any, Literal

from ris.contracts import InputSpec
from ris.tokenizer import Tokenizer

from .base import RISDataModule
from .referring_dataset import ReferringDataset
from .sets import RefCOCOSet

DEFAULT_TEST_SPLITS = {
    ("refcoco", "unc"): ["val", "testA", "testB"],
    ("refcoco+", "unc"): ["val", "testA", "testB"],
    ("refcoco", "google"): ["val", "test"],
    ("refcocog", "umd"): ["val", "test"],
    ("refcocog", "google"): ["val"],
}


class RefCOCODataModule(RISDataModule):
    """Train on one refer split, validate/test on several (plus any ``val_sets`` / ``test_sets``).

    Reads ``<data_root>/<dataset>/refs(<split_by>).p`` and ``instances.json`` directly; one evaluation sample per
    sentence. The synthetic world's domain A is this format (``data_root: <world>/refer``, splits train/val/test).

    Args:
        data_root: folder holding the dataset folders (and ``images/mscoco/images/train2014``).
        dataset: ``refcoco``, ``refcoco+`` or ``refcocog``.
        split_by: ``unc`` (refcoco, refcoco+), ``google`` (refcoco, refcocog) or ``umd`` (refcocog).
        image_dir: image folder (default ``<data_root>/images/mscoco/images/train2014``).
        train_split: training split.
        val_splits: validation splits of this dataset.
        test_splits: test splits of this dataset; default per partition (unc: val, testA, testB; umd and
            refcoco-google: val, test; refcocog-google: val).
        name: dataset label in set names and samples (default e.g. ``refcoco``, ``refcocog-umd``).
        **kwargs: see :class:`~ris.datamodules.base.RISDataModule` (set ``word_length: 22`` for RefCOCOg's longer
            expressions; the default 17 suits RefCOCO/+).
    """

    def __init__(
        self,
        data_root: str = "data/refer",
        dataset: Literal["refcoco", "refcoco+", "refcocog"] = "refcoco",
        split_by: Literal["unc", "umd", "google"] = "unc",
        image_dir: str | None = None,
        train_split: str = "train",
        val_splits: list[str] | None = None,
        test_splits: list[str] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.data_root, self.dataset, self.split_by = data_root, dataset, split_by
        self.image_dir, self.name = image_dir, name
        self.train_split = train_split
        self.train_set = self._set(train_split)
        self.splits = {
            "validate": list(val_splits) if val_splits is not None else ["val"],
            "test": list(test_splits) if test_splits is not None else DEFAULT_TEST_SPLITS[(dataset, split_by)],
        }

    def _set(self, split: str) -> RefCOCOSet:
        return RefCOCOSet(self.dataset, self.data_root, split, self.split_by, self.image_dir, self.name)

    def own_sets(self, stage: str) -> list[RefCOCOSet]:
        return [self._set(split) for split in self.splits[stage]]

    def build_train_dataset(self, tokenizer: Tokenizer, spec: InputSpec) -> ReferringDataset:
        return self.referring_dataset(self.train_set, tokenizer, spec, train=True)
