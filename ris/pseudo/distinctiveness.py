"""Distinctiveness-based caption filtering (docs/method.md §6): CoS, UoS, DoS, the threshold τ and the CLIP scorer.

For one image with K masks and one target mask t with C candidate captions c:

- noun scores ``A (K, C)``: A_i(c) = CLIP(masked crop of mask i, "a photo of a <head noun of c>");
- sentence scores ``B (K, C)``: B_i(c) = CLIP(factor-1.2 context crop of mask i, c);
- correctness CoS_t(c) = A_t(c);
- uniqueness UoS_t(c) = B_t(c) / max_{i≠t} B_i(c);
- distinctiveness DoS_t(c) = A_t(c)·B_t(c) / max_{i≠t} A_i(c)·B_i(c).

With a single mask (K = 1) the official code stores the raw A_t(c) values as the score (§6.3): that is what
:func:`distinctiveness` returns then; :func:`uniqueness` is undefined and returns NaN.

Negative scores: CLIP logits are ``logit_scale·cos`` and can be negative; the ratios are then meaningless (a
negative numerator over a negative denominator looks distinctive; a zero denominator gives ±inf). Like the
official code, the scores are used **raw by default**; ``min_score`` (e.g. ``1e-6``) clamps A and B from below
before the products and ratios. :class:`CLIPScorer` counts the negative values it saw.

The threshold is strict: a caption is kept when DoS > τ (default τ = 1.3, §6.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ris.noun_phrases import NounPhrases, RuleNounPhrases, noun_prompt
from ris.open_clip_models import OpenCLIPModel, create_open_clip
from ris.pseudo.crops import make_crops
from ris.tokenizer import Tokenizer, tokenize

DEFAULT_TAU = 1.3


def _prepare(
    noun_scores: torch.Tensor, sentence_scores: torch.Tensor, target: int, min_score: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    noun_scores, sentence_scores = torch.as_tensor(noun_scores), torch.as_tensor(sentence_scores)
    if noun_scores.ndim != 2 or noun_scores.shape != sentence_scores.shape:
        raise ValueError(
            f"noun and sentence scores must both be (K, C), got {tuple(noun_scores.shape)} and "
            f"{tuple(sentence_scores.shape)}"
        )
    if not 0 <= target < noun_scores.shape[0]:
        raise ValueError(f"target mask {target} out of range for K = {noun_scores.shape[0]} masks")
    if min_score is not None:
        noun_scores, sentence_scores = noun_scores.clamp_min(min_score), sentence_scores.clamp_min(min_score)
    return noun_scores, sentence_scores


def _ratio_to_best_other(values: torch.Tensor, target: int) -> torch.Tensor:
    others = torch.cat([values[:target], values[target + 1 :]])
    return values[target] / others.amax(dim=0)


def correctness(
    noun_scores: torch.Tensor, sentence_scores: torch.Tensor, target: int, min_score: float | None = None
) -> torch.Tensor:
    """CoS ``(C,)`` = A_t. Inputs ``(K, C)``."""
    noun_scores, _ = _prepare(noun_scores, sentence_scores, target, min_score)
    return noun_scores[target]


def uniqueness(
    noun_scores: torch.Tensor, sentence_scores: torch.Tensor, target: int, min_score: float | None = None
) -> torch.Tensor:
    """UoS ``(C,)`` = B_t / max_{i≠t} B_i; NaN when K = 1. Inputs ``(K, C)``."""
    _, sentence_scores = _prepare(noun_scores, sentence_scores, target, min_score)
    if sentence_scores.shape[0] == 1:
        return torch.full_like(sentence_scores[0], float("nan"))
    return _ratio_to_best_other(sentence_scores, target)


def distinctiveness(
    noun_scores: torch.Tensor, sentence_scores: torch.Tensor, target: int, min_score: float | None = None
) -> torch.Tensor:
    """DoS ``(C,)`` = A_t·B_t / max_{i≠t} A_i·B_i; the raw A_t when K = 1 (§6.3). Inputs ``(K, C)``."""
    noun_scores, sentence_scores = _prepare(noun_scores, sentence_scores, target, min_score)
    if noun_scores.shape[0] == 1:
        return noun_scores[0]
    return _ratio_to_best_other(noun_scores * sentence_scores, target)


def above_threshold(dos: torch.Tensor | np.ndarray, tau: float = DEFAULT_TAU) -> np.ndarray:
    """Which captions pass: ``dos > tau`` (strict), as a bool array."""
    return np.asarray(dos) > tau


@dataclass
class MaskScores:
    """Scores of one target mask's C captions (arrays ``(C,)`` float32).

    Attributes:
        dos: distinctiveness (raw A_t when ``one_mask``).
        uos: uniqueness (NaN when ``one_mask``).
        cos: correctness A_t.
        nouns: the head noun of each caption.
        one_mask: the image has a single mask (K = 1).
        negatives: how many of the raw A/B values used for this mask were negative.
    """

    dos: np.ndarray
    uos: np.ndarray
    cos: np.ndarray
    nouns: list[str]
    one_mask: bool
    negatives: int

    def kept(self, tau: float = DEFAULT_TAU) -> np.ndarray:
        """``(C,)`` bool: DoS > ``tau``."""
        return above_threshold(self.dos, tau)


class CLIPScorer:
    """Scores captions of all masks of an image with an open_clip contrastive model (CLIP or a CoCa's towers).

    Per image, the K masked crops and K context crops are encoded once (one batched call per ``batch_size``
    chunk), and every distinct text (captions and noun prompts) is encoded once. Scores are
    ``logit_scale.exp()·cos`` (100·cos for OpenAI CLIP).

    Args:
        model: an open_clip name or ``local-dir:PATH`` (built with :func:`create_open_clip`), or an already built
            :class:`OpenCLIPModel` (e.g. the captioner's CoCa).
        pretrained: open_clip pretrained tag or weights file, e.g. OpenAI's TorchScript ``RN50.pt`` (ignored when
            ``model`` is built); OpenAI weights run with QuickGELU (:func:`ris.open_clip_models.needs_quick_gelu`).
        tokenizer: the tokenizer passed to :func:`create_open_clip` (ignored when ``model`` is built).
        setting: the config key of ``pretrained``, named in loading errors.
        noun_extractor: gives the captions' head nouns; default :class:`~ris.noun_phrases.RuleNounPhrases`.
        min_score: optional lower clamp of the raw scores before the ratios (module docstring).
        context_margin: box factor of the sentence crop (1.2, the paper's type-3 crop).
        fill, antialias: crop settings (see :func:`ris.pseudo.crops.make_crops`).
        batch_size: images/texts per encoder call.
    """

    def __init__(
        self,
        model: str | OpenCLIPModel = "RN50",
        pretrained: str | None = "openai",
        tokenizer: str | Tokenizer | None = None,
        device: str = "cpu",
        noun_extractor: NounPhrases | None = None,
        min_score: float | None = None,
        context_margin: float = 1.2,
        fill: Sequence[float] | None = None,
        antialias: bool = False,
        batch_size: int = 256,
        setting: str = "scorer_pretrained",
    ) -> None:
        if not isinstance(model, OpenCLIPModel):
            model = create_open_clip(model, pretrained, tokenizer, setting=setting)
        self.clip = model
        self.device = torch.device(device)
        self.clip.model.to(self.device).eval()
        self.noun_extractor = noun_extractor if noun_extractor is not None else RuleNounPhrases()
        self.min_score = min_score
        self.context_margin = context_margin
        self.fill = fill
        self.antialias = antialias
        self.batch_size = batch_size
        self.context_length = int(getattr(self.clip.model, "context_length", 77))

    @property
    def image_size(self) -> int:
        return self.clip.image_size

    def _encode_images(self, images: torch.Tensor) -> torch.Tensor:
        chunks = [
            self.clip.model.encode_image(images[i : i + self.batch_size].to(self.device), normalize=True)
            for i in range(0, len(images), self.batch_size)
        ]
        return torch.cat(chunks).float()

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = tokenize(self.clip.tokenizer, texts, self.context_length)
        chunks = [
            self.clip.model.encode_text(tokens[i : i + self.batch_size].to(self.device), normalize=True)
            for i in range(0, len(tokens), self.batch_size)
        ]
        return torch.cat(chunks).float()

    @torch.inference_mode()
    def score_crops(
        self, masked_crops: torch.Tensor, context_crops: torch.Tensor, captions: Sequence[Sequence[str]]
    ) -> list[MaskScores]:
        """Scores for every mask of one image.

        Args:
            masked_crops: ``(K, 3, S, S)`` type-0 crops, normalised for this model (S = ``image_size``).
            context_crops: ``(K, 3, S, S)`` context crops (factor 1.2).
            captions: K lists, the candidate captions of each mask.

        Returns:
            K :class:`MaskScores`, one per target mask, each over that mask's captions.
        """
        num_masks = len(masked_crops)
        if len(context_crops) != num_masks or len(captions) != num_masks:
            raise ValueError(
                f"got {num_masks} masked crops, {len(context_crops)} context crops and {len(captions)} caption "
                "lists; expected one of each per mask"
            )
        if num_masks == 0:
            return []
        features = self._encode_images(torch.cat([masked_crops, context_crops]))
        flat = [c for per_mask in captions for c in per_mask]
        nouns = self.noun_extractor.head_nouns(flat)
        prompts = [noun_prompt(n) for n in nouns]
        texts = list(dict.fromkeys([*flat, *prompts]))
        position = {t: i for i, t in enumerate(texts)}
        text_features = self._encode_texts(texts) if texts else features.new_zeros(0, features.shape[1])
        caption_index = torch.tensor([position[c] for c in flat], dtype=torch.long, device=features.device)
        prompt_index = torch.tensor([position[p] for p in prompts], dtype=torch.long, device=features.device)
        scale = self.clip.model.logit_scale.exp().float()
        noun_all = scale * features[:num_masks] @ text_features[prompt_index].T
        sentence_all = scale * features[num_masks:] @ text_features[caption_index].T
        out, start = [], 0
        for target, per_mask in enumerate(captions):
            columns = slice(start, start + len(per_mask))
            start += len(per_mask)
            a, b = noun_all[:, columns].cpu(), sentence_all[:, columns].cpu()
            out.append(
                MaskScores(
                    dos=distinctiveness(a, b, target, self.min_score).numpy(),
                    uos=uniqueness(a, b, target, self.min_score).numpy(),
                    cos=correctness(a, b, target, self.min_score).numpy(),
                    nouns=nouns[columns],
                    one_mask=num_masks == 1,
                    negatives=int((a < 0).sum() + (b < 0).sum()),
                )
            )
        return out

    def score_image(
        self, image: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor, captions: Sequence[Sequence[str]]
    ) -> list[MaskScores]:
        """Build the masked and context crops of ``masks`` ``(K, H, W)`` on ``image`` (uint8 RGB) and score."""
        crops = make_crops(
            image,
            masks,
            self.clip.image_size,
            self.clip.mean,
            self.clip.std,
            margins=(1.0, self.context_margin),
            fill=self.fill,
            antialias=self.antialias,
        )
        return self.score_crops(crops[0], crops[1], captions)
