"""The Pseudo-RIS generator as a LightningModule: masks → crops → candidate captions → DoS/UoS/CoS → records.

:class:`PseudoRISGenerator` is run by Lightning's ``predict`` (``ris generate``, :mod:`ris.pseudo.generate_command`):
every ``predict_step`` gets a list of :class:`ris.pseudo.images.ImageItem` and returns one
:class:`ris.pseudo.shards.ImageResult` per image, which the shard writer callback stores. Per image:

1. the mask source proposes masks and the :class:`ris.pseudo.masks.MaskPolicy` filters them (drops empty, tiny
   and whole-image masks and duplicates; like the official code it keeps every other mask unless an explicit
   ``max_masks`` cap is set);
2. the crops of every mask (the paper's 4 crop types) are captioned by the CoCa captioner (a beam caption plus one
   distinctive sample per top-k / top-p setting; contrast only for 2 ≤ K ≤ the decoder's ``contrast_max_masks``,
   30 as in the official code, plain top-k / top-p samples above);
3. the CLIP scorer computes DoS, UoS and CoS of every caption against every mask;
4. one :class:`ris.pseudo.records.PseudoRecord` per mask keeps the mask (RLE), box, all captions and scores.

Images are never a reason to stop the run (the policy for bad input): a missing file or broken link is skipped as
``missing_file``, an image above the pixel budget (decoded-size limit, :mod:`ris.formats.images`) as ``too_large``
before it is decoded, an undecodable file as ``unreadable``, an image whose source returns no mask as
``no_masks``, one without CutLER guides as ``no_cutler_guides``, one whose masks are all dropped as
``all_masks_dropped``, and any error of the mask source on one image (e.g. an image missing from a GT annotation
file, a model failing on it) as ``mask_source_error``; each skip is counted in the manifest with its reason and
logged, and a rerun does not retry it. Images are decoded upright (EXIF), high-bit-depth files scaled to 8 bits,
grayscale, palette and RGBA converted to RGB; masks touching the border are kept.

Randomness: the captions of an image are drawn from a generator seeded with :func:`image_seed` (``seed`` ⊕ image
id), so results do not depend on the process, the batch or the order in which images are processed.

Devices: the captioner and scorer are built in ``setup`` on the process's device; torch models of the mask source
(its ``model`` attribute, or that of a wrapped ``inner`` source) are moved there too.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
from dataclasses import asdict
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

import ris
from ris.noun_phrases import check_noun_phrases, make_noun_phrases, noun_phrase_provenance
from ris.open_clip_models import create_open_clip, planned_activation
from ris.pseudo.captioner import PRECISIONS, CoCaCaptioner, DecodingSettings
from ris.pseudo.crops import PAPER_MARGINS, make_crops
from ris.pseudo.distinctiveness import DEFAULT_TAU, CLIPScorer, MaskScores
from ris.pseudo.images import ImageItem
from ris.pseudo.masks import MaskPolicy, MaskProposals, MaskSource, propose_masks
from ris.pseudo.provenance import checkpoint_id, package_version, with_checkpoint_hashes
from ris.pseudo.records import PseudoRecord, mask_box, mask_to_rle
from ris.pseudo.shards import ImageResult

log = logging.getLogger(__name__)

SCORE_DECIMALS = 5


def image_seed(seed: int, image_id: str) -> int:
    """The per-image seed ``seed ⊕ image_id``: 63 bits of sha256 of ``"{seed}:{image_id}"``."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _scores(values: np.ndarray) -> list[float | None]:
    """JSON-safe scores: rounded floats, ``None`` for NaN/inf (e.g. UoS of a single mask)."""
    return [round(float(v), SCORE_DECIMALS) if math.isfinite(float(v)) else None for v in values]


def _move_source_models(source: Any, device: torch.device) -> None:
    model = getattr(source, "model", None)
    if isinstance(model, torch.nn.Module):
        model.to(device)
    inner = getattr(source, "inner", None)
    if inner is not None:
        _move_source_models(inner, device)


