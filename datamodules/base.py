"""The base RIS datamodule: per-stage datasets, one loader factory, evaluation sets, tokenizer flow, bad-sample report.

Subclasses provide the training set (:meth:`RISDataModule.build_train_dataset`) and their own evaluation sets
(:meth:`RISDataModule.own_sets`); ``val_sets`` / ``test_sets`` append sets of any other dataset
(:mod:`ris.datamodules.sets`). Validation and test return **one dataloader per set**, in the order of
:meth:`RISDataModule.eval_set_names`, which models pass to :class:`ris.evaluation.MultiSetEvaluator`.

Model contract (:mod:`ris.contracts`): the tokenizer is ``tokenizer`` if given, else the attached model's; the
network input (side, normalisation, letterbox or squash) is the model's ``input_spec``, so the datamodule's
``input_size`` is optional and, when given, must agree with the model's. The datamodule declares ``labels`` (what
its training data carries) and ``eval_set_names(stage)``.

Under ``torch.distributed`` the loaders carry their own samplers: ``DistributedSampler`` for training and
``UnrepeatedDistributedSampler`` (no padding duplicates) for evaluation, so every evaluation sample is seen once.
"""

from __future__ import annotations

import logging

import torch.distributed as dist
from lightning.pytorch import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ris.batch import collate
from ris.contracts import EVAL_STAGES, InputSpec, LabelSource
from ris.tokenizer import Tokenizer

from .bad_samples import OnBadSample, SkippedSample, handle, report
from .labeled import select_labeled_images
from .referring_dataset import ReferringDataset, TrainUnit, merge_regions, verify_items
from .sets import ReferringSet

log = logging.getLogger(__name__)

STANDALONE_INPUT_SIZE = 416
"""The input side of a datamodule used without a model and without ``input_size`` (CRIS's letterbox)."""
SETUP_EVAL_STAGE = {"fit": "validate", "validate": "validate", "test": "test"}
"""Lightning stage → the evaluation sets its ``setup`` builds (a fit validates)."""


