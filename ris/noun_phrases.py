"""Noun phrases of captions and referring expressions: one rule engine and one spaCy wrapper for both users.

Two readings of "the noun phrase" of a text are needed, and every extractor gives both (:class:`NounPhrases`):

- the **head noun** of the Pseudo-RIS generator (docs/method.md §5): the root word of the noun chunk of the *first*
  root, for the CLIP noun prompt of the distinctiveness scores (:func:`noun_prompt`);
- the **target noun phrase** of Global-Local CLIP (docs/baselines.md §2.6): the text of the noun chunk of the *last*
  root, for its local text feature.

Both fall back to the whole text when no chunk is found. Extractors:

- :class:`RuleNounPhrases` (no model needed; the documented fallback of the official spaCy rule, docs/method.md §5)
  finds the head noun of plain captions with a few English rules:

  1. words are lower-cased letters/digits/apostrophes; punctuation splits chunks;
  2. if ``known_nouns`` are given (e.g. the synthetic world's categories and synonyms, singular or plural forms
     listed explicitly), the first word that is a known noun is the head noun;
  3. leading determiners and numbers are skipped, then *frames* that name the picture or a quantity rather than
     the object: "(black and white) photo / picture / image / close up / view / portrait … of", "a group / herd /
     couple / pair … of" ("black and white photo of a dog" → "dog", where spaCy's rule gives "photo");
  4. the chunk then extends over the following words until a *boundary*: a preposition, conjunction (except "and"
     between two colours: "a yellow and blue train"), auxiliary, pronoun or punctuation (a position word such as
     "left" may open the chunk: "the left cup"); a third-person verb of a closed list ("a dog *runs* on the
     beach", "a giraffe *eats* leaves"); a word directly followed by a determiner ("a man *holds* a bat"); a verb
     form or an ``-ing``/``-ed`` word followed by a preposition, adverb, determiner or the end ("a man *sitting*
     on a bench"), or an ``-ing``/``-ed`` word followed by a colour ("a hydrant *painted* red"), whereas "a
     *striped* shirt" stays one chunk;
  5. the head noun is the last word of that chunk; if the chunk is empty, the whole text (stripped) is returned,
     as the official fallback does;
  6. the target noun phrase is the text's words up to and including the head noun ("the big red circle on the
     left" → "the big red circle"), else the normalised text (:func:`normalize_text`).

- :class:`SpacyNounPhrases` (extra ``spacy`` plus a spaCy model such as ``en_core_web_lg``) implements both official
  rules exactly: take the first (head noun) or last (target phrase) token that is its own head; if it is not in a
  noun chunk, try its first child (one hop); return that chunk's root text (head noun) or text (target phrase), else
  the whole text. Texts run through ``nlp.pipe`` with the NER and lemmatizer disabled (docs/method.md §8.2); the
  target phrase is parsed from the normalised text, as Global-Local CLIP does.

:func:`make_noun_phrases` builds an extractor from a setting string (``rules``, ``spacy``, ``spacy:<model>``, where
``<model>`` is an installed spaCy package or a pipeline folder); :func:`check_noun_phrases` checks a setting without
loading a model (spaCy and the model installed), so a run fails at its start with the install command;
:func:`noun_phrase_provenance` describes a setting for the generator's manifest.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

DEFAULT_SPACY_MODEL = "en_core_web_lg"
"""The official code's spaCy model (docs/method.md §5)."""
RULE_KINDS = ("rules", "rule")
"""The settings that select :class:`RuleNounPhrases`."""

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
COLOURS = _words(
    "black white red green blue yellow orange purple pink brown grey gray silver gold golden beige tan dark light"
)
FRAME_NOUNS = _words(
    "photo photos photograph picture pictures pic image images view views closeup close-up portrait shot snapshot "
    "illustration drawing painting sketch rendering silhouette scene"
)
FRAME_MODIFIERS = COLOURS | _words(
    "and & close up aerial old vintage stock cartoon digital blurry blurred color colour colored sepia low high "
    "angle wide side top quality hd 3d small large nice beautiful cute funny"
)
COLLECTIVES = _words(
    "group groups couple pair bunch herd flock crowd team lot lots number variety collection pile stack row rows "
    "few handful dozen swarm school pack fleet line"
)
FRAME_LINKS = _words("of showing depicting featuring")
VERB_BASES = _words(
    "run walk sit stand hold ride play jump fly eat look lie wear carry swim drive cross pose smile read talk cook "
    "wait fall grow hang sleep throw catch hit kick climb sing perform attend arrive celebrate take make get go come "
    "use pull push float sail graze stare lean reach prepare serve put drink wave gather chase skate ski surf rise "
    "set fill paint sell travel move turn head lay rest enjoy watch stop"
)
NOT_PARTICIPLES = _words(
    "building buildings ceiling painting paintings clothing wedding evening morning string thing things wing wings "
    "spring swing icing railing sibling pudding topping toppings awning earring ring king bed beds shed sled red seed "
    "speed steed"
)
"""Nouns and adjectives that look like ``-ing`` / ``-ed`` verb forms."""
ADVERBS = _words("together around away outside inside home here there again alone quickly slowly very")