class PseudoRISGenerator(pl.LightningModule):
    """Generates Pseudo-RIS records for images (docs/method.md §1–§7).

    Args:
        masks: the mask source (SAM, CutLER-guided SAM, GT masks, an unsupervised segmenter).
        captioner: open_clip CoCa name or ``local-dir:PATH`` (e.g. ``coca_ViT-L-14``).
        captioner_pretrained: pretrained tag or checkpoint file of the captioner (``None`` = random weights).
        captioner_tokenizer: word vocabulary JSON for the captioner (``None`` = its own tokenizer).
        decoding: caption decoding settings (default: the paper's 1 beam + 5 top-k + 5 top-p, seq_len 30).
        scorer: open_clip CLIP name or ``local-dir:PATH`` for DoS/UoS/CoS (e.g. ``RN50``); ``None`` = the
            captioner's own contrastive towers (the synthetic world).
        scorer_pretrained, scorer_tokenizer: as for the captioner.
        mask_policy: mask filtering (default :class:`ris.pseudo.masks.MaskPolicy`: no cap on the mask count).
        margins: crop box factors of the captioner's crops; entry 0 is the masked crop, the last one is also the
            scorer's sentence crop (the paper's 1.0, 1.0, 1.1, 1.2).
        fill: raw RGB fill of masked background and padding (``None`` = the official value).
        min_score: optional lower clamp of CLIP scores before the DoS ratios (``None`` = raw, official).
        tau: DoS threshold used for the summary counts (records keep every score; τ is chosen again at training).
        seed: generation seed; each image uses :func:`image_seed`.
        max_pairs: captioner memory bound (does not change the captions).
        images_per_decode: images of a predict batch whose captions decode in one batch (larger products for a
            GPU; each image keeps its own random stream, so the captions do not change, up to float rounding).
        sync_every: steps between the sampler's device reads (None = 1 on the CPU, 8 on a GPU; tokens unchanged).
        precision: ``"float32"``, or ``"bfloat16"`` / ``"float16"`` autocast for the captioner and the scorer.
        noun_extractor: how the head nouns of the noun prompts are found (docs/method.md §5): ``spacy`` /
            ``spacy:<model>`` (the official rule; ``en_core_web_lg`` by default, a package or pipeline folder) or
            ``rules`` (the rule-based fallback, no model); checked when the generator is created, so a missing
            spaCy or model stops the run at once with the install command.
        known_nouns: nouns the rule-based noun extractor takes as heads whenever they occur (e.g. the synthetic
            world's categories, so "a photo of a star" gives "star"); ``None`` = the generic rule only.
    """

    def __init__(
        self,
        masks: MaskSource,
        captioner: str = "coca_ViT-L-14",
        captioner_pretrained: str | None = None,
        captioner_tokenizer: str | None = None,
        decoding: DecodingSettings | None = None,
        scorer: str | None = "RN50",
        scorer_pretrained: str | None = "openai",
        scorer_tokenizer: str | None = None,
        mask_policy: MaskPolicy | None = None,
        margins: tuple[float, ...] = PAPER_MARGINS,
        fill: tuple[float, float, float] | None = None,
        min_score: float | None = None,
        tau: float = DEFAULT_TAU,
        seed: int = 0,
        max_pairs: int = 2048,
        noun_extractor: str = "rules",
        known_nouns: list[str] | None = None,
        images_per_decode: int = 8,
        sync_every: int | None = None,
        precision: str = "float32",
    ) -> None:
        super().__init__()
        check_noun_phrases(noun_extractor)
        self.masks = masks
        self.captioner_name = captioner
        self.captioner_pretrained = captioner_pretrained
        self.captioner_tokenizer = captioner_tokenizer
        self.decoding = decoding if decoding is not None else DecodingSettings()
        self.scorer_name = scorer
        self.scorer_pretrained = scorer_pretrained
        self.scorer_tokenizer = scorer_tokenizer
        self.mask_policy = mask_policy if mask_policy is not None else MaskPolicy()
        self.margins = tuple(float(m) for m in margins)
        self.fill = fill
        self.min_score = min_score
        self.tau = tau
        self.seed = seed
        self.max_pairs = max_pairs
        self.noun_extractor = noun_extractor
        self.known_nouns = None if known_nouns is None else sorted(set(known_nouns))
        if images_per_decode < 1:
            raise ValueError(f"images_per_decode must be >= 1, got {images_per_decode}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.images_per_decode = images_per_decode
        self.sync_every = sync_every
        self.precision = precision
        self.captioner: CoCaCaptioner | None = None
        self.scorer: CLIPScorer | None = None

    def setup(self, stage: str) -> None:
        """Build the captioner and the scorer on this process's device."""
        self.build(self.device)

    def build(self, device: torch.device | str) -> None:
        """Build the captioner and scorer on ``device`` and move the mask source's models there (idempotent)."""
        if self.captioner is not None:
            return
        device = torch.device(device)
        _move_source_models(self.masks, device)
        coca = create_open_clip(self.captioner_name, self.captioner_pretrained, self.captioner_tokenizer, device,
                                setting="captioner_pretrained")
        self.captioner = CoCaCaptioner.from_model(coca, self.decoding, self.max_pairs, self.sync_every, self.precision)
        scorer_model = coca if self.scorer_name is None else self.scorer_name
        self.scorer = CLIPScorer(
            scorer_model, self.scorer_pretrained, self.scorer_tokenizer, device=str(device), min_score=self.min_score,
            context_margin=self.margins[-1], fill=self.fill,
            noun_extractor=make_noun_phrases(self.noun_extractor, self.known_nouns),
        )

    def components(self) -> tuple[CoCaCaptioner, CLIPScorer]:
        """The built captioner and scorer (``setup`` / :meth:`build` must have run)."""
        if self.captioner is None or self.scorer is None:
            raise RuntimeError(f"{type(self).__name__}: call build(device) (or run it in a Trainer) before generating")
        return self.captioner, self.scorer

    def provenance(self) -> dict[str, Any]:
        """Everything that determines the records: models and checkpoint hashes, settings, seed, versions."""
        return {
            "generator": type(self).__name__,
            "versions": {name: package_version(name) for name in ("pseudo-ris", "torch", "open_clip_torch",
                                                           "segment-anything")} | {"ris": ris.__version__},
            "masks": {"name": self.masks.name, **with_checkpoint_hashes(self.masks.settings())},
            "mask_policy": self.mask_policy.settings(),
            "captioner": {
                "model": checkpoint_id(self.captioner_name),
                "pretrained": checkpoint_id(self.captioner_pretrained),
                "tokenizer": checkpoint_id(self.captioner_tokenizer),
            },
            "decoding": asdict(self.decoding),
            "samplers": self.decoding.sampler_names(),
            "scorer": self._scorer_provenance(),
            "margins": list(self.margins),
            "fill": None if self.fill is None else list(self.fill),
            "min_score": self.min_score,
            "nouns": noun_phrase_provenance(self.noun_extractor, self.known_nouns),
            "precision": self.precision,
            "tau": self.tau,
            "seed": self.seed,
        }

    def _scorer_provenance(self) -> dict[str, Any]:
        if self.scorer_name is None:
            return {"model": "the captioner's contrastive towers",
                    "activation": planned_activation(self.captioner_name, self.captioner_pretrained)}
        return {
            "model": checkpoint_id(self.scorer_name),
            "pretrained": checkpoint_id(self.scorer_pretrained),
            "tokenizer": checkpoint_id(self.scorer_tokenizer),
            "activation": planned_activation(self.scorer_name, self.scorer_pretrained),
        }

    def predict_step(self, batch: list[ImageItem], batch_idx: int = 0) -> list[ImageResult]:
        """One :class:`ImageResult` per image of ``batch``; up to ``images_per_decode`` images caption together."""
        results: dict[int, ImageResult] = {}
        pending: list[tuple[int, ImageItem, MaskProposals]] = []
        for index, item in enumerate(batch):
            proposals = self._masks(item)
            if isinstance(proposals, ImageResult):
                results[index] = proposals
            else:
                pending.append((index, item, proposals))
        for start in range(0, len(pending), self.images_per_decode):
            group = pending[start : start + self.images_per_decode]
            captions = self._captions([(item, proposals.masks) for _, item, proposals in group])
            for (index, item, proposals), image_captions in zip(group, captions):
                results[index] = self._scored(item, proposals, image_captions)
        return [results[index] for index in range(len(batch))]

    def generate_image(self, item: ImageItem) -> ImageResult:
        """Masks, captions, scores and records of one image (or a counted skip)."""
        return self.predict_step([item])[0]

    def _masks(self, item: ImageItem) -> MaskProposals | ImageResult:
        """The image's mask proposals, or the skip result."""
        if item.image is None:
            return self._skip(item, item.skip_reason or "unreadable", item.error or "")
        try:
            proposals = propose_masks(self.masks, item.image, item.image_id, self.mask_policy)
        except Exception as err:  # a mask model failing on one image costs that image, counted with its reason
            return self._skip(item, "mask_source_error", f"{type(err).__name__}: {err}")
        if proposals.skipped:
            return self._skip(item, proposals.skip_kind or "no_masks", proposals.skip_reason or "", proposals.dropped)
        return proposals

    def _scored(self, item: ImageItem, proposals: MaskProposals, captions: list[list[str]]) -> ImageResult:
        captioner, scorer = self.components()
        masks = proposals.masks
        with captioner.decoder.autocast_context():
            scores = scorer.score_image(item.image, masks, captions)
        image_bytes = None if item.file_bytes is None else base64.b64encode(item.file_bytes).decode("ascii")
        records = [self._record(item, k, masks, captions[k], scores[k], image_bytes) for k in range(len(masks))]
        return ImageResult(item.image_id, records, masks_dropped=proposals.dropped)

    def _skip(self, item: ImageItem, reason: str, message: str, dropped: dict[str, int] | None = None) -> ImageResult:
        log.info("image %s skipped (%s): %s", item.image_id, reason, message)
        return ImageResult(item.image_id, skip_reason=reason, masks_dropped=dropped or {}, message=message)

    def _captions(self, images: list[tuple[ImageItem, np.ndarray]]) -> list[list[list[str]]]:
        """Per image, per mask, all candidate captions in crop-type-major order (index = crop type · S + sampler)."""
        captioner, _ = self.components()
        crops = [
            make_crops(item.image, masks, captioner.image_size, captioner.mean, captioner.std, self.margins, self.fill)
            .to(self.device)
            for item, masks in images
        ]
        generators = [torch.Generator().manual_seed(image_seed(self.seed, item.image_id)) for item, _ in images]
        per_image = captioner.caption_batch(crops, generators)
        return [
            [[text for per_mask in per_type for text in per_mask[k]] for k in range(len(masks))]
            for (_, masks), per_type in zip(images, per_image)
        ]

    def _contrast(self, num_masks: int) -> bool:
        d = self.decoding
        return d.contrast != "none" and d.contrast_min_masks <= num_masks <= d.contrast_max_masks

    def _record(
        self, item: ImageItem, k: int, masks: np.ndarray, captions: list[str], scores: MaskScores,
        image_bytes: str | None,
    ) -> PseudoRecord:
        samplers = self.decoding.sampler_names()
        height, width = masks.shape[1:]
        return PseudoRecord(
            sample_id=f"{item.image_id}:{k}",
            image_id=item.image_id,
            image=item.path,
            height=int(height),
            width=int(width),
            mask_index=k,
            mask=mask_to_rle(masks[k]),
            box=mask_box(masks[k]),
            area=int(masks[k].sum()),
            num_masks=len(masks),
            one_mask=len(masks) == 1,
            contrast=self._contrast(len(masks)),
            captions=captions,
            sampler=samplers * len(self.margins),
            crop=[t for t in range(len(self.margins)) for _ in samplers],
            dos=_scores(scores.dos),
            uos=_scores(scores.uos),
            cos=_scores(scores.cos),
            generator="",
            image_bytes=image_bytes,
        )