class RISDataModule(LightningDataModule):
    """Shared machinery of the RIS datamodules.

    Args:
        val_sets: extra validation sets (after the datamodule's own).
        test_sets: extra test sets (after the datamodule's own).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size (default: ``batch_size``).
        num_workers: dataloader workers.
        input_size: side of the square network input; ``None`` (default) = the model's ``input_spec.size`` (416
            without a model); a value that differs from the model's is an error.
        word_length: token sequence length (17 for RefCOCO/+, 22 for RefCOCOg).
        tokenizer: tokenizer of the model; default: the model's ``tokenizer``.
        input_spec: the network input; default: the model's ``input_spec`` (with ``input_size``, if given).
        train_unit: ``ref`` = one sample per referred region per epoch with a random expression (CRIS);
            ``sentence`` = one sample per expression.
        labeled_fraction: fraction of the training **images** whose labels are used, drawn among the images with at
            least one well-formed ref (see :mod:`ris.datamodules.labeled`); the ids are in ``labeled_image_ids``.
        labeled_seed: seed of the labelled subset.
        on_bad_sample: ``raise`` at the first bad sample, or ``skip`` (verify every sample up front, drop and report
            the bad ones; see :mod:`ris.datamodules.bad_samples`).
    """

    def __init__(
        self,
        val_sets: list[ReferringSet] | None = None,
        test_sets: list[ReferringSet] | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        input_size: int | None = None,
        word_length: int = 17,
        tokenizer: Tokenizer | None = None,
        input_spec: InputSpec | None = None,
        train_unit: TrainUnit = "ref",
        labeled_fraction: float = 1.0,
        labeled_seed: int = 0,
        on_bad_sample: OnBadSample = "raise",
    ) -> None:
        super().__init__()
        if on_bad_sample not in ("raise", "skip"):
            raise ValueError(f"on_bad_sample must be 'raise' or 'skip', got {on_bad_sample!r}")
        if train_unit not in ("ref", "sentence"):
            raise ValueError(f"train_unit must be 'ref' or 'sentence', got {train_unit!r}")
        if not 0.0 < labeled_fraction <= 1.0:
            raise ValueError(f"labeled_fraction must be in (0, 1], got {labeled_fraction}")
        self.extra_sets = {"validate": list(val_sets or []), "test": list(test_sets or [])}
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.input_size = input_size
        self.word_length = word_length
        self.tokenizer = tokenizer
        self.input_spec = input_spec
        self.train_unit: TrainUnit = train_unit
        self.labeled_fraction = labeled_fraction
        self.labeled_seed = labeled_seed
        self.on_bad_sample: OnBadSample = on_bad_sample
        self.train_dataset: Dataset | None = None
        self.eval_datasets: dict[str, list[Dataset]] = {}
        self.labeled_image_ids: list[int] | None = None
        self._skipped: dict[str, list[SkippedSample]] = {}

    labels: LabelSource = "human"
    """What the training data carries (:data:`ris.contracts.LabelSource`)."""

    def build_train_dataset(self, tokenizer: Tokenizer, spec: InputSpec) -> Dataset:
        """The training dataset."""
        raise NotImplementedError(f"{type(self).__name__} has no training set")

    def own_sets(self, stage: str) -> list[ReferringSet]:
        """The datamodule's own evaluation sets of ``stage`` (``validate`` or ``test``)."""
        return []

    def eval_sets(self, stage: str) -> list[ReferringSet]:
        """Every evaluation set of ``stage`` (``validate`` or ``test``; own, then extra), in dataloader order."""
        if stage not in EVAL_STAGES:
            raise ValueError(f"no evaluation sets for stage {stage!r}; expected one of {list(EVAL_STAGES)}")
        sets = [*self.own_sets(stage), *self.extra_sets[stage]]
        names = [s.set_name for s in sets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"{stage} sets have duplicate names {duplicates}; give them distinct `name`s")
        return sets

    def eval_set_names(self, stage: str) -> list[str]:
        """Names (``dataset/split``) of the evaluation sets of ``stage``, in dataloader order."""
        return [s.set_name for s in self.eval_sets(stage)]

    @property
    def skipped(self) -> list[SkippedSample]:
        """Every sample skipped so far under ``on_bad_sample="skip"``."""
        return [s for records in self._skipped.values() for s in records]

    def _model(self) -> object | None:
        return self.trainer.lightning_module if self.trainer is not None else None

    def resolve_tokenizer(self) -> Tokenizer:
        """``tokenizer`` if given, else the attached model's ``tokenizer``."""
        if self.tokenizer is not None:
            return self.tokenizer
        tokenizer = getattr(self._model(), "tokenizer", None)
        if tokenizer is None:
            raise ValueError(
                f"{type(self).__name__}: no tokenizer; pass `tokenizer=` or use a model with a `tokenizer` attribute"
            )
        return tokenizer

    def resolve_input_spec(self) -> InputSpec:
        """``input_spec`` if given, else the attached model's; ``input_size`` must agree with it (without either, a
        CLIP-normalised letterbox of ``input_size``, default 416)."""
        spec = self.input_spec if self.input_spec is not None else getattr(self._model(), "input_spec", None)
        if spec is None:
            return InputSpec(self.input_size or STANDALONE_INPUT_SIZE)
        if self.input_size is not None and self.input_size != spec.size:
            raise ValueError(
                f"data.input_size = {self.input_size} disagrees with the model's input size {spec.size} "
                "(model.input_size); set it once, on the model"
            )
        return spec

    def referring_dataset(
        self, spec: ReferringSet, tokenizer: Tokenizer, input_spec: InputSpec, train: bool
    ) -> ReferringDataset:
        """Read ``spec``, apply the bad-sample policy (and, for training, the labelled fraction), build the dataset."""
        context = f"{spec.set_name} ({'train' if train else 'eval'})"
        items, problems = spec.read()
        skipped = handle(problems, self.on_bad_sample, spec.set_name)
        if train:
            keep = select_labeled_images([i.image_id for i in items], self.labeled_fraction, self.labeled_seed)
            self.labeled_image_ids = keep
            kept = set(keep)
            items = [i for i in items if i.image_id in kept]
            log.info("%s: %d labelled images (labeled_fraction=%s, seed=%d)", context, len(keep),
                     self.labeled_fraction, self.labeled_seed)
        if self.on_bad_sample == "skip":
            items, errors = verify_items(items)
            skipped += handle(errors, "skip", spec.set_name)
        self._skipped[context] = skipped
        report(skipped, context)
        if not items:
            raise ValueError(f"{context}: no samples left to load")
        if train and self.train_unit == "ref":
            items = merge_regions(items)
        return ReferringDataset(
            items,
            dataset=spec.label,
            split=spec.split,
            tokenizer=tokenizer,
            input_spec=input_spec,
            word_length=self.word_length,
            train=train,
            train_unit=self.train_unit,
        )

    def setup(self, stage: str) -> None:
        if stage not in SETUP_EVAL_STAGE:
            return
        tokenizer, spec = self.resolve_tokenizer(), self.resolve_input_spec()
        if stage == "fit":
            self.train_dataset = self.build_train_dataset(tokenizer, spec)
        kind = SETUP_EVAL_STAGE[stage]
        self.eval_datasets[kind] = [
            self.referring_dataset(s, tokenizer, spec, train=False) for s in self.eval_sets(kind)
        ]

    def teardown(self, stage: str) -> None:
        report(self.skipped, f"end of {stage}")

    def _sampler(self, dataset: Dataset, train: bool) -> Sampler | None:
        if not (dist.is_available() and dist.is_initialized()):
            return None
        if train:
            return DistributedSampler(dataset, shuffle=True)
        return UnrepeatedDistributedSampler(dataset, shuffle=False)

    def _dataloader(self, dataset: Dataset, train: bool) -> DataLoader:
        sampler = self._sampler(dataset, train)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            # CRIS drops the incomplete last training batch (BatchNorm needs > 1 sample), unless that is all there is.
            drop_last=train and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
        )

    def _eval_loaders(self, kind: str) -> list[DataLoader]:
        if kind not in self.eval_datasets:
            raise RuntimeError(f"{type(self).__name__}.setup() has not built the {kind} sets")
        return [self._dataloader(d, train=False) for d in self.eval_datasets[kind]]

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup('fit') has not built the training set")
        return self._dataloader(self.train_dataset, train=True)

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("validate")

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")
