"""Candidate captions for the pseudo-supervision generator: a CoCa adapter with our own cached decoding.

:class:`CoCaCaptioner` wraps any open_clip CoCa (built by :func:`ris.open_clip_models.create_open_clip`: a name +
pretrained tag, a local checkpoint file, or a ``local-dir:`` folder with a word vocabulary) and produces, per mask
and crop type, one beam-search caption and one distinctive sample per top-k / top-p setting (docs/method.md §4.2–§4.5).
Nothing depends on open_clip's ``generate`` or on transformers; token ids come from the model's tokenizer.

One :meth:`CoCaCaptioner.caption` call decodes all crop types and all masks of one image: each crop is encoded
once; beam search runs over all crops at once; all sampler settings of all masks and crop types run as one batch
(chunked by ``max_pairs`` (row, image) pairs to bound memory). The contrast of a row uses only the masks of the same
crop type, and only when ``contrast_min_masks ≤ K ≤ contrast_max_masks``.

Determinism: sampling uses uniforms drawn up front from the given ``generator`` (one per (row, position)), so the
captions are a function of the crops and the generator's state, whatever the chunking or device.

Captions are the decoded tokens after SOT and before EOS / PAD, with special tokens dropped and surrounding
whitespace stripped. An empty caption (e.g. a sampled PAD right after SOT) stays ``""``; the filter scores it like
any other caption.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from ris.open_clip_models import OpenCLIPModel, create_open_clip
from ris.pseudo.coca_decoder import CoCaDecoder, ImageContext
from ris.pseudo.decoding import BEAM_SCORERS, beam_search, sample_tokens
from ris.pseudo.sampling import CONTRAST_MODES, contrast_weights
from ris.tokenizer import Tokenizer

PRECISIONS = ("float32", "bfloat16", "float16")
GPU_SYNC_EVERY = 8
"""Default steps between the sampler's device reads off the CPU (one EOS check per 8 tokens)."""


@dataclass(frozen=True)
class DecodingSettings:
    """Caption decoding settings; the defaults are the paper's (docs/method.md §4.2–§4.4).

    Attributes:
        top_k: one top-k sampler per value.
        top_p: one top-p sampler per value (after the top-k ones).
        seq_len: maximum caption length in tokens, SOT and EOS included.
        min_seq_len: EOS is blocked while the prefix (SOT included) is shorter.
        temperature: sampling temperature.
        beam: produce one beam-search caption first.
        num_beams: beam width (the official 3 identical groups of 2 = a width-2 beam search).
        beam_scorer: the transformers version whose beam-scorer length divisors are reproduced
            (:data:`ris.pseudo.decoding.BEAM_SCORERS`): ``"4.31"`` (the official README's pin; hypotheses divide
            the raw-logit sum by the prefix length n without EOS, the "done" test by n + 1), ``"<=4.26"`` (both by
            n) or ``">=4.36"`` (both by n + 1). docs/method.md §4.3.
        contrast: ``"mean"`` (§4.4, the official sampler), ``"weighted"`` (§4.5) or ``"none"`` (naive ablation).
        contrast_min_masks / contrast_max_masks: the contrast is used only for images with this many masks.
        weighted_lambda: λ of the weighted contrast.
    """

    top_k: tuple[int, ...] = (5, 7, 9, 11, 13)
    top_p: tuple[float, ...] = (0.4, 0.5, 0.6, 0.7, 0.8)
    seq_len: int = 30
    min_seq_len: int = 5
    temperature: float = 1.0
    beam: bool = True
    num_beams: int = 2
    beam_scorer: str = "4.31"
    contrast: str = "mean"
    contrast_min_masks: int = 2
    contrast_max_masks: int = 30
    weighted_lambda: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "top_k", tuple(int(k) for k in self.top_k))
        object.__setattr__(self, "top_p", tuple(float(p) for p in self.top_p))
        problems = []
        if any(k < 1 for k in self.top_k):
            problems.append(f"top_k values must be >= 1, got {self.top_k}")
        if any(not 0 <= p <= 1 for p in self.top_p):
            problems.append(f"top_p values must be in [0, 1], got {self.top_p}")
        if not 0 <= self.min_seq_len < self.seq_len:
            problems.append(
                f"need 0 <= min_seq_len < seq_len, got min_seq_len={self.min_seq_len}, seq_len={self.seq_len}"
            )
        if self.seq_len < 2:
            problems.append(f"seq_len must be >= 2 (SOT and EOS), got {self.seq_len}")
        if self.temperature <= 0:
            problems.append(f"temperature must be > 0, got {self.temperature}")
        if self.num_beams < 1:
            problems.append(f"num_beams must be >= 1, got {self.num_beams}")
        if self.beam_scorer not in BEAM_SCORERS:
            problems.append(f"beam_scorer must be one of {list(BEAM_SCORERS)}, got {self.beam_scorer!r}")
        if self.contrast not in CONTRAST_MODES:
            problems.append(f"contrast must be one of {CONTRAST_MODES}, got {self.contrast!r}")
        if not 2 <= self.contrast_min_masks <= self.contrast_max_masks:
            problems.append(
                f"need 2 <= contrast_min_masks <= contrast_max_masks, got "
                f"{self.contrast_min_masks}, {self.contrast_max_masks}"
            )
        if not self.beam and not self.top_k and not self.top_p:
            problems.append("no sampler: beam=False and empty top_k and top_p")
        if problems:
            raise ValueError("DecodingSettings: " + "; ".join(problems))

    def sampler_names(self) -> list[str]:
        """Caption order per crop type: ``["beam", "top_k=5", …, "top_p=0.8"]``."""
        return (
            (["beam"] if self.beam else []) + [f"top_k={k}" for k in self.top_k] + [f"top_p={p:g}" for p in self.top_p]
        )


