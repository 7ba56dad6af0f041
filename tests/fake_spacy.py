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


PARSES = {
    "a dog runs on the beach": (
        [1, 2, 2, 2, 5, 3],
        ["det", "nsubj", "ROOT", "prep", "det", "pobj"],
        ["DET", "NOUN", "VERB", "ADP", "DET", "NOUN"],
    ),
    "black and white photo of a dog": (
        [3, 0, 0, 3, 3, 6, 4],
        ["amod", "cc", "conj", "ROOT", "prep", "det", "pobj"],
        ["ADJ", "CCONJ", "ADJ", "NOUN", "ADP", "DET", "NOUN"],
    ),
    "man riding a horse": ([0, 0, 3, 1], ["ROOT", "acl", "det", "dobj"], ["NOUN", "VERB", "DET", "NOUN"]),
}
"""Dependency parses (heads, labels, coarse POS) of a few captions, as an English spaCy parser gives them."""


def save_test_pipeline(folder):
    """A real spaCy pipeline (blank English + a component that sets the :data:`PARSES`), saved to ``folder``:
    ``spacy.load(folder)`` gives docs with real ``noun_chunks``. Needs spaCy."""
    import spacy
    from spacy.language import Language

    if not Language.has_factory("ris_test_parser"):

        @Language.component("ris_test_parser")
        def parse(doc):
            heads, deps, pos = PARSES[doc.text]
            for token, head, dep, tag in zip(doc, heads, deps, pos):
                token.head, token.dep_, token.pos_ = doc[head], dep, tag
            return doc

    nlp = spacy.blank("en")
    nlp.add_pipe("ris_test_parser")
    nlp.to_disk(folder)
    return folder
