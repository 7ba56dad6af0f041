"""Tokenizers: one small protocol that every text-handling component takes from the model it serves.

Real checkpoints use open_clip's BPE (:class:`OpenCLIPTokenizer`); the synthetic world uses a word-level
vocabulary (:class:`WordTokenizer`), which keeps its tiny models fast on CPU. Nothing in the framework assumes
CLIP's SOT/EOT ids: they are read from the tokenizer object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

_WORD_RE = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


@runtime_checkable
class Tokenizer(Protocol):
    """What the framework needs of a tokenizer.

    ``encode`` returns content token ids only (no SOT/EOT); ``decode`` turns ids back into text and ignores the
    special ids.
    """

    sot_id: int
    eot_id: int
    pad_id: int
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


def tokenize(tokenizer: Tokenizer, texts: Sequence[str], length: int) -> torch.Tensor:
    """Encode ``texts`` as ``(B, length)`` long ids: SOT, content, EOT, then ``pad_id``.

    Over-long sequences are cut to ``length`` and the last kept token is replaced by EOT (the CRIS convention).
    """
    if length < 2:
        raise ValueError(f"token length must be >= 2 (room for SOT and EOT), got {length}")
    out = torch.full((len(texts), length), tokenizer.pad_id, dtype=torch.long)
    for row, text in enumerate(texts):
        ids = [tokenizer.sot_id, *tokenizer.encode(text), tokenizer.eot_id]
        if len(ids) > length:
            ids = ids[:length]
            ids[-1] = tokenizer.eot_id
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def eot_positions(tokens: torch.Tensor, tokenizer: Tokenizer) -> torch.Tensor:
    """Index of the first EOT in each row of ``tokens`` ``(B, L)`` → ``(B,)``; rows without EOT give ``L - 1``."""
    is_eot = tokens == tokenizer.eot_id
    first = is_eot.float().argmax(dim=1)
    return torch.where(is_eot.any(dim=1), first, torch.full_like(first, tokens.shape[1] - 1))


class WordTokenizer:
    """Word-level tokenizer over a fixed vocabulary (the synthetic world's tokenizer).

    Ids: 0 = PAD, 1 = SOT, 2 = EOT, 3 = UNK, then the words in the order given. Text is lower-cased and split
    into words and single punctuation marks.
    """

    specials = ("<pad>", "<start_of_text>", "<end_of_text>", "<unk>")
    pad_id, sot_id, eot_id, unk_id = 0, 1, 2, 3

    def __init__(self, words: Iterable[str]) -> None:
        self.words: list[str] = []
        for word in words:
            if word not in self.words and word not in self.specials:
                self.words.append(word)
        self.itos = [*self.specials, *self.words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.vocab_size = len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(w, self.unk_id) for w in _WORD_RE.findall(text.lower())]

    def decode(self, ids: Sequence[int]) -> str:
        special = {self.pad_id, self.sot_id, self.eot_id}
        return " ".join(self.itos[int(i)] for i in ids if int(i) not in special)

    def __call__(self, texts: str | Sequence[str], context_length: int = 32) -> torch.Tensor:
        """open_clip-style call: ``(B, context_length)`` ids, so the tokenizer can stand in for open_clip's."""
        return tokenize(self, [texts] if isinstance(texts, str) else list(texts), context_length)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"words": self.words}, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> WordTokenizer:
        try:
            return cls(json.loads(Path(path).read_text())["words"])
        except (OSError, KeyError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: expected a JSON file with a 'words' list ({err})") from err

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WordTokenizer) and other.words == self.words

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size})"


class OpenCLIPTokenizer:
    """Adapter over open_clip's tokenizer for ``model_name`` (BPE for the CLIP/CoCa checkpoints)."""

    pad_id = 0

    def __init__(self, model_name: str = "RN50") -> None:
        import open_clip

        self.model_name = model_name
        self.inner = open_clip.get_tokenizer(model_name)
        if not hasattr(self.inner, "sot_token_id"):
            raise ValueError(f"open_clip model {model_name!r} does not use a BPE tokenizer with SOT/EOT ids")
        self.sot_id = int(self.inner.sot_token_id)
        self.eot_id = int(self.inner.eot_token_id)
        self.vocab_size = int(self.inner.vocab_size)

    def encode(self, text: str) -> list[int]:
        return list(self.inner.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        special = {self.sot_id, self.eot_id, self.pad_id}
        return self.inner.decode([int(i) for i in ids if int(i) not in special]).strip()

    def __call__(self, texts: str | Sequence[str], context_length: int = 77) -> torch.Tensor:
        return tokenize(self, [texts] if isinstance(texts, str) else list(texts), context_length)

    def __repr__(self) -> str:
        return f"OpenCLIPTokenizer({self.model_name!r})"
