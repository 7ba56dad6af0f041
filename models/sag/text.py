"""SaG's text side: a sentence encoder that turns token ids into the sentence embedding ``t`` ``(B, D)`` and carries
the tokenizer that produces those ids (docs/baselines.md §1.3, item 2).

- ``bert-base-uncased`` (SaG's encoder; any Hugging Face BERT name, or a folder written by ``save_pretrained``):
  BERT, a ``Linear(768 → D)`` and the projected [CLS] token, not L2-normalised. The BERT tokenizer is adapted to
  the framework's :class:`ris.tokenizer.Tokenizer` protocol: [CLS], [SEP] and [PAD] play SOT, EOT and PAD.
- ``open_clip:NAME`` or ``local-dir:PATH`` (e.g. the synthetic world's CoCa): the text tower of an open_clip model
  with its own tokenizer; its projected sentence feature goes through a ``Linear(· → D)``.

:func:`create_text_encoder` picks one by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ris.open_clip_models import create_open_clip
from ris.tokenizer import Tokenizer, tokenize

from ..backbones.text import TextEncoder

OPEN_CLIP_PREFIXES = ("open_clip:", "local-dir:")


class BertTokenizerAdapter:
    """A Hugging Face BERT tokenizer as a :class:`ris.tokenizer.Tokenizer` (``encode`` gives word pieces without
    [CLS]/[SEP]; :func:`ris.tokenizer.tokenize` adds them and pads with [PAD])."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.sot_id = int(inner.cls_token_id)
        self.eot_id = int(inner.sep_token_id)
        self.pad_id = int(inner.pad_token_id)
        self.vocab_size = len(inner)

    def encode(self, text: str) -> list[int]:
        return list(self.inner.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        special = {self.sot_id, self.eot_id, self.pad_id}
        return self.inner.decode([int(i) for i in ids if int(i) not in special])

    def __call__(self, texts: str | Sequence[str], context_length: int = 20) -> torch.Tensor:
        return tokenize(self, [texts] if isinstance(texts, str) else list(texts), context_length)

    def __repr__(self) -> str:
        return f"BertTokenizerAdapter({self.inner.name_or_path!r}, vocab_size={self.vocab_size})"


class SentenceEncoder(nn.Module):
    """Token ids ``(B, L)`` → sentence embedding ``(B, dim)``; ``tokenizer`` produces the ids."""

    tokenizer: Tokenizer
    dim: int


class BertSentenceEncoder(SentenceEncoder):
    """BERT + ``Linear(hidden → dim)`` on the [CLS] token. Padding positions (``tokenizer.pad_id``) are masked."""

    def __init__(self, bert: nn.Module, tokenizer: Tokenizer, dim: int = 512) -> None:
        super().__init__()
        self.bert = bert
        self.tokenizer = tokenizer
        self.dim = dim
        self.proj = nn.Linear(bert.config.hidden_size, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=tokens, attention_mask=(tokens != self.tokenizer.pad_id).long())[0]
        return self.proj(hidden[:, 0])


class OpenCLIPSentenceEncoder(SentenceEncoder):
    """The text tower of an open_clip model (:class:`ris.models.backbones.TextEncoder`) + ``Linear(· → dim)`` on its
    projected sentence feature."""

    def __init__(self, text: TextEncoder, tokenizer: Tokenizer, dim: int = 512) -> None:
        super().__init__()
        self.text = text
        self.tokenizer = tokenizer
        self.dim = dim
        self.proj = nn.Linear(text.output_dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x, mask = self.text.embed(tokens, self.tokenizer.pad_id)
        x = self.text.run_blocks(x, mask, 0, self.text.num_blocks)
        return self.proj(self.text.finish(x, tokens, self.tokenizer)[1])


def load_bert(name: str, flag: str = "--model.text_encoder") -> tuple[nn.Module, BertTokenizerAdapter]:
    """BERT (without its unused pooler) and its tokenizer from a Hugging Face name or a ``save_pretrained`` folder.

    A hub name is read from the local Hugging Face cache or downloaded; when neither works, one short error names
    the missing weights and ``flag``.
    """
    from transformers import AutoTokenizer, BertModel
    from transformers.utils import logging as hf_logging

    folder = Path(name).expanduser()
    if folder.is_dir():
        source, local = str(folder), True
    elif name.startswith(("/", "./", "../", "~")) or name.endswith("/"):
        raise FileNotFoundError(f"BERT folder not found: {name} (set by {flag}; a folder written by save_pretrained)")
    else:
        source, local = name, False
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the checkpoint's pooler weights are left out on purpose; no warning
    try:
        bert = BertModel.from_pretrained(source, add_pooling_layer=False, local_files_only=local)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
    except OSError as err:
        if local:
            raise ValueError(f"{folder}: not a BERT folder written by save_pretrained ({err})") from err
        raise FileNotFoundError(
            f"BERT weights {name!r} are not in the local Hugging Face cache and cannot be downloaded; pass a folder "
            f"written by save_pretrained with {flag} PATH"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return bert, BertTokenizerAdapter(tokenizer)


def create_text_encoder(
    name: str, pretrained: str | None = None, dim: int = 512, flag: str = "--model.text_encoder"
) -> SentenceEncoder:
    """The sentence encoder ``name``: ``open_clip:NAME`` / ``local-dir:PATH`` (weights: the open_clip tag or file
    ``pretrained``; inside the folder for ``local-dir:``) or a BERT name / folder (``pretrained`` unused)."""
    if name.startswith(OPEN_CLIP_PREFIXES):
        arch = name.removeprefix("open_clip:")
        built = create_open_clip(arch, pretrained=pretrained)
        model = built.model
        tower = TextEncoder(model.text if hasattr(model, "text") else model)
        return OpenCLIPSentenceEncoder(tower, built.tokenizer, dim).train()
    bert, tokenizer = load_bert(name, flag)
    return BertSentenceEncoder(bert, tokenizer, dim).train()
