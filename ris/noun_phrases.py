"""Noun phrases of captions and referring expressions: one rule engine and one spaCy wrapper for both users.

Two readings of "the noun phrase" of a text are needed, and every extractor gives both (:class:`NounPhrases`):

- the **head noun** of the Pseudo-RIS generator (docs/method.md §5): the root word of the noun chunk of the *first*
  root, for the CLIP noun prompt of the distinctiveness scores (:func:`noun_prompt`);
- the **target noun phrase** of Global-Local CLIP (docs/baselines.md §2.6): the text of the noun chunk of the *last*
  root, for its local text feature.

Both fall back to the whole text when no chunk is found. Extractors:

- :class:`RuleNounPhrases` (the default; no model needed) approximates the spaCy rules with a few English rules:

  1. words are lower-cased letters/digits/apostrophes; punctuation splits chunks;
  2. if ``known_nouns`` are given (e.g. the synthetic world's categories and synonyms, singular or plural forms
     listed explicitly), the first word that is a known noun is the head noun;
  3. otherwise the first chunk starts at the first word that is not a determiner, number or pronoun and extends
     over the following words until a *boundary*: a preposition, conjunction, auxiliary/common verb, relative
     pronoun or punctuation (a position word such as "left" may open the chunk: "the left cup"); a word directly
     followed by a determiner (it acts as a verb: "a man *holds* a bat");
     an ``-ing``/``-ed`` word followed by a preposition, determiner or the end ("a man *sitting* on a bench"),
     whereas "a *striped* shirt" stays one chunk;
  4. the head noun is the last word of that chunk; if the chunk is empty, the whole text (stripped) is returned,
     as the official fallback does;
  5. the target noun phrase is the text's words up to and including the head noun ("the big red circle on the
     left" → "the big red circle"), else the normalised text (:func:`normalize_text`).

- :class:`SpacyNounPhrases` (extra ``spacy`` plus a spaCy model such as ``en_core_web_lg``) implements both official
  rules exactly: take the first (head noun) or last (target phrase) token that is its own head; if it is not in a
  noun chunk, try its first child (one hop); return that chunk's root text (head noun) or text (target phrase), else
  the whole text. Texts run through ``nlp.pipe`` with the NER and lemmatizer disabled (docs/method.md §8.2); the
  target phrase is parsed from the normalised text, as Global-Local CLIP does.

:func:`make_noun_phrases` builds an extractor from a setting string (``rules``, ``spacy``, ``spacy:<model>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

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


class NounPhrases(Protocol):
    """Batched noun-phrase extraction; each method returns one string per text (the whole text as fallback)."""

    def head_nouns(self, texts: Sequence[str]) -> list[str]:
        """The Pseudo-RIS head noun of each text (docs/method.md §5)."""
        ...

    def target_phrases(self, texts: Sequence[str]) -> list[str]:
        """The Global-Local CLIP target noun phrase of each text (docs/baselines.md §2.6)."""
        ...


def normalize_text(text: str) -> str:
    """Lower-case and re-join the words/punctuation marks with single spaces (Global-Local CLIP's preprocessing)."""
    return " ".join(_TOKEN_RE.findall(text.lower()))


def noun_prompt(noun: str) -> str:
    """The CLIP prompt for a head noun (docs/method.md §5): "a photo of a " + noun, or "a photo of " + text when the
    text starts with "a", "an" or "the"."""
    noun = noun.strip()
    first = noun.split(maxsplit=1)[0].lower() if noun else ""
    return f"a photo of {noun}" if first in ("a", "an", "the") else f"a photo of a {noun}"


def _is_word(token: str) -> bool:
    return token[0].isalnum() or token[0] == "'"


class RuleNounPhrases:
    """The rule-based extractor (the default; rules in the module docstring).

    Args:
        known_nouns: optional nouns that are heads whenever they occur (first occurrence wins), e.g. the
            synthetic world's categories ``["circle", "square", "box", …]``.
    """

    def __init__(self, known_nouns: Iterable[str] | None = None) -> None:
        self.known_nouns = frozenset(n.lower() for n in known_nouns) if known_nouns is not None else frozenset()

    def head_noun(self, text: str) -> str:
        """The head noun of one text, or the stripped text when no chunk is found."""
        tokens = _TOKEN_RE.findall(text.lower())
        for token in tokens:
            if token in self.known_nouns:
                return token
        chunk = self._first_chunk(tokens)
        return chunk[-1] if chunk else text.strip()

    def target_phrase(self, text: str) -> str:
        """The words of one text up to and including its head noun, else the normalised text."""
        words = _TOKEN_RE.findall(text.lower())
        head = self.head_noun(text)
        return " ".join(words[: words.index(head) + 1]) if head in words else normalize_text(text)

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

    def head_nouns(self, texts: Sequence[str]) -> list[str]:
        return [self.head_noun(t) for t in texts]

    def target_phrases(self, texts: Sequence[str]) -> list[str]:
        return [self.target_phrase(t) for t in texts]


class SpacyNounPhrases:
    """The official spaCy rules (module docstring); needs ``pip install spacy`` and the model ``model``."""

    def __init__(self, model: str = "en_core_web_lg", batch_size: int = 256) -> None:
        try:
            import spacy
        except ImportError as err:
            raise ImportError("SpacyNounPhrases needs spaCy: pip install 'pseudo-ris[spacy]'") from err
        try:
            self.nlp = spacy.load(model, disable=["ner", "lemmatizer"])
        except OSError as err:
            raise ImportError(
                f"spaCy model {model!r} is not installed (python -m spacy download {model}): {err}"
            ) from err
        self.model = model
        self.batch_size = batch_size

    @staticmethod
    def _root_chunk(doc: Any, root_index: int) -> Any:
        """The noun chunk of the first (``root_index=0``) or last (``-1``) root of a parsed ``doc``, else of that
        root's first child; ``None`` when there is no root or neither token is in a chunk."""
        chunk_of = {token.i: chunk for chunk in doc.noun_chunks for token in chunk}
        roots = [token for token in doc if token.head.i == token.i]
        if not roots:
            return None
        root = roots[root_index]
        if root.i in chunk_of:
            return chunk_of[root.i]
        first_child = next(iter(root.children), None)
        if first_child is not None and first_child.i in chunk_of:
            return chunk_of[first_child.i]
        return None

    @staticmethod
    def head_noun_of(doc: Any) -> str:
        """Pseudo-RIS's rule on a parsed ``doc``: the root word of the first root's chunk, else the whole text."""
        chunk = SpacyNounPhrases._root_chunk(doc, 0)
        return doc.text if chunk is None else chunk.root.text

    @staticmethod
    def target_phrase_of(doc: Any) -> str:
        """Global-Local CLIP's rule on a parsed ``doc``: the text of the last root's chunk, else the whole text."""
        chunk = SpacyNounPhrases._root_chunk(doc, -1)
        return doc.text if chunk is None else chunk.text

    def head_nouns(self, texts: Sequence[str]) -> list[str]:
        return [self.head_noun_of(doc) for doc in self.nlp.pipe(list(texts), batch_size=self.batch_size)]

    def target_phrases(self, texts: Sequence[str]) -> list[str]:
        normalised = [normalize_text(t) for t in texts]
        return [self.target_phrase_of(doc) for doc in self.nlp.pipe(normalised, batch_size=self.batch_size)]


def make_noun_phrases(kind: str = "rules", known_nouns: Iterable[str] | None = None) -> NounPhrases:
    """``"rules"`` (default, :class:`RuleNounPhrases` with ``known_nouns``) or ``"spacy"`` / ``"spacy:<model>"``
    (:class:`SpacyNounPhrases`, default model ``en_core_web_lg``)."""
    if kind == "rules":
        return RuleNounPhrases(known_nouns)
    if kind == "spacy" or kind.startswith("spacy:"):
        return SpacyNounPhrases(kind.split(":", 1)[1] if ":" in kind else "en_core_web_lg")
    raise ValueError(f"unknown noun phrase extractor {kind!r}; expected 'rules', 'spacy' or 'spacy:<model>'")
