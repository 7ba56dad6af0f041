"""The word-level vocabulary of the synthetic world."""

from __future__ import annotations

from ris.synthetic import expressions
from ris.synthetic.scene import CATEGORIES, COLORS
from ris.tokenizer import WordTokenizer

FUNCTION_WORDS = ("a", "an", "the", "photo", "of")


def world_words() -> list[str]:
    """Every word :func:`~ris.synthetic.expressions.referring_expressions` and
    :func:`~ris.synthetic.expressions.web_captions` can emit in either domain, in a fixed order."""
    categories = dict.fromkeys(c for domain in CATEGORIES.values() for c in domain)
    phrases = [
        *FUNCTION_WORDS,
        *(noun for c in categories for noun in expressions.NOUNS[c]),
        expressions.GENERIC_NOUN,
        *COLORS,
        *(word for options in expressions.ADJECTIVES.values() for word in options),
        *expressions.LOCATION_PREFIX.values(),
        *(p for style in expressions.LOCATION_SUFFIX.values() for options in style.values() for p in options),
        *expressions.RELATIONS,
        expressions.RELATIVE_CLAUSE,
        *(p for options in expressions.RELATION_PHRASES.values() for p in options),
    ]
    return list(dict.fromkeys(word for phrase in phrases for word in phrase.split()))


def world_tokenizer() -> WordTokenizer:
    """The world's :class:`~ris.tokenizer.WordTokenizer`; ids follow the fixed order of :func:`world_words`."""
    return WordTokenizer(world_words())


def world_nouns() -> list[str]:
    """The head nouns of the world's expressions and captions (category nouns and synonyms, then the generic one),
    for the rule-based noun extractor of the distinctiveness filter."""
    nouns = [noun for options in expressions.NOUNS.values() for noun in options]
    return list(dict.fromkeys([*nouns, expressions.GENERIC_NOUN]))
