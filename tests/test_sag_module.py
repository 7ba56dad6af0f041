"""ris.models.SaG as a LightningModule: the model contract (text supervision, squash input, tokenizer), text-only
training enforced (garbage masks give bit-identical weights), the optimizer groups and the per-iteration schedule,
evaluation through the Evaluator at original resolution, and checkpoint round trips."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from torch.utils.data import Dataset

from ris.batch import RISSample
from ris.contracts import InputSpec
from ris.datamodules import RefCOCODataModule
from ris.models import SaG
from ris.tokenizer import WordTokenizer

from .sag_tiny import TINY_VIT, VIT_NAME
from .workflow_world import clip_dir, make_world

SIZE = 64


def tiny_sag(text_encoder: str, cls: type[SaG] = SaG, **overrides) -> SaG:
    """A tiny SaG (8 × 8 patch grid, 3 × 2 slots) on random weights, through the real constructors."""
    args = dict(
        vit=VIT_NAME,
        vit_pretrained=None,
        vit_overrides=TINY_VIT,
        input_size=SIZE,
        text_encoder=text_encoder,
        dim=32,
        num_gaussians=3,
        samples_per_gaussian=2,
        iterations=2,
        slot_head_dim=8,
        interaction_head_dim=8,
        fusion_head_dim=8,
        loss_warmup=2,
        lr=1e-3,
    )
    return cls(**{**args, **overrides})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sag_world")
    return make_world(root / "world"), clip_dir(root, "tiny-coca")


class GarbageMasks(Dataset):
    """The wrapped dataset with every training mask replaced by noise (drawn from a per-sample generator, so the
    global random state, and with it the batch order and the slot noise, is untouched)."""

    def __init__(self, inner: Dataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> RISSample:
        sample = self.inner[index]
        noise = torch.rand(sample.mask.shape, generator=torch.Generator().manual_seed(index))
        sample.mask = (noise > 0.5).float()
        return sample


class GarbageMaskData(RefCOCODataModule):
    def build_train_dataset(self, tokenizer, spec):
        return GarbageMasks(super().build_train_dataset(tokenizer, spec))


class MaskPeekingSaG(SaG):
    """A control that does read the mask (a tiny extra loss term): the text-only test must tell it apart."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss + 1e-3 * batch.mask.mean() * self.network.entity_discovery.out_norm.weight.sum()


def _train(model_cls, data_cls, world, steps: int = 3) -> dict[str, torch.Tensor]:
    paths, coca = world
    seed_everything(0, workers=True)
    model = tiny_sag(coca, model_cls)
    data = data_cls(data_root=str(paths.refer_root), dataset="refcoco", val_splits=[], test_splits=[], batch_size=4,
                    word_length=8, train_unit="sentence")
    trainer = Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                      gradient_clip_val=0.1, deterministic=True)
    trainer.fit(model, datamodule=data)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_training_never_reads_the_masks(world, one_thread):
    seed_everything(0)
    initial = {k: v.clone() for k, v in tiny_sag(world[1]).state_dict().items()}
    true_masks = _train(SaG, RefCOCODataModule, world)
    garbage = _train(SaG, GarbageMaskData, world)
    assert true_masks.keys() == garbage.keys()
    for key in true_masks:
        assert torch.equal(true_masks[key], garbage[key]), key
    moved = [k for k in true_masks if k in initial and not torch.equal(true_masks[k], initial[k])]
    assert len(moved) > len(true_masks) // 2, "training did not update the weights"
    # the same test tells a model that reads masks apart
    peeking_true = _train(MaskPeekingSaG, RefCOCODataModule, world)
    peeking_garbage = _train(MaskPeekingSaG, GarbageMaskData, world)
    assert any(not torch.equal(peeking_true[k], peeking_garbage[k]) for k in peeking_true)


def test_the_model_declares_text_supervision_a_squash_input_and_its_tokenizer(world, one_thread):
    paths, coca = world
    model = tiny_sag(coca)
    assert SaG.supervision == "text" and model.supervision == "text"
    assert model.input_spec == InputSpec(SIZE, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "squash")
    assert isinstance(model.tokenizer, WordTokenizer)  # the world's CoCa tower brings its word vocabulary
    data = RefCOCODataModule(data_root=str(paths.refer_root), dataset="refcoco", val_splits=[], test_splits=["test"],
                             word_length=8)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.strategy.connect(model)  # what fit / test do before the datamodule's setup
    data.trainer = trainer
    assert data.resolve_input_spec() == model.input_spec
    data.setup("test")
    sample = data.eval_datasets["test"][0][0]
    height, width = sample.orig_size
    assert sample.image.shape == (3, SIZE, SIZE)
    # the squash matrix: a plain resize of the original image to SIZE x SIZE
    torch.testing.assert_close(sample.affine[0, 0], torch.tensor(SIZE / width, dtype=torch.float64))
    torch.testing.assert_close(sample.affine[1, 1], torch.tensor(SIZE / height, dtype=torch.float64))
    assert height != width, "the test needs a non-square image to tell squash from letterbox"