def _third_person(verb: str) -> str:
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2:-1] not in ("a", "e", "i", "o", "u"):
        return verb[:-1] + "ies"
    return verb + "s"


AMBIGUOUS_VERBS = _words("set ski watch stop rest head paint")
"""Verbs whose third-person form is a common plural noun ("skis", "watches"): they end a chunk only by position."""
THIRD_PERSON_VERBS = frozenset(_third_person(v) for v in VERB_BASES - AMBIGUOUS_VERBS)
"""Third-person verb forms that end a chunk wherever they follow its first word."""
VERB_FORMS = VERB_BASES | frozenset(_third_person(v) for v in VERB_BASES)


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
        chunk = self._first_chunk(tokens, self._skip_frames(tokens))
        return chunk[-1] if chunk else text.strip()

    def target_phrase(self, text: str) -> str:
        """The words of one text up to and including its head noun, else the normalised text."""
        words = _TOKEN_RE.findall(text.lower())
        head = self.head_noun(text)
        return " ".join(words[: words.index(head) + 1]) if head in words else normalize_text(text)

    @staticmethod
    def _skip_determiners(tokens: list[str], start: int) -> int:
        while start < len(tokens) and (
            tokens[start] in DETERMINERS or tokens[start].isdigit() or not _is_word(tokens[start])
        ):
            start += 1
        return start

    def _skip_frames(self, tokens: list[str]) -> int:
        """Index of the first chunk word after leading determiners and picture / quantity frames (rule 3)."""
        start = self._skip_determiners(tokens, 0)
        while True:
            end = start
            while end < len(tokens) and end - start < 4 and tokens[end] in FRAME_MODIFIERS | FRAME_NOUNS:
                end += 1
            framed = end > start and (tokens[end - 1] in FRAME_NOUNS or tokens[end - 1] == "up")
            if not framed and start < len(tokens) and tokens[start] in COLLECTIVES:
                end, framed = start + 1, True
            if not (framed and end < len(tokens) and tokens[end] in FRAME_LINKS):
                return start
            start = self._skip_determiners(tokens, end + 1)

    @staticmethod
    def _ends_chunk(token: str, prev: str, following: list[str]) -> bool:
        """Whether ``token``, after the chunk word ``prev`` and before the words ``following``, is a boundary or
        acts as a verb (rule 4)."""
        nxt = following[0] if following else None
        if token == "and" and prev in COLOURS and nxt in COLOURS:
            return False
        if token in BOUNDARY_WORDS or token in THIRD_PERSON_VERBS or nxt in DETERMINERS:
            return True
        participle = token.endswith(("ing", "ed")) and token not in NOT_PARTICIPLES

        def free(word: str | None) -> bool:
            return word is None or not _is_word(word) or word in PREPOSITIONS or word in ADVERBS or word.isdigit()

        if free(nxt):
            return participle or token in VERB_FORMS
        after_colour = following[1] if len(following) > 1 else None
        return participle and nxt in COLOURS and (free(after_colour) or after_colour in ("and", "or"))

    def _first_chunk(self, tokens: list[str], start: int) -> list[str]:
        chunk: list[str] = []
        for i in range(start, len(tokens)):
            token = tokens[i]
            if not _is_word(token) or (not chunk and token in BOUNDARY_WORDS and token not in POSITION_WORDS):
                break
            if chunk and self._ends_chunk(token, chunk[-1], tokens[i + 1 : i + 3]):
                break
            chunk.append(token)
        return chunk

    def head_nouns(self, texts: Sequence[str]) -> list[str]:
        return [self.head_noun(t) for t in texts]

    def target_phrases(self, texts: Sequence[str]) -> list[str]:
        return [self.target_phrase(t) for t in texts]


