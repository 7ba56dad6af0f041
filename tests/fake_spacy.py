"""A stand-in for a parsed spaCy doc, to test the official noun-phrase rules without spaCy."""

from __future__ import annotations

from types import SimpleNamespace


class FakeChunk(list):
    """A spaCy noun chunk: its tokens, its text and its root token."""

    def __init__(self, tokens, text, root=None):
        super().__init__(tokens)
        self.text = text
        self.root = root if root is not None else tokens[-1]


class FakeDoc:
    """The part of a parsed spaCy doc the rules read: tokens (``i``, ``text``, ``head``, ``children``), noun chunks
    (token ids and text; the root is the chunk's last token), text."""

    def __init__(self, words, heads, children, chunks):
        self.tokens = [SimpleNamespace(i=i, text=w, children=[]) for i, w in enumerate(words)]
        for token, head in zip(self.tokens, heads):
            token.head = self.tokens[head]
        for parent, kids in children.items():
            self.tokens[parent].children = [self.tokens[k] for k in kids]
        self.noun_chunks = [FakeChunk([self.tokens[i] for i in ids], text) for ids, text in chunks]
        self.text = " ".join(words)

    def __iter__(self):
        return iter(self.tokens)