def test_optimizer_groups_and_the_per_iteration_schedule(world, one_thread):
    paths, coca = world
    seed_everything(0)
    model = tiny_sag(coca, loss_warmup=3, lr=1e-3, backbone_lr_mult=0.1, text_lr_mult=0.5)
    data = RefCOCODataModule(data_root=str(paths.refer_root), dataset="refcoco", val_splits=[], test_splits=[],
                             batch_size=4, word_length=8, train_unit="sentence")
    trainer = Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, limit_train_batches=3)
    trainer.fit(model, datamodule=data)
    optimizer = trainer.optimizers[0]
    assert type(optimizer).__name__ == "AdamW"
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups) == {"head", "backbone", "text"}
    assert all(g["weight_decay"] == 1e-4 for g in groups.values())
    n_params = {name: sum(p.numel() for p in g["params"]) for name, g in groups.items()}
    assert n_params["backbone"] == sum(p.numel() for p in model.network.visual.parameters())
    assert n_params["text"] == sum(p.numel() for p in model.network.text.parameters())
    assert sum(n_params.values()) == sum(p.numel() for p in model.parameters())
    # 6 optimizer steps over a total of 6: constant until the warm-up (3) ends, then cosine per iteration
    total, done = 6, trainer.global_step
    assert done == 6
    factor = 0.5 * (1 + math.cos(math.pi * (done + 1 - 3) / total))
    for name, mult in (("head", 1.0), ("backbone", 0.1), ("text", 0.5)):
        assert groups[name]["lr"] == pytest.approx(1e-3 * mult * factor)
    assert trainer.lr_scheduler_configs[0].interval == "step"


def test_evaluation_scores_original_resolution_masks_and_is_deterministic(world, tmp_path, one_thread):
    paths, coca = world
    seed_everything(0)
    model = tiny_sag(coca)
    data = RefCOCODataModule(data_root=str(paths.refer_root), dataset="refcoco", val_splits=[], test_splits=["test"],
                             word_length=8, eval_batch_size=4)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (results,) = trainer.test(model, datamodule=data, verbose=False)
    assert set(results) >= {"test/refcoco/test/mIoU", "test/refcoco/test/oIoU"}
    batch = next(iter(data.test_dataloader()[0]))
    model.eval()
    with torch.no_grad():
        masks = model.predict_masks(batch)
        again = model.predict_masks(batch)
    assert [tuple(m.shape) for m in masks] == [tuple(g.shape) for g in batch.gt_masks]
    assert all(m.dtype == torch.bool and m.any() for m in masks)
    assert all(torch.equal(a, b) for a, b in zip(masks, again))  # fixed slot noise: the same masks every time
    # the masks follow the relevance map resized to the original image (squash inverted), not a letterbox
    relevance = model.relevance(batch)
    h, w = (int(v) for v in batch.orig_size[0])
    resized = torch.nn.functional.interpolate(relevance[:1, None], size=(h, w), mode="bilinear", align_corners=False)
    resized = resized[0, 0]
    expected = (resized - resized.min()) / (resized.max() - resized.min() + 1e-9) >= 0.5
    assert (masks[0] ^ expected).float().mean() < 0.01


def test_checkpoints_rebuild_the_model_and_its_predictions(world, tmp_path, one_thread):
    paths, coca = world
    seed_everything(0)
    model = tiny_sag(coca, num_gaussians=2, samples_per_gaussian=3, eval_noise="mean")
    data = RefCOCODataModule(data_root=str(paths.refer_root), dataset="refcoco", val_splits=[], test_splits=["test"],
                             batch_size=4, word_length=8, train_unit="sentence")
    trainer = Trainer(accelerator="cpu", max_steps=2, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=data)
    ckpt = Path(trainer.checkpoint_callback.best_model_path or trainer.checkpoint_callback.last_model_path)
    if not ckpt.is_file():
        ckpt = tmp_path / "sag.ckpt"
        trainer.save_checkpoint(ckpt)
    loaded = SaG.load_from_checkpoint(ckpt)
    assert loaded.hparams.num_gaussians == 2 and loaded.hparams.samples_per_gaussian == 3
    assert loaded.hparams.lr == 1e-3 and loaded.eval_noise == "mean"
    data.setup("test")
    batch = next(iter(data.test_dataloader()[0]))
    model.eval()
    loaded.eval()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model.predict_masks(batch), loaded.predict_masks(batch)))


def test_bad_arguments_fail_with_short_errors(world):
    _, coca = world
    with pytest.raises(ValueError, match="model.eval_noise must be"):
        tiny_sag(coca, eval_noise="random")
    with pytest.raises(ValueError, match="not a multiple of"):
        tiny_sag(coca, input_size=60)