class SpacyNounPhrases:
    """The official spaCy rules (module docstring); needs ``pip install 'pseudo-ris[spacy]'`` and the model ``model``
    (an installed spaCy package such as ``en_core_web_lg``, or a pipeline folder)."""

    def __init__(self, model: str = DEFAULT_SPACY_MODEL, batch_size: int = 256) -> None:
        check_noun_phrases(f"spacy:{model}")
        import spacy

        present = _spacy_meta(model).get("pipeline", [])
        self.nlp = spacy.load(model, disable=[n for n in ("ner", "lemmatizer") if n in present])
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


def _spacy_meta(model: str) -> dict[str, Any]:
    """The meta data (``meta.json``) of the spaCy pipeline ``model``, a package or a folder."""
    import spacy

    path = Path(model)
    return dict(spacy.util.load_meta(path / "meta.json") if path.is_dir() else spacy.util.get_package_meta(model))


def _spacy_kind(kind: str) -> str | None:
    """The spaCy model of a ``spacy`` / ``spacy:<model>`` setting, ``None`` for other settings."""
    if kind == "spacy":
        return DEFAULT_SPACY_MODEL
    return kind.split(":", 1)[1] if kind.startswith("spacy:") else None


def check_noun_phrases(kind: str) -> None:
    """Check a setting without loading a model: ``ValueError`` for an unknown one, ``ImportError`` with the install
    command when spaCy or the spaCy model is missing."""
    if kind in RULE_KINDS:
        return
    model = _spacy_kind(kind)
    if model is None:
        raise ValueError(f"unknown noun phrase extractor {kind!r}; expected 'rules', 'spacy' or 'spacy:<model>'")
    if importlib.util.find_spec("spacy") is None:
        raise ImportError(
            f"noun extractor {kind!r} needs spaCy: pip install 'pseudo-ris[spacy]' && python -m spacy download "
            f"{model} (or use the rule-based fallback: rules)"
        )
    if not Path(model).is_dir() and importlib.util.find_spec(model) is None:
        raise ImportError(
            f"noun extractor {kind!r}: the spaCy model {model!r} is not installed: python -m spacy download {model} "
            "(or use the rule-based fallback: rules)"
        )


def noun_phrase_provenance(kind: str, known_nouns: Iterable[str] | None = None) -> dict[str, Any]:
    """What determines the extractor of setting ``kind``: the rules and their known nouns, or spaCy's version and
    the model with its version (for the generator's manifest)."""
    model = _spacy_kind(kind)
    if model is None:
        return {"extractor": "rules", "known_nouns": None if known_nouns is None else sorted(set(known_nouns))}
    return {"extractor": "spacy", "model": model, "model_version": _spacy_meta(model).get("version"),
            "spacy_version": metadata.version("spacy")}


def make_noun_phrases(kind: str = "rules", known_nouns: Iterable[str] | None = None) -> NounPhrases:
    """``"rules"`` (default, :class:`RuleNounPhrases` with ``known_nouns``) or ``"spacy"`` / ``"spacy:<model>"``
    (:class:`SpacyNounPhrases`, default model ``en_core_web_lg``); see :func:`check_noun_phrases` for the errors."""
    check_noun_phrases(kind)
    model = _spacy_kind(kind)
    return RuleNounPhrases(known_nouns) if model is None else SpacyNounPhrases(model)
