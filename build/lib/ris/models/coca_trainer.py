"""Training an open_clip CoCa captioner with open_clip's CoCa loss (contrastive + captioning).

This is how the synthetic world's foundation model is made (``configs/synthetic/coca.yaml``), and it works the same
for fine-tuning a real CoCa on the user's own captions. At the end of a fit the model is written as an open_clip
``local-dir:`` folder (``export_dir``) that the captioner adapter, the CLIP scorer and the RIS backbones load.
"""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule
from open_clip.loss import CoCaLoss

from ris.open_clip_models import create_open_clip, save_local_dir
from ris.synthetic.vocabulary import world_tokenizer
from ris.tokenizer import Tokenizer, tokenize

SYNTHETIC_VOCABULARY = "synthetic-world"


def _tokenizer(vocabulary: str | None) -> Tokenizer | str | None:
    return world_tokenizer() if vocabulary == SYNTHETIC_VOCABULARY else vocabulary


class CoCaTrainer(LightningModule):
    """Fit a CoCa on ``(crop, caption)`` batches.

    Args:
        model_name: open_clip CoCa architecture (``synthetic-coca``, ``coca_ViT-B-32``, ...) or ``local-dir:PATH``.
        pretrained: pretrained tag or local checkpoint file to start from (``None`` = random init).
        vocabulary: ``"synthetic-world"`` (the world's word-level tokenizer), a vocabulary JSON path, or ``None``
            for open_clip's BPE.
        context_length: token length of the training captions (SOT and EOT included).
        lr, weight_decay: AdamW settings; ``warmup_steps`` of linear warm-up, then cosine decay to 0 at
            ``trainer.max_steps``.
        caption_loss_weight, clip_loss_weight: CoCa loss weights.
        export_dir: where the trained model is written as a ``local-dir:`` folder at the end of the fit.

    Batches are dicts with ``image`` ``(B, 3, S, S)`` (normalised with the model's mean/std) and ``text`` (``B``
    strings).
    """

    def __init__(
        self,
        model_name: str = "synthetic-coca",
        pretrained: str | None = None,
        vocabulary: str | None = SYNTHETIC_VOCABULARY,
        context_length: int = 20,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_steps: int = 20,
        caption_loss_weight: float = 2.0,
        clip_loss_weight: float = 1.0,
        export_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        built = create_open_clip(model_name, pretrained=pretrained, tokenizer=_tokenizer(vocabulary))
        self.model = built.model.train()  # create_open_clip returns eval mode; Lightning keeps submodule modes
        self.tokenizer = built.tokenizer
        self.image_size = built.image_size
        self.mean, self.std = built.mean, built.std
        self.loss_fn = CoCaLoss(caption_loss_weight, clip_loss_weight, pad_id=self.tokenizer.pad_id)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        tokens = tokenize(self.tokenizer, batch["text"], self.hparams.context_length).to(self.device)
        out = self.model(batch["image"], tokens)
        clip_loss, caption_loss = self.loss_fn(
            out["image_features"], out["text_features"], out["logits"], out["labels"], out["logit_scale"]
        )
        size = len(batch["text"])
        self.log("train/clip_loss", clip_loss, batch_size=size)
        self.log("train/caption_loss", caption_loss, prog_bar=True, batch_size=size)
        return clip_loss + caption_loss

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = max(self.trainer.max_steps, 1) if self._trainer is not None else 1
        warmup = max(self.hparams.warmup_steps, 1)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min((step - warmup) / max(total - warmup, 1), 1.0)
            return 0.5 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item())

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_fit_end(self) -> None:
        """Write the trained model as a ``local-dir:`` folder (rank zero, atomically)."""
        if self.hparams.export_dir and self.trainer.is_global_zero:
            self.model.eval()
            save_local_dir(self.hparams.export_dir, self.hparams.model_name, self.model, self.tokenizer)
