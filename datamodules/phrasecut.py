"""PhraseCut datamodule."""

from __future__ import annotations

from typing import Any

from ris.contracts import InputSpec
from ris.formats.phrasecut import CategoryFilter
from ris.tokenizer import Tokenizer

from .base import RISDataModule
from .referring_dataset import ReferringDataset
from .sets import PhraseCutSet


class PhraseCutDataModule(RISDataModule):
    """Train on one PhraseCut split, validate/test on several (plus any ``val_sets`` / ``test_sets``).

    One sample per task; for ``train_unit="ref"`` the tasks of the same region (image and instance ids) form one
    training sample with a random phrase. The synthetic world's domain B is this format
    (``data_root: <world>/phrasecut``, splits train/val/test).

    Args:
        data_root: folder with ``refer_{split}.json`` and ``images/``.
        train_split: training split.
        val_splits: validation splits (``val_miniv`` = val + miniv, the whole validation set).
        test_splits: test splits.
        category_filter: ``all``, ``coco`` or ``non_coco`` (the "unseen" subset), applied to every own set.
        seen_categories: names counted as seen (default: the 80 COCO class names).
        image_dir: image folder (default ``<data_root>/images``).
        name: dataset label in set names and samples (default ``phrasecut`` / ``phrasecut-<filter>``).
        **kwargs: see :class:`~ris.datamodules.base.RISDataModule`.
    """

    def __init__(
        self,
        data_root: str = "data/VGPhraseCut_v0",
        train_split: str = "train",
        val_splits: list[str] | None = None,
        test_splits: list[str] | None = None,
        category_filter: CategoryFilter = "all",
        seen_categories: list[str] | None = None,
        image_dir: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.data_root = data_root
        self.category_filter, self.seen_categories = category_filter, seen_categories
        self.image_dir, self.name = image_dir, name
        self.train_set = self._set(train_split)
        self.splits = {
            "validate": list(val_splits) if val_splits is not None else ["val"],
            "test": list(test_splits) if test_splits is not None else ["test"],
        }

    def _set(self, split: str) -> PhraseCutSet:
        return PhraseCutSet(
            "phrasecut", self.data_root, split, self.category_filter, self.seen_categories, self.image_dir, self.name
        )

    def own_sets(self, stage: str) -> list[PhraseCutSet]:
        return [self._set(split) for split in self.splits[stage]]

    def build_train_dataset(self, tokenizer: Tokenizer, spec: InputSpec) -> ReferringDataset:
        return self.referring_dataset(self.train_set, tokenizer, spec, train=True)