class CoCaCaptioner:
    """Candidate captions of the crops of one image from an open_clip CoCa.

    Args:
        model_name: open_clip CoCa architecture (``coca_ViT-L-14``, ``coca_ViT-B-32``, ``tiny-coca``, …) or
            ``local-dir:PATH``.
        pretrained: pretrained tag or local checkpoint file (None = random weights).
        tokenizer: path to a word vocabulary JSON (None = the model's own tokenizer).
        settings: decoding settings.
        device: where the model runs.
        max_pairs: most (row, image) pairs decoded at once (memory bound; does not change the captions).
        sync_every: steps between the sampler's bookkeeping steps that read from the device
            (:func:`ris.pseudo.decoding.sample_tokens`); None = 1 on the CPU, :data:`GPU_SYNC_EVERY` elsewhere.
        precision: ``"float32"`` (the model's own dtype) or ``"bfloat16"`` / ``"float16"`` autocast for encoding and
            decoding (tokens then differ from float32 for some rows: ``bench/dcs_precision.py``).

    Attributes:
        tokenizer, image_size, mean, std: crops must be ``image_size`` squares normalised with ``mean`` / ``std``.
    """

    def __init__(
        self,
        model_name: str,
        pretrained: str | None = None,
        tokenizer: str | None = None,
        settings: DecodingSettings = DecodingSettings(),
        device: str = "cpu",
        max_pairs: int = 2048,
        sync_every: int | None = None,
        precision: str = "float32",
    ) -> None:
        built = create_open_clip(model_name, pretrained=pretrained, tokenizer=tokenizer, device=device)
        self._setup(built, settings, max_pairs, sync_every, precision)

    @classmethod
    def from_model(
        cls,
        built: OpenCLIPModel,
        settings: DecodingSettings = DecodingSettings(),
        max_pairs: int = 2048,
        sync_every: int | None = None,
        precision: str = "float32",
    ) -> CoCaCaptioner:
        """Wrap an already-built CoCa (its device is kept)."""
        captioner = cls.__new__(cls)
        captioner._setup(built, settings, max_pairs, sync_every, precision)
        return captioner

    def _setup(
        self, built: OpenCLIPModel, settings: DecodingSettings, max_pairs: int, sync_every: int | None, precision: str
    ) -> None:
        if max_pairs < 1:
            raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
        if sync_every is not None and sync_every < 1:
            raise ValueError(f"sync_every must be >= 1, got {sync_every}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        autocast = None if precision == "float32" else getattr(torch, precision)
        try:
            self.decoder = CoCaDecoder(built.model.eval(), autocast)
        except TypeError as err:
            raise TypeError(f"{built.name}: not a usable CoCa captioner ({err})") from err
        if settings.seq_len > self.decoder.max_len:
            raise ValueError(
                f"{built.name}: seq_len {settings.seq_len} exceeds the context length {self.decoder.max_len}"
            )
        vocab = built.model.text_decoder.text_projection.shape[-1]
        if built.tokenizer.vocab_size != vocab:
            raise ValueError(f"{built.name}: tokenizer has {built.tokenizer.vocab_size} tokens, the decoder {vocab}")
        self.built = built
        self.settings = settings
        self.max_pairs = max_pairs
        self.precision = precision
        cpu = self.decoder.device.type == "cpu"
        self.sync_every = sync_every if sync_every is not None else (1 if cpu else GPU_SYNC_EVERY)
        self.tokenizer: Tokenizer = built.tokenizer
        self.image_size = built.image_size
        self.mean = built.mean
        self.std = built.std

    def sampler_names(self) -> list[str]:
        """Caption order per crop type: ``["beam", "top_k=5", …, "top_p=0.8"]``."""
        return self.settings.sampler_names()

    def caption(self, crops: Tensor, generator: torch.Generator | None = None) -> list[list[list[str]]]:
        """Candidate captions of the crops of one image.

        Args:
            crops: ``(T, K, 3, S, S)`` normalised crops: T crop types of the K masks of one image.
            generator: source of the sampling randomness (None = torch's default generator).

        Returns:
            ``captions[t][k]``: one string per entry of :meth:`sampler_names`, in that order.
        """
        return self.caption_batch([crops], [generator])[0]

    def caption_batch(
        self, crops: list[Tensor], generators: list[torch.Generator | None]
    ) -> list[list[list[list[str]]]]:
        """:meth:`caption` of several images at once: their rows decode in one batch (chunked by ``max_pairs``).

        Each image's samples use uniforms drawn from its own generator, so its captions do not depend on the other
        images of the batch (up to float rounding of the larger products).
        """
        size = self.image_size
        if len(crops) != len(generators):
            raise ValueError(f"got {len(crops)} crop tensors and {len(generators)} generators")
        for c in crops:
            if c.dim() != 5 or c.shape[2:] != (3, size, size) or c.shape[0] == 0 or c.shape[1] == 0:
                raise ValueError(f"crops must have shape (T>0, K>0, 3, {size}, {size}), got {tuple(c.shape)}")
        s = self.settings
        context = self.encode_batch(crops)
        beams = self.beam_tokens(context) if s.beam else None
        samples = self.sample_batch(context, generators).tolist() if s.top_k or s.top_p else None
        settings = len(s.top_k) + len(s.top_p)
        out, image_start, row_start = [], 0, 0
        for types, masks in context.grids:
            columns = []
            if beams is not None:
                # a beam ends at EOS only: the pad id is an ordinary token there ("!" in CLIP's BPE)
                ids = beams[image_start : image_start + types * masks]
                columns.append([self._text(i, (self.tokenizer.eot_id,)) for i in ids])
            if samples is not None:
                stops = (self.tokenizer.eot_id, self.tokenizer.pad_id)
                texts = [self._text(i, stops) for i in samples[row_start : row_start + types * settings * masks]]
                columns.extend(  # texts are in (crop type, setting, mask) order
                    [texts[(t * settings + i) * masks + k] for t in range(types) for k in range(masks)]
                    for i in range(settings)
                )
            per_crop = [list(texts) for texts in zip(*columns)]
            out.append([per_crop[t * masks : (t + 1) * masks] for t in range(types)])
            image_start += types * masks
            row_start += types * settings * masks
        return out

    @torch.inference_mode()
    def encode_batch(self, crops: list[Tensor]) -> ImageContext:
        """Encode the crops ``(T_i, K_i, 3, S, S)`` of several images once, in one call."""
        flat = torch.cat([c.reshape(-1, *c.shape[-3:]) for c in crops])
        context = self.decoder.encode(flat)
        return replace(context, grids=tuple((c.shape[0], c.shape[1]) for c in crops))

    def encode(self, crops: Tensor) -> ImageContext:
        """Encode crops ``(T, K, 3, S, S)`` once (image order: crop type major, then mask)."""
        return self.encode_batch([crops])

    def _text(self, ids: list[int], stops: tuple[int, ...]) -> str:
        """Caption text of ``ids`` (SOT first): the tokens before the first of ``stops``, decoded and stripped."""
        content = []
        for token in ids[1:]:
            if token in stops:
                break
            content.append(token)
        return self.tokenizer.decode(content).strip()

    @torch.inference_mode()
    def beam_tokens(self, context: ImageContext) -> list[list[int]]:
        """One beam-search caption per image of ``context``: ids of SOT and content (no EOS)."""
        s = self.settings
        images = context.num_images
        per_chunk = max(1, self.max_pairs // s.num_beams)
        out: list[list[int]] = []
        for start in range(0, images, per_chunk):
            chunk = torch.arange(start, min(start + per_chunk, images))
            rows = self.decoder.rows(
                context,
                chunk.repeat_interleave(s.num_beams)[:, None],
                torch.zeros(len(chunk) * s.num_beams, dtype=torch.long),
                None,
                s.seq_len,
            )
            out.extend(
                beam_search(rows, self.tokenizer, len(chunk), s.num_beams, s.seq_len, s.min_seq_len, s.beam_scorer)
            )
        return out

    def sample_tokens(self, context: ImageContext, generator: torch.Generator | None = None) -> Tensor:
        """One sample per (crop type t, setting s, mask k) row of a one-image ``context``, rows in that order.

        Returns:
            ``(T · settings · K, seq_len)`` long ids (SOT, content, EOS or PAD, then PAD), on the CPU.
        """
        if len(context.grids) != 1:
            raise ValueError(f"sample_tokens takes a one-image context, got {len(context.grids)}: use sample_batch")
        return self.sample_batch(context, [generator])

    @torch.inference_mode()
    def sample_batch(self, context: ImageContext, generators: list[torch.Generator | None]) -> Tensor:
        """:meth:`sample_tokens` of every image of ``context`` (one generator each), rows image by image."""
        s = self.settings
        settings = len(s.top_k) + len(s.top_p)
        parts, offset = [], 0
        for (types, masks), generator in zip(context.grids, generators, strict=True):
            parts.append(self._image_rows(context, offset, types, masks, generator))
            offset += types * masks
        group = max(images.shape[1] for images, *_ in parts)
        images = torch.cat([_pad_group(images, slot, group) for images, slot, *_ in parts])
        target_slot = torch.cat([slot for _, slot, *_ in parts])
        weights = None
        if any(w is not None for _, _, w, _ in parts):
            weights = torch.cat(
                [torch.zeros(len(i), group) if w is None else F.pad(w, (0, group - w.shape[1])) for i, _, w, _ in parts]
            )
        uniforms = torch.cat([u for *_, u in parts], dim=1)
        setting = torch.cat([torch.arange(settings).repeat_interleave(m).repeat(t) for t, m in context.grids])
        top_k = torch.tensor([*s.top_k, *([0] * len(s.top_p))], dtype=torch.long)
        top_p = torch.tensor([*([1.0] * len(s.top_k)), *s.top_p], dtype=torch.float64)
        rows = images.shape[0]
        per_chunk = max(1, self.max_pairs // group)
        tokens = []
        for start in range(0, rows, per_chunk):
            chunk = slice(start, min(start + per_chunk, rows))
            state = self.decoder.rows(
                context, images[chunk], target_slot[chunk], None if weights is None else weights[chunk], s.seq_len
            )
            sampled = sample_tokens(
                state,
                self.tokenizer,
                top_k[setting[chunk]],
                top_p[setting[chunk]],
                uniforms[:, chunk],
                s.seq_len,
                s.min_seq_len,
                s.temperature,
                self.sync_every,
            )
            tokens.append(sampled.cpu())
        return torch.cat(tokens)

    def _image_rows(
        self, context: ImageContext, offset: int, types: int, masks: int, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """The rows of one image whose crops start at ``offset`` in ``context``, in (crop type, setting, mask)
        order: images ``(R, G)``, target slots ``(R,)``, contrast weights ``(R, G)`` or None, uniforms
        ``(seq_len, R)`` from ``generator``."""
        s = self.settings
        settings = len(s.top_k) + len(s.top_p)
        contrast = s.contrast != "none" and s.contrast_min_masks <= masks <= s.contrast_max_masks
        crop_type = torch.arange(types).repeat_interleave(settings * masks)
        mask = torch.arange(masks).repeat(types * settings)
        if contrast:
            images = offset + crop_type[:, None] * masks + torch.arange(masks)
            latent = context.latent[offset : offset + types * masks]
            weights = self._contrast_weights(latent, types, masks)[crop_type, mask]
            target_slot = mask
        else:
            images = offset + (crop_type * masks + mask)[:, None]
            weights = None
            target_slot = torch.zeros_like(mask)
        rows = images.shape[0]
        uniforms = torch.rand((s.seq_len, rows), generator=generator, device=_generator_device(generator))
        return images, target_slot, weights, uniforms.cpu()

    def _contrast_weights(self, latent: Tensor, types: int, masks: int) -> Tensor:
        """``(T, K, K)`` contrast weights ``w[t, i, j]`` of mask j for target i within crop type t (0 on i = j), from
        the image's latents ``(T · K, D)``."""
        latent = latent.view(types, masks, -1)
        similarity = latent @ latent.transpose(1, 2)
        others = torch.tensor([[j for j in range(masks) if j != i] for i in range(masks)], dtype=torch.long)
        other_sim = similarity[:, torch.arange(masks)[:, None], others.to(similarity.device)]
        w = contrast_weights(
            other_sim.reshape(types * masks, masks - 1), self.settings.contrast, self.settings.weighted_lambda
        ).view(types, masks, masks - 1)
        out = torch.zeros((types, masks, masks), dtype=w.dtype, device=w.device)
        out.scatter_(2, others.to(w.device).expand(types, -1, -1), w)
        return out.cpu()


def _pad_group(images: Tensor, target_slot: Tensor, group: int) -> Tensor:
    """Widen ``images`` ``(R, G)`` to ``(R, group)`` by repeating each row's target image (weight 0 there: the
    repeated (prefix, image) states are merged with the target's, so they cost nothing in a sharing step)."""
    if images.shape[1] == group:
        return images
    target = images.gather(1, target_slot[:, None])
    return torch.cat([images, target.expand(-1, group - images.shape[1])], dim=1)


def _generator_device(generator: torch.Generator | None) -> torch.device:
    return torch.device("cpu") if generator is None else generator.device
