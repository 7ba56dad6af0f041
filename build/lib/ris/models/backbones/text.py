"""The text tower of an open_clip model (CLIP's built-in text transformer or a CoCa ``TextTransformer``), run block
by block so that a fusion can act between blocks.

The causal mask and the positional embedding are sliced to the actual token length ``L`` (CRIS uses 17/22 tokens,
not 77). Word features are the final LayerNorm over all ``L`` token positions; the sentence feature is the EOT
position's feature times ``text_projection``, or, for towers with an appended class token (CoCa), the class token's
feature as open_clip pools it.
"""

from __future__ import annotations

import torch
from torch import nn

from ris.tokenizer import Tokenizer, eot_positions


class TextEncoder(nn.Module):
    """Block-wise view of an open_clip text tower; the streams are batch-first ``(B, T, width)``.

    ``T = L`` for CLIP and ``L + 1`` for towers with a class token appended at the end (CoCa).
    """

    def __init__(self, source: nn.Module) -> None:
        """``source``: an open_clip ``CLIP`` (text modules at top level) or a ``TextTransformer``."""
        super().__init__()
        self.token_embedding = source.token_embedding
        self.positional_embedding = source.positional_embedding
        self.transformer = source.transformer
        self.ln_final = source.ln_final
        self.text_projection = source.text_projection
        self.cls_emb = getattr(source, "cls_emb", None)
        self.correct_cls_mask = bool(getattr(source, "correct_cls_mask", False))
        self.causal = getattr(source, "attn_mask", None) is not None
        self.heads = self.transformer.resblocks[0].attn.num_heads
        self.width = self.token_embedding.embedding_dim
        projection = self.text_projection
        if projection is None:
            self.output_dim = self.width
        elif isinstance(projection, nn.Linear):
            self.output_dim = projection.out_features
        else:
            self.output_dim = projection.shape[1]

    @property
    def num_blocks(self) -> int:
        return len(self.transformer.resblocks)

    def embed(self, tokens: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token + positional embeddings ``(B, T, width)`` and the additive attention mask (``(T, T)``,
        ``(B * heads, T, T)`` with a class token, or ``None``)."""
        batch, length = tokens.shape
        x = self.token_embedding(tokens)
        seq_len = length
        if self.cls_emb is not None:
            x = torch.cat([x, self.cls_emb.view(1, 1, -1).expand(batch, 1, -1).to(x.dtype)], dim=1)
            seq_len += 1
        if seq_len > self.positional_embedding.shape[0]:
            raise ValueError(
                f"{length} tokens exceed the text tower's context length {self.positional_embedding.shape[0]}"
            )
        x = x + self.positional_embedding[:seq_len].to(x.dtype)
        mask = None
        if self.causal:
            mask = torch.full((seq_len, seq_len), float("-inf"), device=x.device, dtype=x.dtype).triu_(1)
        if self.cls_emb is not None:
            mask = self._class_token_mask(tokens, pad_id, x.dtype) + (0 if mask is None else mask)
        return x, mask

    def _class_token_mask(self, tokens: torch.Tensor, pad_id: int, dtype: torch.dtype) -> torch.Tensor:
        """open_clip's CoCa key mask: padding keys are hidden (the class-token slot follows ``correct_cls_mask``)."""
        valid = tokens != pad_id
        ones = valid.new_ones(valid.shape[0], 1)
        valid = torch.cat([valid, ones] if self.correct_cls_mask else [ones, valid], dim=1)
        seq_len = valid.shape[1]
        additive = torch.zeros(valid.shape[0], seq_len, seq_len, dtype=dtype, device=tokens.device)
        additive.masked_fill_(~valid[:, None, :], float("-inf"))
        return additive.repeat_interleave(self.heads, 0)

    def run_blocks(self, x: torch.Tensor, mask: torch.Tensor | None, start: int, stop: int) -> torch.Tensor:
        """Run blocks ``start .. stop-1`` on the batch-first stream ``x``."""
        if start >= stop:
            return x
        batch_first = getattr(self.transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1)
        for block in self.transformer.resblocks[start:stop]:
            x = block(x, attn_mask=mask)
        return x if batch_first else x.transpose(0, 1)

    def token_view(self, x: torch.Tensor, length: int) -> torch.Tensor:
        """The ``L`` token positions of the stream ``(B, L, width)`` (a class token is left out)."""
        return x[:, :length]

    def inject(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """Add ``residual`` ``(B, L, width)`` to the token positions (the class token is untouched)."""
        length = residual.shape[1]
        return torch.cat([x[:, :length] + residual, x[:, length:]], dim=1)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        if self.text_projection is None:
            return x
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection

    def finish(self, x: torch.Tensor, tokens: torch.Tensor, tokenizer: Tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
        """Word features ``(B, L, width)`` and the sentence feature ``(B, output_dim)``."""
        length = tokens.shape[1]
        normed = self.ln_final(x)
        words = normed[:, :length]
        if self.cls_emb is not None:
            sentence = normed[:, -1]
        else:
            sentence = normed[torch.arange(x.shape[0], device=x.device), eot_positions(tokens, tokenizer)]
        return words, self._project(sentence)
