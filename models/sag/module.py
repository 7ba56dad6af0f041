"""``ris.models.SaG``: SaG as a trainable RIS model on the framework's batch contract (docs/baselines.md §1).

It learns from (image, expression) pairs only (``supervision = "text"``): the training step reads the image and
the token ids of a batch and never its mask. Defaults are the paper's model (ViT-S/16 at 384 px, BERT-base, 18 × 2
entity slots) and the released scripts' recipe (§1.5): AdamW (weight decay 1e-4), lr 1e-5 for the slot, fusion
and decoder modules and for the text encoder, ×0.1 for the ViT; the loss scaled by ``i / 5000`` over the first
5000 iterations, then a per-iteration cosine over all iterations; gradient-norm clip 0.1 (``gradient_clip_val``
in the configs). Predictions: ``Σ_k A_fuse · A_slot`` → original resolution → min–max → ``≥ threshold`` (0.5).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.optim.lr_scheduler import LambdaLR

from ris.batch import RISBatch
from ris.contracts import InputSpec, Supervision
from ris.tokenizer import Tokenizer

from ..base import RISModel, count_parameters
from ..lr_schedule import ParamGroup, Schedule, build_optimizer
from .entity_discovery import SlotNoise
from .loss import WarmupCosine, c3_loss, reconstruction_loss
from .masks import relevance_to_masks
from .network import SaGNet, SaGOutput
from .text import create_text_encoder
from .visual import ViTPatchEncoder

DEFAULT_WEIGHT_DECAY = 1e-4


class SaG(RISModel):
    """SaG: ``(B, 3, S, S)`` squashed image + ``(B, L)`` tokens → entity slots, ``A_slot``, ``A_fuse`` (``SaGOutput``).

    Args:
        vit: a timm ViT architecture (``vit_small_patch16_384``).
        vit_pretrained: ``timm`` (timm's weights for ``vit``), a local checkpoint file, or ``null`` (random).
        vit_overrides: extra timm constructor arguments for a smaller variant (``embed_dim``, ``depth``,
            ``num_heads``, ``patch_size``), e.g. for the synthetic world.
        drop_path_rate: the ViT's stochastic depth (0.1).
        input_size: side of the squashed input (384); a multiple of the patch size.
        text_encoder: ``bert-base-uncased`` (a Hugging Face BERT name or a ``save_pretrained`` folder),
            ``open_clip:NAME`` or ``local-dir:PATH`` (an open_clip text tower, e.g. the synthetic CoCa's).
        text_pretrained: the open_clip weights of ``open_clip:NAME`` (a tag or a file; unused otherwise).
        dim: slot and embedding width ``D`` (512).
        num_gaussians, samples_per_gaussian: ``Kg × Ks`` entity slots (paper 18 × 2; released scripts 12 × 3).
        iterations: weight-tied entity-discovery iterations ``T`` (6).
        slot_heads, slot_head_dim, interaction_heads, interaction_head_dim, fusion_heads, fusion_head_dim: the
            attention shapes (4 × 256, 4 × 128, 4 × 256).
        ff_mult, dropout, decoder_layers: feed-forward width factor (4), dropout (0.1), reconstruction MLP depth (4).
        recon_weight: weight of the reconstruction loss (1.0).
        temperature: of the C³ InfoNCE (1.0).
        loss_warmup: iterations over which the loss is scaled up from ``1 / loss_warmup`` to 1 (5000).
        eval_noise: slot noise in validation/test/predict: ``fixed`` (default: one noise drawn from
            ``noise_seed``, deterministic), ``mean`` (Gaussian means only) or ``sample`` (fresh noise, as the
            official code; masks vary between runs). Training always samples.
        noise_seed: seed of the ``fixed`` noise.
        text_lr_mult: lr multiplier of the text encoder and its projection (1.0).
        lr: base learning rate (1e-5): slot module, input projection, fusion and decoder.
        backbone_lr_mult: lr multiplier of the ViT (0.1).
        optimizer, optimizer_kwargs: ``AdamW``; ``None`` = ``{"weight_decay": 1e-4}``.
        lr_schedule: ``cosine`` = SaG's per-iteration cosine over ``trainer.estimated_stepping_batches`` that
            starts after ``loss_warmup``; ``constant`` / ``multistep`` = the epoch-wise schedules of
            :class:`ris.models.base.RISModel`.
        threshold: of the min–max normalised relevance map (0.5).
        **kwargs: the rest of the recipe, see :class:`ris.models.base.RISModel` (``milestones``, ``init_from``, …).
    """

    supervision: ClassVar[Supervision] = "text"

    def __init__(
        self,
        vit: str = "vit_small_patch16_384",
        vit_pretrained: str | None = "timm",
        vit_overrides: dict[str, Any] | None = None,
        drop_path_rate: float = 0.1,
        input_size: int = 384,
        text_encoder: str = "bert-base-uncased",
        text_pretrained: str | None = None,
        dim: int = 512,
        num_gaussians: int = 18,
        samples_per_gaussian: int = 2,
        iterations: int = 6,
        slot_heads: int = 4,
        slot_head_dim: int = 256,
        interaction_heads: int = 4,
        interaction_head_dim: int = 128,
        fusion_heads: int = 4,
        fusion_head_dim: int = 256,
        ff_mult: int = 4,
        dropout: float = 0.1,
        decoder_layers: int = 4,
        recon_weight: float = 1.0,
        temperature: float = 1.0,
        loss_warmup: int = 5000,
        eval_noise: SlotNoise = "fixed",
        noise_seed: int = 0,
        text_lr_mult: float = 1.0,
        lr: float = 1e-5,
        backbone_lr_mult: float = 0.1,
        optimizer: str = "AdamW",
        optimizer_kwargs: dict | None = None,
        lr_schedule: Schedule = "cosine",
        threshold: float = 0.5,
        **kwargs: Any,
    ) -> None:
        if eval_noise not in ("fixed", "mean", "sample"):
            raise ValueError(f"model.eval_noise must be 'fixed', 'mean' or 'sample', got {eval_noise!r}")
        super().__init__(
            lr=lr,
            backbone_lr_mult=backbone_lr_mult,
            optimizer=optimizer,
            optimizer_kwargs={"weight_decay": DEFAULT_WEIGHT_DECAY} if optimizer_kwargs is None else optimizer_kwargs,
            lr_schedule=lr_schedule,
            threshold=threshold,
            **kwargs,
        )
        self.input_size = input_size
        self.recon_weight = recon_weight
        self.temperature = temperature
        self.loss_warmup = loss_warmup
        self.eval_noise: SlotNoise = eval_noise
        self.text_lr_mult = text_lr_mult
        visual = ViTPatchEncoder(vit, vit_pretrained, input_size, drop_path_rate, vit_overrides)
        text = create_text_encoder(text_encoder, text_pretrained, dim)
        self.network = SaGNet(
            visual,
            text,
            dim=dim,
            num_gaussians=num_gaussians,
            samples=samples_per_gaussian,
            iterations=iterations,
            slot_heads=slot_heads,
            slot_head_dim=slot_head_dim,
            interaction_heads=interaction_heads,
            interaction_head_dim=interaction_head_dim,
            fusion_heads=fusion_heads,
            fusion_head_dim=fusion_head_dim,
            ff_mult=ff_mult,
            dropout=dropout,
            decoder_layers=decoder_layers,
            noise_seed=noise_seed,
        )

    @property
    def tokenizer(self) -> Tokenizer:
        """The text encoder's tokenizer (BERT word pieces, or the open_clip tower's)."""
        return self.network.text.tokenizer

    @property
    def input_spec(self) -> InputSpec:
        """SaG squashes the image to ``input_size``² (no letterbox) with the ViT's normalisation (0.5 / 0.5)."""
        visual = self.network.visual
        return InputSpec(self.input_size, visual.mean, visual.std, "squash")

    def forward(
        self, image: torch.Tensor, tokens: torch.Tensor, all_pairs: bool = False, reconstruct: bool = False
    ) -> SaGOutput:
        """The network on ``image`` ``(B, 3, S, S)`` and ``tokens`` ``(B, L)``; slots are sampled in training and
        drawn as ``eval_noise`` says otherwise."""
        noise: SlotNoise = "sample" if self.training else self.eval_noise
        return self.network(image, tokens, all_pairs=all_pairs, reconstruct=reconstruct, noise=noise)

    def training_step(self, batch: RISBatch, batch_idx: int) -> torch.Tensor:
        """C³ over the B × B (image, text) pairs + ``recon_weight`` × reconstruction, scaled by the warm-up.

        Reads ``batch.image`` and ``batch.tokens`` only: SaG never sees a mask.
        """
        out = self(batch.image, batch.tokens, all_pairs=True, reconstruct=self.recon_weight > 0)
        c3 = c3_loss(out.text, out.fused, self.temperature)
        loss = c3
        if out.reconstruction is not None:
            recon = reconstruction_loss(out.reconstruction, out.features)
            loss = loss + self.recon_weight * recon
            self.log("train/recon", recon, batch_size=len(batch))
        self.log("train/c3", c3, prog_bar=True, batch_size=len(batch))
        loss = loss * WarmupCosine(self.loss_warmup).loss_factor(self.global_step)
        self.log("train/loss", loss, batch_size=len(batch))
        return loss

    def relevance(self, batch: RISBatch) -> torch.Tensor:
        """``Σ_k A_fuse · A_slot`` on the patch grid, ``(B, h, w)``."""
        return self(batch.image, batch.tokens).relevance()

    def predict_masks(self, batch: RISBatch) -> list[torch.Tensor]:
        """The relevance map → each sample's original resolution (through ``batch.affine``) → min–max →
        ``≥ threshold``: bool ``(H_i, W_i)`` masks on the CPU."""
        return relevance_to_masks(
            self.relevance(batch), batch.affine, batch.orig_size, self.input_spec.size, self.threshold
        )

    def slot_masks(self, batch: RISBatch, slots: torch.Tensor) -> list[torch.Tensor]:
        """The masks of one entity slot per sample, ``A_slot[b, slots[b]]`` through the same binarisation (the
        "random slot" baseline when ``slots`` is drawn at random)."""
        out = self(batch.image, batch.tokens)
        maps = out.slot_attention[torch.arange(len(batch), device=slots.device), slots].reshape(-1, *out.grid)
        return relevance_to_masks(maps, batch.affine, batch.orig_size, self.input_spec.size, self.threshold)

    def param_groups(self) -> list[ParamGroup]:
        """``head``: entity discovery (input projection + slots), fusion, decoder (× 1); ``backbone``: the ViT
        (× ``backbone_lr_mult``); ``text``: the text encoder and its projection (× ``text_lr_mult``)."""
        net = self.network
        head = [*net.entity_discovery.parameters(), *net.fusion.parameters(), *net.decoder.parameters()]
        return [
            ParamGroup("head", head),
            ParamGroup("backbone", list(net.visual.parameters()), self.backbone_lr_mult),
            ParamGroup("text", list(net.text.parameters()), self.text_lr_mult),
        ]

    def configure_optimizers(self) -> dict:
        """``lr_schedule: cosine``: SaG's per-iteration schedule (:class:`ris.models.sag.loss.WarmupCosine`);
        otherwise the epoch-wise schedules of the base class."""
        if self.lr_schedule != "cosine":
            return super().configure_optimizers()
        optimizer, _ = build_optimizer(
            self.param_groups(),
            lr=self.lr,
            optimizer=self.optimizer_name,
            optimizer_kwargs=self.optimizer_kwargs,
            schedule="constant",
        )
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 1
        scheduler = LambdaLR(optimizer, WarmupCosine(self.loss_warmup, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def setup(self, stage: str) -> None:
        """Report the parameter counts at start-up."""
        rank_zero_info(
            f"SaG ({self.hparams.vit} + {self.hparams.text_encoder}): {count_parameters(self, True):,} trainable "
            f"parameters, {count_parameters(self, False):,} frozen"
        )
