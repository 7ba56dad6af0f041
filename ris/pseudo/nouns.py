"""Head-noun extraction from captions and the CLIP noun prompt (method.md §5).

Two extractors share one call signature, ``extractor(captions) -> head nouns`` (batched):

- :class:`RuleNounExtractor` (the default; no model needed) approximates the official spaCy rule, "the head noun
  of the first noun chunk, else the whole caption", with a few English rules:

  1. words are lower-cased letters/digits/apostrophes; punctuation splits chunks;
  2. if ``known_nouns`` are given (e.g. the synthetic world's categories and synonyms, singular or plural forms
     listed explicitly), the first caption word that is a known noun is the head noun;
  3. otherwise the first chunk starts at the first word that is not a determiner, number or pronoun and extends
     over the following words until a *boundary*: a preposition, conjunction, auxiliary/common verb, relative
     pronoun or punctuation (a position word such as "left" may open the chunk: "the left cup"); a word directly
     followed by a determiner (it acts as a verb: "a man *holds* a bat");
     an ``-ing``/``-ed`` word followed by a preposition, determiner or the end ("a man *sitting* on a bench"),
     whereas "a *striped* shirt" stays one chunk;
  4. the head noun is the last word of that chunk; if the chunk is empty, the whole caption (stripped) is
     returned, as the official fallback does.

- :class:`SpacyNounExtractor` (extra ``spacy`` plus a spaCy model such as ``en_core_web_lg``) implements the
  official rule exactly: root = first token that is its own head; if it is not in a noun chunk, try its first
  child (one hop); return that chunk's root text, else the whole caption. Captions run through ``nlp.pipe`` with
  the NER and lemmatizer disabled (method.md §8.2).

:func:`noun_prompt` builds the CLIP prompt: "a photo of a " + noun, or "a photo of " + text when the text starts
with "a", "an" or "the".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Protocol

_TOKEN_RE = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")



def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


DETERMINERS = _words(
    "a an the this that these those his her its their our my your some any each every another several many few "
    "one two three four five six seven eight nine ten both all no"
)
PREPOSITIONS = _words(
    "of on in at with near next to by from under over above below behind beside besides between into onto "
    "through across along around against among inside outside toward towards upon within without up down off "
    "out left right top bottom front back like than for while during after before about"
)
BOUNDARY_WORDS = PREPOSITIONS | _words(
    "and or but nor so yet is are was were be been being am has have had do does did can could will would may "
    "might should must that which who whom whose where when what there here it they he she we you i "
    "sits sit stands stand looks look holds hold"
)
POSITION_WORDS = _words("left right top bottom front back middle")


class NounExtractor(Protocol):
    """``extractor(captions) -> one head noun (or the whole caption as fallback) per caption``."""

    def __call__(self, captions: Sequence[str]) -> list[str]: ...


def noun_prompt(noun: str) -> str:
    """The CLIP prompt for a head noun (method.md §5)."""
    noun = noun.strip()
    first = noun.split(maxsplit=1)[0].lower() if noun else ""
    return f"a photo of {noun}" if first in ("a", "an", "the") else f"a photo of a {noun}"


def _is_word(token: str) -> bool:
    return token[0].isalnum() or token[0] == "'"


class RuleNounExtractor:
    """The rule-based head-noun extractor (the default; rules in the module docstring).

    Args:
        known_nouns: optional nouns that are heads whenever they occur (first occurrence wins), e.g. the
            synthetic world's categories ``["circle", "square", "box", …]``.
    """

    def __init__(self, known_nouns: Iterable[str] | None = None) -> None:
        self.known_nouns = frozenset(n.lower() for n in known_nouns) if known_nouns is not None else frozenset()

    def head_noun(self, caption: str) -> str:
        """The head noun of one caption, or the stripped caption when no chunk is found."""
        tokens = _TOKEN_RE.findall(caption.lower())
        for token in tokens:
            if token in self.known_nouns:
                return token
        chunk = self._first_chunk(tokens)
        return chunk[-1] if chunk else caption.strip()

    def _first_chunk(self, tokens: list[str]) -> list[str]:
        start = 0
        while start < len(tokens) and (
            tokens[start] in DETERMINERS or tokens[start].isdigit() or not _is_word(tokens[start])
        ):
            start += 1
        chunk: list[str] = []
        for i in range(start, len(tokens)):
            token = tokens[i]
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if not _is_word(token) or (token in BOUNDARY_WORDS and (chunk or token not in POSITION_WORDS)):
                break
            if chunk and nxt in DETERMINERS:
                break
            if chunk and token.endswith(("ing", "ed")) and (nxt is None or nxt in PREPOSITIONS or nxt in DETERMINERS):
                break
            chunk.append(token)
        return chunk

    def __call__(self, captions: Sequence[str]) -> list[str]:
        return [self.head_noun(c) for c in captions]


class SpacyNounExtractor:
    """The official spaCy rule (method.md §5); needs ``pip install spacy`` and the model ``model``."""

    def __init__(self, model: str = "en_core_web_lg", batch_size: int = 256) -> None:
        try:
            import spacy
        except ImportError as err:
            raise ImportError("SpacyNounExtractor needs spaCy: pip install 'pseudo-ris[spacy]'") from err
        try:
            self.nlp = spacy.load(model, disable=["ner", "lemmatizer"])
        except OSError as err:
            raise ImportError(
                f"spaCy model {model!r} is not installed (python -m spacy download {model}): {err}"
            ) from err
        self.model = model
        self.batch_size = batch_size

    @staticmethod
    def _head(doc: object) -> str:
        chunk_of = {}
        for chunk in doc.noun_chunks:  # type: ignore[attr-defined]
            for token in chunk:
                chunk_of[token.i] = chunk
        roots = [t for t in doc if t.head.i == t.i]  # type: ignore[attr-defined]
        if not roots:
            return doc.text  # type: ignore[attr-defined]
        root = roots[0]
        if root.i not in chunk_of:
            first_child = next(iter(root.children), None)
            if first_child is None or first_child.i not in chunk_of:
                return doc.text  # type: ignore[attr-defined]
            root = first_child
        return chunk_of[root.i].root.text

    def __call__(self, captions: Sequence[str]) -> list[str]:
        return [self._head(doc) for doc in self.nlp.pipe(list(captions), batch_size=self.batch_size)]


def make_noun_extractor(kind: str = "rules", known_nouns: Iterable[str] | None = None) -> NounExtractor:
    """``"rules"`` (default, :class:`RuleNounExtractor` with ``known_nouns``) or ``"spacy"`` /
    ``"spacy:<model>"`` (:class:`SpacyNounExtractor`, default model ``en_core_web_lg``)."""
    if kind == "rules":
        return RuleNounExtractor(known_nouns)
    if kind == "spacy" or kind.startswith("spacy:"):
        return SpacyNounExtractor(kind.split(":", 1)[1] if ":" in kind else "en_core_web_lg")
    raise ValueError(f"unknown noun extractor {kind!r}; expected 'rules', 'spacy' or 'spacy:<model>'")
