"""Cached incremental decoding of an open_clip CoCa (the exact speed-ups of method.md §8.2).

open_clip's CoCa recomputes the whole prefix through both text towers at every step and has no KV cache. Here:

- :meth:`CoCaDecoder.encode` encodes every crop **once** and precomputes, per image and decoder layer, the
  cross-attention keys and values of its image tokens (after ``ln_1_kv`` and the input projection);
- :class:`CoCaRows` holds R rows (partial captions). Row r is decoded against G images ``images[r]`` (its target
  at ``target_slot[r]``, plus the other masks of its crop type when the contrast is on); every (row, image) pair
  is a "pair". The unimodal text tower keeps a self-attention KV cache **per row**, the multimodal decoder one
  **per pair** (hidden states diverge after the first cross-attention);
- each step feeds one token per row and computes only the newest position; the vocabulary projection runs on the
  target's final hidden state and, for the contrast, on the weighted sum of the other pairs' final hidden states
  (``Σ_j w_j · (h_j · W) = (Σ_j w_j · h_j) · W``: the projection is linear without bias), so a row costs at most
  two projections instead of K, and a top-k row projects its contrast only onto its kept tokens
  (:class:`ris.pseudo.decoding.StepScores`);
- the decoder's first self-attention block sees only the text states, so it runs (and caches) per row, not per
  pair; and the first position, where every row holds the same SOT, is computed once per image and copied.

The text tower's pad mask is reproduced: open_clip masks keys of pad tokens (id ``model.text.pad_id``) in the
legacy shifted layout of the released CoCa weights (key j is masked when token j − 1 is a pad; with
``correct_cls_mask`` when token j is), which matters when a beam contains token 0 (``"!"`` in CLIP's BPE).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from torch import Tensor, nn

from ris.pseudo.decoding import StepScores


@dataclass
class ImageContext:
    """Per-image decoder inputs, computed once per crop.

    Attributes:
        latent: ``(N, D)`` L2-normalised contrastive image embeddings (for the similarities ``S_ij``).
        cross_kv: per decoder layer, the cross-attention keys and values ``(N, H, T_img, d_head)``.
        grid: ``(T, K)`` with ``T · K = N`` when the images are T crop types of K masks (image ``t · K + k``).
    """

    latent: Tensor
    cross_kv: list[tuple[Tensor, Tensor]]
    grid: tuple[int, int]

    @property
    def num_images(self) -> int:
        return self.latent.shape[0]


def _check_block(block: nn.Module, where: str) -> None:
    if not isinstance(block, ResidualAttentionBlock) or not block.attn._qkv_same_embed_dim:
        raise TypeError(
            f"{where}: expected open_clip ResidualAttentionBlock with a packed in-projection, got "
            f"{type(block).__name__}; this CoCa variant is not supported by the cached decoder"
        )


def _heads(x: Tensor, heads: int) -> Tensor:
    """``(B, W)`` → ``(B, H, W / H)``."""
    return x.view(x.shape[0], heads, -1)


class CoCaDecoder:
    """Cached decoding over an open_clip ``CoCa`` model (eval mode; call under ``torch.inference_mode``)."""

    def __init__(self, model: nn.Module) -> None:
        for name in ("visual", "text", "text_decoder"):
            if not hasattr(model, name):
                raise TypeError(f"expected an open_clip CoCa model (with .{name}), got {type(model).__name__}")
        self.model = model
        self.text = model.text
        self.dec = model.text_decoder
        if self.text.attn_mask is None:
            raise ValueError("the CoCa text tower has no causal mask (no_causal_mask=True); it cannot generate")
        for i, block in enumerate(self.text.transformer.resblocks):
            _check_block(block, f"text.transformer.resblocks[{i}]")
        for i, (block, cross) in enumerate(zip(self.dec.resblocks, self.dec.cross_attn)):
            _check_block(block, f"text_decoder.resblocks[{i}]")
            _check_block(cross, f"text_decoder.cross_attn[{i}]")
        self.text_heads = self.text.transformer.resblocks[0].attn.num_heads
        self.dec_heads = self.dec.resblocks[0].attn.num_heads
        self.max_len = min(self.text.context_length, self.dec.context_length)

    @property
    def device(self) -> torch.device:
        return self.dec.text_projection.device

    @property
    def dtype(self) -> torch.dtype:
        return self.dec.text_projection.dtype

    def encode(self, images: Tensor) -> ImageContext:
        """Encode ``images`` ``(N, 3, S, S)`` or ``(T, K, 3, S, S)`` once: latents and cross-attention K/V."""
        grid = (1, images.shape[0]) if images.dim() == 4 else tuple(images.shape[:2])
        images = images.reshape(-1, *images.shape[-3:])
        latent, tokens = self.model._encode_image(images.to(self.device, self.dtype))
        cross_kv = []
        for block in self.dec.cross_attn:
            kv = block.ln_1_kv(tokens)
            width = kv.shape[-1]
            weight, bias = block.attn.in_proj_weight, block.attn.in_proj_bias
            k = F.linear(kv, weight[width : 2 * width], None if bias is None else bias[width : 2 * width])
            v = F.linear(kv, weight[2 * width :], None if bias is None else bias[2 * width :])
            n, t = kv.shape[:2]
            cross_kv.append(
                (
                    k.view(n, t, self.dec_heads, -1).transpose(1, 2).contiguous(),
                    v.view(n, t, self.dec_heads, -1).transpose(1, 2).contiguous(),
                )
            )
        return ImageContext(latent=latent, cross_kv=cross_kv, grid=grid)

    def rows(
        self,
        context: ImageContext,
        images: Tensor,
        target_slot: Tensor,
        weights: Tensor | None,
        max_len: int,
    ) -> CoCaRows:
        """Start R rows (see :class:`CoCaRows`); ``max_len`` = the most tokens a row will be fed."""
        if max_len > self.max_len:
            raise ValueError(f"seq_len {max_len} exceeds the CoCa context length {self.max_len}")
        return CoCaRows(self, context, images, target_slot, weights, max_len)


class CoCaRows:
    """R partial captions decoded with KV caches (a :class:`ris.pseudo.decoding.StepModel`).

    Args:
        decoder: the model wrapper.
        context: the encoded images.
        images: ``(R, G)`` long, the images each row is decoded against (indices into ``context``).
        target_slot: ``(R,)`` long, which of the G images is the row's target.
        weights: ``(R, G)`` contrast weights (0 at the target slot) or None (no contrast; then G is usually 1).
        max_len: cache length (the most tokens a row will be fed).
    """

    def __init__(
        self,
        decoder: CoCaDecoder,
        context: ImageContext,
        images: Tensor,
        target_slot: Tensor,
        weights: Tensor | None,
        max_len: int,
    ) -> None:
        self.decoder = decoder
        self.context = context
        self.device = decoder.device
        self.images = images.to(self.device)
        self.target_slot = target_slot.to(self.device)
        self.weights = None if weights is None else weights.to(self.device, decoder.dtype)
        self.pos = 0
        rows, group = self.images.shape
        text, dec = decoder.text, decoder.dec

        def cache(n: int, heads: int, width: int, layers: int) -> list[tuple[Tensor, Tensor]]:
            shape = (n, heads, max_len, width // heads)
            kwargs = {"dtype": decoder.dtype, "device": self.device}
            return [(torch.empty(shape, **kwargs), torch.empty(shape, **kwargs)) for _ in range(layers)]

        self.text_kv = cache(rows, decoder.text_heads, text.width, len(text.transformer.resblocks))
        # the decoder's first self-attention block sees only the text states: cached per row; the rest per pair
        self.dec_kv = cache(rows, decoder.dec_heads, dec.width, 1)
        self.dec_kv += cache(rows * group, decoder.dec_heads, dec.width, len(dec.resblocks) - 1)
        self.key_valid = torch.ones((rows, max_len), dtype=torch.bool, device=self.device)
        self.prev_token = torch.zeros(rows, dtype=torch.long, device=self.device)
        self._index_pairs()

    def _index_pairs(self) -> None:
        """Group the pairs by image for the cross-attention: padded slots ``(images used, max pairs per image)``."""
        flat = self.images.reshape(-1)
        used, inverse = torch.unique(flat, return_inverse=True)
        order = torch.argsort(inverse, stable=True)
        counts = torch.bincount(inverse, minlength=used.numel())
        starts = torch.cumsum(counts, 0) - counts
        sorted_group = inverse[order]
        self._cross_used = None if used.numel() == self.context.num_images else used
        self._cross_order = order
        self._cross_group = sorted_group
        self._cross_slot = torch.arange(flat.numel(), device=self.device) - starts[sorted_group]
        self._cross_shape = (used.numel(), int(counts.max()))

    def select(self, rows: Tensor) -> None:
        rows = rows.to(self.device)
        group = self.images.shape[1]
        pairs = (rows[:, None] * group + torch.arange(group, device=self.device)).reshape(-1)
        self.text_kv = [(k[rows], v[rows]) for k, v in self.text_kv]
        self.dec_kv = [(k[rows], v[rows]) for k, v in self.dec_kv[:1]] + [
            (k[pairs], v[pairs]) for k, v in self.dec_kv[1:]
        ]
        self.key_valid = self.key_valid[rows]
        self.prev_token = self.prev_token[rows]
        self.images = self.images[rows]
        self.target_slot = self.target_slot[rows]
        if self.weights is not None:
            self.weights = self.weights[rows]
        self._index_pairs()

    def _self_attention(self, block: nn.Module, x: Tensor, kv: tuple[Tensor, Tensor], mask: Tensor | None) -> Tensor:
        """One causal residual block for the newest position; ``x`` ``(B, W)``, caches ``(B, H, L, d)``."""
        heads = kv[0].shape[1]
        q, k, v = F.linear(block.ln_1(x), block.attn.in_proj_weight, block.attn.in_proj_bias).chunk(3, dim=-1)
        kv[0][:, :, self.pos] = _heads(k, heads)
        kv[1][:, :, self.pos] = _heads(v, heads)
        end = self.pos + 1
        out = F.scaled_dot_product_attention(
            _heads(q, heads)[:, :, None], kv[0][:, :, :end], kv[1][:, :, :end], attn_mask=mask
        )
        x = x + block.ls_1(block.attn.out_proj(out.reshape(x.shape)))
        return x + block.ls_2(block.mlp(block.ln_2(x)))

    def _cross_attention(self, block: nn.Module, x: Tensor, kv: tuple[Tensor, Tensor]) -> Tensor:
        """One cross-attention residual block; ``x`` ``(P, W)`` pairs, keys/values ``(N, H, T_img, d)``."""
        width = x.shape[-1]
        heads = kv[0].shape[1]
        weight, bias = block.attn.in_proj_weight, block.attn.in_proj_bias
        q = _heads(F.linear(block.ln_1(x), weight[:width], None if bias is None else bias[:width]), heads)
        keys, values = kv
        if self._cross_used is not None:
            keys, values = keys[self._cross_used], values[self._cross_used]
        padded = q.new_zeros((*self._cross_shape, heads, q.shape[-1]))
        padded[self._cross_group, self._cross_slot] = q[self._cross_order]
        out = F.scaled_dot_product_attention(padded.transpose(1, 2), keys, values).transpose(1, 2)
        attended = torch.empty_like(q)
        attended[self._cross_order] = out[self._cross_group, self._cross_slot]
        x = x + block.ls_1(block.attn.out_proj(attended.reshape(x.shape)))
        return x + block.ls_2(block.mlp(block.ln_2(x)))

    def advance(self, tokens: Tensor) -> StepScores:
        tokens = tokens.to(self.device)
        if self.pos == 0 and bool((tokens == tokens[0]).all()):
            hidden = self._shared_first_step(tokens)
        else:
            hidden = self._hidden(tokens)
        rows = hidden.shape[0]
        projection = self.decoder.dec.text_projection
        target = hidden[torch.arange(rows, device=self.device), self.target_slot]
        if self.weights is None:
            return StepScores(target, projection)
        return StepScores(target, projection, torch.einsum("rg,rgw->rw", self.weights, hidden))

    def _shared_first_step(self, tokens: Tensor) -> Tensor:
        """The first position when every row starts with the same token: its states depend only on the image.

        Computes one text row against each image used, and copies the position-0 caches and final states to all
        rows and pairs (identical computations, so exact).
        """
        used, inverse = torch.unique(self.images.reshape(-1), return_inverse=True)
        root = CoCaRows(self.decoder, self.context, used[None, :], torch.zeros(1, dtype=torch.long), None, 1)
        hidden = root._hidden(tokens[:1])
        for mine, roots in zip(self.text_kv + self.dec_kv[:1], root.text_kv + root.dec_kv[:1]):
            for cache, first in zip(mine, roots):
                cache[:, :, 0] = first[:, :, 0]
        for mine, roots in zip(self.dec_kv[1:], root.dec_kv[1:]):
            for cache, first in zip(mine, roots):
                cache[:, :, 0] = first[inverse, :, 0]
        self.key_valid[:, 0] = root.key_valid[0, 0]
        self.pos, self.prev_token = 1, tokens
        return hidden[0, inverse].view(*self.images.shape, -1)

    def _hidden(self, tokens: Tensor) -> Tensor:
        """Feed ``tokens`` ``(R,)``; the decoder's final states (after ``ln_final``) per pair ``(R, G, W)``."""
        text, dec = self.decoder.text, self.decoder.dec
        cast = text.transformer.get_cast_dtype()
        x = text.token_embedding(tokens).to(cast) + text.positional_embedding[self.pos].to(cast)
        if text.cls_emb is not None:
            if text.correct_cls_mask:
                self.key_valid[:, self.pos] = tokens != text.pad_id
            elif self.pos > 0:
                self.key_valid[:, self.pos] = self.prev_token != text.pad_id
        valid = self.key_valid[:, : self.pos + 1]
        mask = None if bool(valid.all()) else valid[:, None, None, :]
        for block, kv in zip(text.transformer.resblocks, self.text_kv):
            x = self._self_attention(block, x, kv, mask)
        rows, group = self.images.shape
        for layer, (block, cross) in enumerate(zip(dec.resblocks, dec.cross_attn)):
            x = self._self_attention(block, x, self.dec_kv[layer], None)
            if layer == 0 and group > 1:
                x = x.repeat_interleave(group, dim=0)
            x = self._cross_attention(cross, x, self.context.cross_kv[layer])
        self.pos += 1
        self.prev_token = tokens
        return dec.ln_final(x).view(rows, group, -1)
