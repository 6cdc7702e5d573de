"""The one rule for comparing words in searches: accents off, lower case, one character out for
each character in.

It is the rule the full-text indexes already apply (SQLite FTS5 ``unicode61 remove_diacritics``,
PostgreSQL's ``msearch_fold`` from migration 0005 under the 'simple' configuration), so a word
the database matches is also the word a snippet centres on, a Content Search hit highlights, an
autocomplete suggests and a provider filter accepts. Keeping lengths equal lets positions in
folded text stand for positions in the original. A consequence, the same on both databases:
"paques" finds "Pâques", but "strasse" does not find "Straße" (ß has no decomposition and is
its own lower case; mapping it to "ss" would change lengths and neither index does it).

Words are split as both indexes split them: a word is a run of letters and digits, and every
other character separates words, "_" included (FTS5's unicode61 and PostgreSQL's parser read
"ms_bnf_fr-24428_bestiary_129" as ms, bnf, fr, 24428, bestiary, 129; a regular expression's word
class does not split at "_", and Content Search missed the "bestiary" that site search found).
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Optional

WORD = re.compile(r"[^\W_]+")  # letters and digits: what ``\w`` matches, less "_"
_NOT_AFTER_A_WORD = r"(?<![^\W_])"


@lru_cache(maxsize=4096)
def _fold_character(character: str) -> str:
    base = unicodedata.normalize("NFKD", character)[:1] or character  # "é" → "e", "ﬁ" → "f"
    lower = base.lower()
    return lower if len(lower) == 1 else base  # "İ".lower() is two characters: keep one


def fold(text: str) -> str:
    """``text`` compared as searches compare it: "Pâques" → "paques", "Straße" → "straße"."""
    return "".join(_fold_character(character) for character in text)


def words(text: str) -> list[str]:
    """The words of ``text``, as the full-text indexes split it."""
    return WORD.findall(text)


def term_pattern(term: str) -> Optional[re.Pattern]:
    """Where ``term`` (a word, or a phrase of words) starts a word in *folded* text: its folded
    words in order, any separators between them. None when ``term`` has no word."""
    parts = words(fold(term))
    if not parts:
        return None
    return re.compile(_NOT_AFTER_A_WORD + r"[\W_]+".join(re.escape(part) for part in parts))
