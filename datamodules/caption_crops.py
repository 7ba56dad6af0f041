"""Object crops of the synthetic world with web-like captions: the training data of the synthetic CoCa.

Crops are made like the generator's crops (:func:`ris.pseudo.crops.make_crops`: masked, and 0 / 10 / 20 % context),
from the **train** scenes of domain A only. Captions come from :func:`ris.synthetic.expressions.web_captions`:
correct but not conditioned on the other objects (never the ground-truth referring expressions). Everything is
deterministic given the world settings and ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open_clip
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from ris.pseudo.crops import PAPER_MARGINS, make_crops
from ris.synthetic.expressions import web_captions
from ris.synthetic.world import WorldSettings, iter_scenes


@dataclass(frozen=True)
class CaptionedCrop:
    """One training pair: the crop index into the crop tensor and its caption."""

    crop: int
    text: str


class CaptionCropDataset(Dataset):
    """``(crop, caption)`` pairs: every object × every crop type × ``captions_per_crop`` captions.

    Crops are stored once as uint8-quantised tensors ``(N, 3, S, S)`` and normalised on access.
    """

    def __init__(
        self,
        world: WorldSettings,
        image_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        captions_per_crop: int = 2,
        seed: int = 0,
    ) -> None:
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        crops: list[torch.Tensor] = []
        self.pairs: list[CaptionedCrop] = []
        for image_id, scene, _ in iter_scenes(world, "A", "train"):
            if not scene.objects:
                continue
            masks = np.stack([o.mask for o in scene.objects])
            normalised = make_crops(scene.image, masks, image_size, mean, std, PAPER_MARGINS)  # (T, K, 3, S, S)
            raw = (normalised * self.std + self.mean).clamp(0, 1).mul(255).round().to(torch.uint8)
            rng = np.random.default_rng([seed, image_id])
            for k, obj in enumerate(scene.objects):
                for t in range(raw.shape[0]):
                    crops.append(raw[t, k])
                    for text in web_captions(scene, obj, rng, captions_per_crop):
                        self.pairs.append(CaptionedCrop(len(crops) - 1, text))
        if not crops:
            raise ValueError(f"the synthetic world {world} has no objects in its train split")
        self.crops = torch.stack(crops)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        image = (self.crops[pair.crop].float() / 255.0 - self.mean) / self.std
        return {"image": image, "text": pair.text}


def _collate(items: list[dict]) -> dict:
    return {"image": torch.stack([i["image"] for i in items]), "text": [i["text"] for i in items]}


class SyntheticCaptionsDataModule(LightningDataModule):
    """Caption-training data of the synthetic world (for ``ris.models.CoCaTrainer``).

    Args:
        seed, image_size, n_train: the world's settings (see ``ris synth``); only the train scenes of domain A are
            used and they are regenerated in memory, so no files are needed.
        crop_size: side of the crops (the CoCa input size).
        captions_per_crop: web captions drawn per crop.
        caption_seed: seed of the caption draws.
        batch_size, num_workers: loader settings.
    """

    def __init__(
        self,
        seed: int = 0,
        image_size: int = 96,
        n_train: int = 400,
        crop_size: int = 64,
        captions_per_crop: int = 2,
        caption_seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.world = WorldSettings(seed=seed, image_size=image_size, n_train=n_train)
        self.dataset: CaptionCropDataset | None = None

    def setup(self, stage: str) -> None:
        if self.dataset is None:
            hp = self.hparams
            self.dataset = CaptionCropDataset(
                self.world,
                hp.crop_size,
                open_clip.OPENAI_DATASET_MEAN,
                open_clip.OPENAI_DATASET_STD,
                hp.captions_per_crop,
                hp.caption_seed,
            )

    def train_dataloader(self) -> DataLoader:
        assert self.dataset is not None, "call setup() first"
        return DataLoader(
            self.dataset,
            batch_size=self.hparams.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.hparams.num_workers,
            collate_fn=_collate,
            persistent_workers=self.hparams.num_workers > 0,
        )
