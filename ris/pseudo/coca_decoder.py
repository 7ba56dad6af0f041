"""Cached incremental decoding of an open_clip CoCa (the exact speed-ups of docs/method.md §8.2).

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
- the decoder's first self-attention block sees only the text states, so it runs (and caches) per prefix, not per
  pair;
- every distinct state is computed once: rows with equal prefixes share their text-tower state, and rows with
  equal prefixes share their (prefix, image) decoder states for every image they are decoded against — all rows
  start with SOT, and the settings of one mask often draw the same first tokens (:class:`CoCaRows`).

The text tower's pad mask is reproduced: open_clip masks keys of pad tokens (id ``model.text.pad_id``) in the
legacy shifted layout of the released CoCa weights (key j is masked when token j − 1 is a pad; with
``correct_cls_mask`` when token j is), which matters when a beam contains token 0 (``"!"`` in CLIP's BPE).
"""

from __future__ import annotations

import contextlib
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
        grids: per source image ``(T, K)``: its T crop types of K masks are the next ``T · K`` images (image
            ``t · K + k`` of its block).
    """

    latent: Tensor
    cross_kv: list[tuple[Tensor, Tensor]]
    grids: tuple[tuple[int, int], ...]

    @property
    def num_images(self) -> int:
        return self.latent.shape[0]


def _check_block(block: nn.Module, where: str) -> None:
    if not isinstance(block, ResidualAttentionBlock) or not block.attn._qkv_same_embed_dim:
        raise TypeError(
            f"{where}: expected open_clip ResidualAttentionBlock with a packed in-projection, got "
            f"{type(block).__name__}; this CoCa variant is not supported by the cached decoder"
        )


def _is_identity(index: Tensor, size: int) -> bool:
    """Whether ``index`` is ``arange(size)`` (a host sync)."""
    return index.numel() == size and bool((index == torch.arange(size, device=index.device)).all())


def _heads(x: Tensor, heads: int) -> Tensor:
    """``(B, W)`` → ``(B, H, W / H)``."""
    return x.view(x.shape[0], heads, -1)


class CoCaDecoder:
    """Cached decoding over an open_clip ``CoCa`` model (eval mode; call under ``torch.inference_mode``).

    ``autocast`` (``torch.bfloat16`` / ``torch.float16``, None = off) runs the encoders and the decoder blocks under
    ``torch.autocast`` with caches of that dtype; the vocabulary projection and the sampling stay in the model's
    dtype (:class:`ris.pseudo.decoding.StepScores`).
    """

    def __init__(self, model: nn.Module, autocast: torch.dtype | None = None) -> None:
        for name in ("visual", "text", "text_decoder"):
            if not hasattr(model, name):
                raise TypeError(f"expected an open_clip CoCa model (with .{name}), got {type(model).__name__}")
        self.model = model
        self.autocast = autocast
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
        self.vocab_size = self.dec.text_projection.shape[-1]

    @property
    def device(self) -> torch.device:
        return self.dec.text_projection.device

    @property
    def dtype(self) -> torch.dtype:
        return self.dec.text_projection.dtype

    @property
    def state_dtype(self) -> torch.dtype:
        """The dtype of the hidden states and caches (the autocast dtype, if any)."""
        return self.autocast or self.dtype

    def autocast_context(self) -> contextlib.AbstractContextManager:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    def encode(self, images: Tensor) -> ImageContext:
        """Encode ``images`` ``(N, 3, S, S)`` or ``(T, K, 3, S, S)`` once: latents and cross-attention K/V."""
        grid = (1, images.shape[0]) if images.dim() == 4 else (images.shape[0], images.shape[1])
        images = images.reshape(-1, *images.shape[-3:])
        with self.autocast_context():
            return self._encode(images.to(self.device, self.dtype), grid)

    def _encode(self, images: Tensor, grid: tuple[int, int]) -> ImageContext:
        latent, tokens = self.model._encode_image(images)
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
                    k.view(n, t, self.dec_heads, -1).transpose(1, 2).to(self.state_dtype).contiguous(),
                    v.view(n, t, self.dec_heads, -1).transpose(1, 2).to(self.state_dtype).contiguous(),
                )
            )
        return ImageContext(latent=latent.to(self.dtype), cross_kv=cross_kv, grids=(grid,))

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


@dataclass(frozen=True)
class StepWork:
    """The states one :meth:`CoCaRows.advance` computed (for FLOP counts, ``bench/dcs_decoding.py``).

    Attributes:
        rows: partial captions advanced.
        nodes: distinct prefixes run through the text tower and the decoder's first self-attention block.
        pairs: distinct (prefix, image) states run through the decoder's cross-attention blocks and the rest.
        length: the prefix length after this step (keys of the causal self-attention).
    """

    rows: int
    nodes: int
    pairs: int
    length: int


class CoCaRows:
    """R partial captions decoded with KV caches, each distinct state computed once (a ``StepModel``).

    The caches form a prefix tree flattened to its newest level: a **node** is a distinct prefix (its text-tower
    and first-decoder-block caches), a **pair** a distinct (prefix, image) state (the caches of the other decoder
    blocks). Rows point at nodes and pairs. A sharing step (``advance(tokens, share=True)``) merges the rows whose
    prefixes became equal: all rows start with SOT, the settings of one mask and crop type often draw the same first
    tokens, and the pairs of rows of different masks with the same prefix coincide for every image. Each state is
    computed once and its caches are copied to its children, so the tokens are those of per-row decoding (docs/method.md
    §8.2). A step with ``share=False`` gives every row its own node and pair without looking at the tokens: static
    shapes and no host synchronisation (the GPU path of :func:`ris.pseudo.decoding.sample_tokens`).

    Args:
        decoder: the model wrapper.
        context: the encoded images.
        images: ``(R, G)`` long, the images each row is decoded against (indices into ``context``).
        target_slot: ``(R,)`` long, which of the G images is the row's target.
        weights: ``(R, G)`` contrast weights (0 at the target slot) or None (no contrast; then G is usually 1).
        max_len: cache length (the most tokens a row will be fed).

    Attributes:
        work: one :class:`StepWork` per step.
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
        self.max_len = max_len
        self.images_host = images.cpu()
        self.images = images.to(self.device)
        self.target_slot = target_slot.to(self.device)
        self.weights = None if weights is None else weights.to(self.device, decoder.dtype)
        self.pos = 0
        self.work: list[StepWork] = []
        rows, group = self.images.shape
        # the root: one empty prefix; its pairs are the distinct images of the rows (sorted keys node · N + image)
        self.row_node = torch.zeros(rows, dtype=torch.long, device=self.device)
        self.node_token = torch.full((1,), -1, dtype=torch.long, device=self.device)
        self.pair_key, inverse = torch.unique(self.images.reshape(-1), return_inverse=True)
        self.row_pair = inverse.view(rows, group)
        self._rows_are_nodes = False  # True after a non-sharing step: node r = row r, pair r·G + g = (r, g)
        text, dec = decoder.text, decoder.dec
        self.text_kv = self._cache(1, decoder.text_heads, text.width, len(text.transformer.resblocks))
        # the decoder's first self-attention block sees only the text states: cached per node; the rest per pair
        self.dec_kv = self._cache(1, decoder.dec_heads, dec.width, 1)
        self.dec_kv += self._cache(self.pair_key.numel(), decoder.dec_heads, dec.width, len(dec.resblocks) - 1)
        self.key_valid = torch.ones((1, max_len), dtype=torch.bool, device=self.device)
        self._row_major_groups()

    def _cache(self, n: int, heads: int, width: int, layers: int) -> list[tuple[Tensor, Tensor]]:
        shape = (n, heads, self.max_len, width // heads)
        kwargs = {"dtype": self.decoder.state_dtype, "device": self.device}
        return [(torch.empty(shape, **kwargs), torch.empty(shape, **kwargs)) for _ in range(layers)]

    @staticmethod
    def _groups(pair_image: Tensor, images_used: Tensor | None, slots: int) -> tuple[Tensor, Tensor, Tensor]:
        """Where each pair's query goes in the per-image padded cross-attention batch: ``(order, group, slot)``."""
        image_index = pair_image if images_used is None else torch.searchsorted(images_used, pair_image)
        order = torch.argsort(image_index, stable=True)
        counts = torch.bincount(image_index, minlength=slots)
        starts = torch.cumsum(counts, 0) - counts
        group = image_index[order]
        return order, group, torch.arange(order.numel(), device=order.device) - starts[group]

    def _set_groups(self, pair_image_host: Tensor) -> None:
        """Index the cross-attention batch from the pairs' images (host tensor: shapes without a device sync)."""
        used = torch.unique(pair_image_host)
        counts = torch.bincount(torch.searchsorted(used, pair_image_host), minlength=used.numel())
        full = used.numel() == self.context.num_images
        self._cross_used = None if full else used.to(self.device)
        self._cross_shape = (used.numel(), int(counts.max()))
        order, group, slot = self._groups(pair_image_host, None if full else used, used.numel())
        self._cross_order, self._cross_group, self._cross_slot = (t.to(self.device) for t in (order, group, slot))

    def _row_major_groups(self) -> None:
        """The cross-attention batch of a non-sharing step (pairs = rows × G in row order), kept for such steps."""
        self._set_groups(self.images_host.reshape(-1))
        self._row_major = (self._cross_used, self._cross_shape, self._cross_order, self._cross_group, self._cross_slot)

    def select(self, rows: Tensor) -> None:
        """Keep the rows ``rows`` (in that order); their states are dropped or copied at the next step."""
        host = rows.cpu()
        rows = rows.to(self.device)
        self.images_host = self.images_host[host]
        self.images = self.images[rows]
        self.target_slot = self.target_slot[rows]
        if self.weights is not None:
            self.weights = self.weights[rows]
        self.row_node = self.row_node[rows]
        self.row_pair = self.row_pair[rows]
        self._rows_are_nodes = False
        self._row_major_groups()

    def _reindex(self, node_parent: Tensor | None, pair_parent: Tensor | None) -> None:
        """Copy the caches of the parent states to the new states (None = unchanged, no copy)."""
        if node_parent is not None:
            self.text_kv = [(k[node_parent], v[node_parent]) for k, v in self.text_kv]
            self.dec_kv[0] = (self.dec_kv[0][0][node_parent], self.dec_kv[0][1][node_parent])
            self.key_valid = self.key_valid[node_parent]
        if pair_parent is not None:
            self.dec_kv[1:] = [(k[pair_parent], v[pair_parent]) for k, v in self.dec_kv[1:]]

    def _share(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Merge equal states after appending ``tokens``: new node parents, pair → node map and pair images."""
        rows, group = self.images.shape
        vocab = self.decoder.vocab_size
        n_images = self.context.num_images
        child_key, row_node = torch.unique(self.row_node * vocab + tokens, return_inverse=True)
        node_parent = torch.div(child_key, vocab, rounding_mode="floor")
        pair_key, row_pair = torch.unique(row_node[:, None] * n_images + self.images, return_inverse=True)
        pair_node = torch.div(pair_key, n_images, rounding_mode="floor")
        pair_image = pair_key - pair_node * n_images
        parent_key = node_parent[pair_node] * n_images + pair_image
        known, order = self.pair_key.sort()
        pair_parent = order[torch.searchsorted(known, parent_key)]
        self._reindex(
            None if _is_identity(node_parent, self.node_token.numel()) else node_parent,
            None if _is_identity(pair_parent, self.pair_key.numel()) else pair_parent,
        )
        self.prev_token = self.node_token[node_parent]
        self.node_token = child_key - node_parent * vocab
        self.row_node, self.row_pair, self.pair_key = row_node, row_pair.view(rows, group), pair_key
        self._rows_are_nodes = False
        self._set_groups(pair_image.cpu())
        return pair_node, pair_image, self.node_token

    def _one_per_row(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Give every row its own node and pairs (no look at the tokens: static shapes, no sync)."""
        rows, group = self.images.shape
        if not self._rows_are_nodes:
            self._reindex(self.row_node, self.row_pair.reshape(-1))
        self.prev_token = self.node_token[self.row_node]
        self.node_token = tokens
        self.row_node = torch.arange(rows, device=self.device)
        self.row_pair = torch.arange(rows * group, device=self.device).view(rows, group)
        self.pair_key = self.row_node.repeat_interleave(group) * self.context.num_images + self.images.reshape(-1)
        self._rows_are_nodes = True
        self._cross_used, self._cross_shape, self._cross_order, self._cross_group, self._cross_slot = self._row_major
        return self.row_node.repeat_interleave(group), self.images.reshape(-1), tokens

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

    def advance(self, tokens: Tensor, share: bool = True) -> StepScores:
        """Append ``tokens`` ``(R,)`` and score the next position; ``share`` merges equal states (syncs the host)."""
        tokens = tokens.to(self.device)
        pair_node, pair_image, node_token = self._share(tokens) if share else self._one_per_row(tokens)
        rows, group = self.images.shape
        self.work.append(StepWork(rows, node_token.numel(), pair_node.numel(), self.pos + 1))
        with self.decoder.autocast_context():
            hidden = self._hidden(node_token, pair_node, check_mask=share).to(self.decoder.dtype)
        projection = self.decoder.dec.text_projection
        target = hidden[self.row_pair.gather(1, self.target_slot[:, None])[:, 0]]
        if self.weights is None:
            return StepScores(target, projection)
        return StepScores(target, projection, torch.einsum("rg,rgw->rw", self.weights, hidden[self.row_pair]))

    def _hidden(self, tokens: Tensor, pair_node: Tensor, check_mask: bool) -> Tensor:
        """Feed the nodes' newest ``tokens`` ``(U,)``; the decoder's final states (after ``ln_final``) per pair
        ``(P, W)``. ``check_mask`` drops an all-valid pad mask (a host sync)."""
        text, dec = self.decoder.text, self.decoder.dec
        cast = text.transformer.get_cast_dtype()
        x = text.token_embedding(tokens).to(cast) + text.positional_embedding[self.pos].to(cast)
        mask = None
        if text.cls_emb is not None:
            if text.correct_cls_mask:
                self.key_valid[:, self.pos] = tokens != text.pad_id
            elif self.pos > 0:
                self.key_valid[:, self.pos] = self.prev_token != text.pad_id
            valid = self.key_valid[:, : self.pos + 1]
            mask = None if check_mask and bool(valid.all()) else valid[:, None, None, :]
        for block, kv in zip(text.transformer.resblocks, self.text_kv):
            x = self._self_attention(block, x, kv, mask)
        for layer, (block, cross) in enumerate(zip(dec.resblocks, dec.cross_attn)):
            x = self._self_attention(block, x, self.dec_kv[layer], None)
            if layer == 0:
                x = x[pair_node]
            x = self._cross_attention(cross, x, self.context.cross_kv[layer])
        self.pos += 1
        return dec.ln_final(x)
