"""Global-Local CLIP (Yu, Seo, Son, CVPR 2023): the zero-shot, training-free RIS baseline (docs/baselines.md §2).

For every image a mask source proposes masks; every proposal ``m`` gets a visual feature mixing a **global-context**
and a **local-context** CLIP feature, every expression a text feature mixing the **sentence** and its **target noun
phrase**, and the proposal with the highest cosine similarity is the prediction:

- f^G (§2.3): the whole image, squashed to the CLIP input size, runs through the image tower; **ViT** (CLIP or a
  CoCa's attention-pooled ViT): before each of the last ``masked_layers`` (k = 3) residual blocks every patch token
  is multiplied by the proposal resized to the patch grid (bilinear, soft), the class token untouched; the pooled,
  projected output is f^G. **ModifiedResNet**: the feature map before the attention pool is L2-normalised per
  position, multiplied by the resized proposal and attention-pooled.
- f^L (§2.4): pixels outside the proposal are set to the mean colour (0 after normalisation), the image is cropped
  to the proposal's tight box, squashed to the CLIP input size and encoded.
- f = α·f^G + (1 − α)·f^L (§2.5), with f^L L2-normalised first for a ResNet tower (ViT: raw features mixed).
  α per evaluation set by the longest matching prefix of the set's dataset label: 0.95 for ``refcoco`` and
  ``refcoco+``, 0.85 for ``refcocog`` and everything else (the official PhraseCut script's value).
- t = β·t^G + (1 − β)·t^L (§2.6), β = 0.5: t^G encodes the lower-cased, whitespace-normalised expression, t^L its
  target noun phrase (:mod:`ris.noun_phrases`).
- score = 100·cos(f, t); the arg-max proposal (the first on ties, i.e. the source's ranking) is the prediction.

Framework decisions (docs/baselines.md §2.10): CLIP normalisation by default (``normalization="imagenet"`` reproduces
the official quirk); tight boxes; an image without proposals predicts an empty mask, which scores IoU 0 (the official
script skips such samples). The original-resolution image is recovered from the batch's letterboxed input with the
inverse letterbox, so choose ``input_size`` at least as large as the images' longer side (640, the default, for COCO) to
propose masks on undegraded pixels. Predictions are masks at the original resolution scored by the same
:class:`ris.evaluation.Evaluator` as every trained model, so ``ris test`` / ``ris validate`` report the same metrics.
Proposals and visual features are cached per image (keyed by the batch's ``image_id``, else by the input's content), so
the expressions of one image share one proposal pass.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer

from ris.batch import RISBatch
from ris.contracts import InputSpec, Supervision
from ris.letterbox import CLIP_MEAN, CLIP_STD, unletterbox
from ris.noun_phrases import make_noun_phrases, normalize_text
from ris.open_clip_models import OpenCLIPModel, create_open_clip
from ris.pseudo.crops import mask_boxes
from ris.pseudo.masks import MaskPolicy, MaskSource, propose_masks
from ris.tokenizer import Tokenizer, tokenize

from .base import RISModule

DEFAULT_ALPHA = {"refcoco": 0.95, "refcoco+": 0.95, "refcocog": 0.85, "default": 0.85}


def alpha_for(alpha: dict[str, float], dataset: str) -> float:
    """The α of the longest key that prefixes ``dataset`` (``refcocog-umd`` → ``refcocog``), else ``default``."""
    matches = [key for key in alpha if key != "default" and dataset.startswith(key)]
    if matches:
        return alpha[max(matches, key=len)]
    if "default" not in alpha:
        raise ValueError(f"no alpha for dataset {dataset!r}: add it or a 'default' entry to alpha {alpha}")
    return alpha["default"]


class ProposalScorer(Protocol):
    """What :class:`GlobalLocalCLIP` needs to score proposals (a stub in tests, :class:`GlobalLocalFeatures`)."""

    def visual(self, image: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def text(self, texts: Sequence[str]) -> torch.Tensor: ...


class GlobalLocalFeatures:
    """The global- and local-context visual features and the text features of an open_clip model.

    Args:
        clip: the model and its tokenizer.
        masked_layers: k, the number of last ViT blocks that see masked patch tokens (ignored for a ResNet).
        mean, std: input normalisation of the CLIP tower.
        batch_size: proposals (crops) per encoder call.
    """

    def __init__(
        self,
        clip: OpenCLIPModel,
        masked_layers: int = 3,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        batch_size: int = 64,
    ) -> None:
        visual = clip.model.visual
        if not isinstance(visual, (VisionTransformer, ModifiedResNet)):
            raise TypeError(
                f"Global-Local CLIP supports ViT and ModifiedResNet image towers; {clip.name} has "
                f"{type(visual).__name__}"
            )
        if isinstance(visual, VisionTransformer) and not 0 <= masked_layers <= len(visual.transformer.resblocks):
            raise ValueError(
                f"masked_layers must be in [0, {len(visual.transformer.resblocks)}] for {clip.name}, "
                f"got {masked_layers}"
            )
        self.clip = clip
        self.masked_layers = masked_layers
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.batch_size = batch_size
        self.context_length = int(getattr(clip.model, "context_length", 77))
        self.is_vit = isinstance(visual, VisionTransformer)

    @property
    def size(self) -> int:
        return self.clip.image_size

    @property
    def device(self) -> torch.device:
        return next(self.clip.model.parameters()).device

    def grid(self) -> int:
        """Side of the grid the proposals are resized to (ViT patch grid, ResNet final feature map)."""
        visual = self.clip.model.visual
        return visual.grid_size[0] if self.is_vit else self.size // 32

    def _normalise(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean.to(image.device)) / self.std.to(image.device)

    def global_features(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """f^G ``(K, D)`` of ``masks`` ``(K, H, W)`` bool on ``image`` ``(3, H, W)`` float RGB in [0, 1]."""
        pixels = F.interpolate(image[None], size=(self.size, self.size), mode="bilinear", antialias=True)
        pixels = self._normalise(pixels.clamp(0, 1)).to(self.device)
        g = self.grid()
        weights = F.interpolate(masks[:, None].float(), size=(g, g), mode="bilinear", antialias=True)[:, 0]
        weights = weights.clamp(0, 1).to(self.device)
        chunks = [self._global_chunk(pixels, weights[i : i + self.batch_size])
                  for i in range(0, len(weights), self.batch_size)]
        return torch.cat(chunks).float()

    def _global_chunk(self, pixels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        visual = self.clip.model.visual
        if not self.is_vit:
            x = visual.stem(pixels)
            x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))
            x = F.normalize(x, dim=1).expand(len(weights), -1, -1, -1)
            return visual.attnpool(x * weights[:, None])
        blocks = visual.transformer.resblocks
        first_masked = len(blocks) - self.masked_layers
        x = visual._embeds(pixels)
        batch_first = getattr(visual.transformer, "batch_first", True)
        for block in blocks[:first_masked]:
            x = block(x) if batch_first else block(x.transpose(0, 1)).transpose(0, 1)
        x = x.expand(len(weights), -1, -1)
        token_weights = torch.cat([weights.new_ones(len(weights), 1), weights.flatten(1)], dim=1)[..., None]
        for block in blocks[first_masked:]:
            x = x * token_weights
            x = block(x) if batch_first else block(x.transpose(0, 1)).transpose(0, 1)
        pooled, _ = visual._pool(x)
        return pooled @ visual.proj if visual.proj is not None else pooled

    def local_crops(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``(K, 3, S, S)`` normalised crops: outside the mask the mean colour, cropped to the tight box, squashed."""
        normalised = self._normalise(image)
        boxes = mask_boxes(masks)
        crops = []
        for mask, (x0, y0, x1, y1) in zip(masks, boxes.tolist()):
            filled = torch.where(mask.to(image.device)[None], normalised, torch.zeros_like(normalised))
            crop = filled[:, y0 : y1 + 1, x0 : x1 + 1]
            crops.append(F.interpolate(crop[None], size=(self.size, self.size), mode="bilinear", antialias=True)[0])
        return torch.stack(crops)

    def local_features(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """f^L ``(K, D)``: the image tower's pooled output of :meth:`local_crops` (L2-normalised for a ResNet)."""
        crops = self.local_crops(image, masks)
        chunks = [self.clip.model.encode_image(crops[i : i + self.batch_size].to(self.device), normalize=False)
                  for i in range(0, len(crops), self.batch_size)]
        features = torch.cat(chunks).float()
        return features if self.is_vit else F.normalize(features, dim=-1)

    @torch.inference_mode()
    def visual(self, image: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f^G, f^L)``, each ``(K, D)``, for ``masks`` ``(K, H, W)`` bool on ``image`` ``(3, H, W)`` in [0, 1]."""
        return self.global_features(image, masks), self.local_features(image, masks)

    @torch.inference_mode()
    def text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unnormalised text features ``(N, D)``."""
        tokens = tokenize(self.clip.tokenizer, list(texts), self.context_length).to(self.device)
        chunks = [self.clip.model.encode_text(tokens[i : i + self.batch_size], normalize=False)
                  for i in range(0, len(tokens), self.batch_size)]
        return torch.cat(chunks).float()


@dataclass
class ImageProposals:
    """The proposals of one image and their visual features.

    Attributes:
        masks: ``(K, H, W)`` bool at original resolution (K may be 0).
        global_features, local_features: ``(K, D)`` f^G and f^L (``None`` when K = 0).
    """

    masks: torch.Tensor
    global_features: torch.Tensor | None
    local_features: torch.Tensor | None


@dataclass(frozen=True)
class ProposalPick:
    """One expression's proposal choice: ``proposals`` K, IoU of the chosen one, IoU of the best one (the oracle),
    and whether the chosen one is a best one (with IoU > 0)."""

    proposals: int
    chosen_iou: float
    best_iou: float
    picked_best: bool


class GlobalLocalCLIP(RISModule):
    """Zero-shot RIS by scoring mask proposals with CLIP (see the module docstring); evaluation and prediction only.

    Args:
        masks: the mask source (any :class:`ris.pseudo.masks.MaskSource`: SAM, CutLER-guided SAM, the
            unsupervised segmenter, ground-truth instances).
        clip_model: open_clip name (``ViT-B-32``, ``RN50``, ``coca_ViT-L-14``, ``tiny-ViT``) or ``local-dir:PATH``.
        clip_pretrained: open_clip pretrained tag or a weights file, e.g. OpenAI's TorchScript ``ViT-B-32.pt``
            (``None``: random weights); OpenAI weights run with QuickGELU (docs/baselines.md §2).
        clip_tokenizer: word vocabulary JSON (default: the model's own tokenizer).
        mask_policy: proposal filtering (default: empty and whole-image masks and duplicates dropped, at most 100
            masks, FreeSOLO's limit).
        alpha: global/local visual weight: one value, or per dataset-label prefix with a ``default`` entry
            (default 0.95 RefCOCO/+, 0.85 otherwise).
        beta: sentence/noun-phrase text weight (0.5).
        masked_layers: k, the last ViT blocks with masked patch tokens (3).
        normalization: ``clip`` (the model's mean/std) or ``imagenet`` (the official code's quirk).
        noun_phrases: ``rules`` or ``spacy[:model]`` (:func:`ris.noun_phrases.make_noun_phrases`).
        known_nouns: nouns the rule extractor treats as heads (e.g. a synthetic world's categories).
        batch_size: proposals per CLIP call.
        cache_images: images whose proposals and features stay cached across batches.
        input_size: side of the letterboxed input the datamodule builds; the original image is recovered from it,
            so choose it at least as large as the images' longer side (640 for COCO).
    """

    supervision: ClassVar[Supervision] = "none"

    def __init__(
        self,
        masks: MaskSource,
        clip_model: str = "ViT-B-32",
        clip_pretrained: str | None = "openai",
        clip_tokenizer: str | None = None,
        mask_policy: MaskPolicy | None = None,
        alpha: float | dict[str, float] | None = None,
        beta: float = 0.5,
        masked_layers: int = 3,
        normalization: Literal["clip", "imagenet"] = "clip",
        noun_phrases: str = "rules",
        known_nouns: list[str] | None = None,
        batch_size: int = 64,
        cache_images: int = 16,
        input_size: int = 640,
    ) -> None:
        super().__init__()
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        if normalization not in ("clip", "imagenet"):
            raise ValueError(f"normalization must be 'clip' or 'imagenet', got {normalization!r}")
        if alpha is None:
            alphas = dict(DEFAULT_ALPHA)
        else:
            alphas = {"default": float(alpha)} if isinstance(alpha, (float, int)) else dict(alpha)
        bad = {k: v for k, v in alphas.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"alpha values must be in [0, 1], got {bad}")
        self.save_hyperparameters(ignore=["masks", "mask_policy"])
        self.masks = masks
        self.mask_policy = mask_policy if mask_policy is not None else MaskPolicy(max_masks=100)
        self.alpha = alphas
        self.beta = beta
        self.phrases = make_noun_phrases(noun_phrases, known_nouns)
        clip = create_open_clip(clip_model, clip_pretrained, clip_tokenizer, setting="clip_pretrained")
        clip.model.requires_grad_(False)
        self.clip_model = clip.model
        stats = (clip.mean, clip.std) if normalization == "clip" else (open_clip.IMAGENET_MEAN, open_clip.IMAGENET_STD)
        self.scorer: ProposalScorer = GlobalLocalFeatures(clip, masked_layers, *stats, batch_size=batch_size)
        self._tokenizer = clip.tokenizer
        self.cache_images = cache_images
        self._cache: OrderedDict[tuple[str, str], ImageProposals] = OrderedDict()
        self._input_spec = InputSpec(input_size, CLIP_MEAN, CLIP_STD, "letterbox")

    @property
    def tokenizer(self) -> Tokenizer:
        """The CLIP tokenizer (datamodules tokenize with it; the model re-encodes the raw texts itself)."""
        return self._tokenizer

    @property
    def input_spec(self) -> InputSpec:
        """The letterboxed, CLIP-normalised input of ``input_size`` the proposals are recovered from."""
        return self._input_spec

    def proposals(self, image: torch.Tensor, image_key: tuple[str, str], image_id: str) -> ImageProposals:
        """Proposals and features of ``image`` ``(3, H, W)`` float RGB in [0, 1] (cached by ``image_key``)."""
        if image_key in self._cache:
            self._cache.move_to_end(image_key)
            return self._cache[image_key]
        rgb = (image * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        found = propose_masks(self.masks, np.ascontiguousarray(rgb), image_id, self.mask_policy)
        masks = torch.from_numpy(found.masks)
        if len(masks) == 0:
            entry = ImageProposals(masks, None, None)
        else:
            entry = ImageProposals(masks, *self.scorer.visual(image, masks))
        self._cache[image_key] = entry
        while len(self._cache) > self.cache_images:
            self._cache.popitem(last=False)
        return entry

    def original_images(self, batch: RISBatch) -> list[torch.Tensor]:
        """The batch's images at original resolution, ``(3, H_i, W_i)`` float RGB in [0, 1] (inverse letterbox)."""
        mean = torch.tensor(self.input_spec.mean, device=batch.image.device).view(3, 1, 1)
        std = torch.tensor(self.input_spec.std, device=batch.image.device).view(3, 1, 1)
        raw = (batch.image.float() * std + mean).cpu()
        return [
            unletterbox(raw[b], batch.affine[b].cpu(), (int(h), int(w))).clamp(0, 1)
            for b, (h, w) in enumerate(batch.orig_size.tolist())
        ]

    def _image_key(self, batch: RISBatch, index: int) -> tuple[str, str]:
        image_id = batch.image_id[index] if batch.image_id else ""
        if image_id:
            return f"{batch.dataset[index]}/{batch.split[index]}", image_id
        digest = hashlib.sha1(batch.image[index].detach().cpu().numpy().tobytes()).hexdigest()
        return "content", digest

    def scored_proposals(self, batch: RISBatch) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per sample: its image's proposals ``(K, H_i, W_i)`` bool and their scores ``(K,)`` against its expression
        (``None`` when the image has no proposal)."""
        images = self.original_images(batch)
        sentences = [normalize_text(t) for t in batch.text]
        phrases = self.phrases.target_phrases(batch.text)
        features = self.scorer.text([*sentences, *phrases])
        n = len(sentences)
        text = F.normalize(self.beta * features[:n] + (1 - self.beta) * features[n:], dim=-1)
        out = []
        for b, image in enumerate(images):
            key = self._image_key(batch, b)
            image_id = batch.image_id[b] if batch.image_id and batch.image_id[b] else key[1]
            found = self.proposals(image, key, image_id)
            if found.global_features is None or found.local_features is None:
                out.append((torch.zeros((0, *image.shape[1:]), dtype=torch.bool), None))
                continue
            alpha = alpha_for(self.alpha, batch.dataset[b])
            visual = alpha * found.global_features + (1 - alpha) * found.local_features
            out.append((found.masks, 100 * F.normalize(visual, dim=-1) @ text[b].to(visual.device)))
        return out

    def select(self, batch: RISBatch) -> list[torch.Tensor]:
        """The chosen proposal of every sample as ``(H_i, W_i)`` bool (all false when its image has no proposal)."""
        return [
            torch.zeros(masks.shape[1:], dtype=torch.bool) if scores is None else masks[int(scores.argmax())].clone()
            for masks, scores in self.scored_proposals(batch)
        ]

    def picks(self, batch: RISBatch) -> list[ProposalPick]:
        """How well the baseline picks among its proposals, per sample of a batch with ``gt_masks``
        (docs/synthetic_table.md: the oracle ceiling and the pick accuracy)."""
        if batch.gt_masks is None:
            raise ValueError("picks() needs ground-truth masks (an evaluation batch)")
        out = []
        for (masks, scores), gt in zip(self.scored_proposals(batch), batch.gt_masks):
            if scores is None:
                out.append(ProposalPick(0, 0.0, 0.0, False))
                continue
            gt = gt.to(masks.device).bool()
            inter = (masks & gt).flatten(1).sum(1).double()
            union = (masks | gt).flatten(1).sum(1).double()
            ious = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(union))
            chosen, best = int(scores.argmax()), float(ious.max())
            out.append(ProposalPick(len(masks), float(ious[chosen]), best, float(ious[chosen]) == best and best > 0))
        return out

    def on_validation_epoch_start(self) -> None:
        self._cache.clear()

    def on_test_epoch_start(self) -> None:
        self._cache.clear()

    def predict_masks(self, batch: RISBatch) -> list[torch.Tensor]:
        """Bool masks ``(H_i, W_i)`` at each sample's original resolution (CPU): the chosen proposals."""
        return self.select(batch)
