"""The one rule for comparing words in searches: accents off, lower case, one character out for
each character in.

It is the rule the full-text indexes already apply (SQLite FTS5 ``unicode61 remove_diacritics``,
PostgreSQL's ``msearch_fold`` from migration 0005 under the 'simple' configuration), so a word
the database matches is also the word a snippet centres on, a Content Search hit highlights, an
autocomplete suggests and a provider filter accepts. Keeping lengths equal lets positions in
folded text stand for positions in the original. A consequence, the same on both databases:
"paques" finds "Pâques", but "strasse" does not find "Straße" (ß has no decomposition and is
its own lower case; mapping it to "ss" would change lengths and neither index does it).
"""
from __future__ import annotations

import unicodedata
from functools import lru_cache


@lru_cache(maxsize=4096)
def _fold_character(character: str) -> str:
    base = unicodedata.normalize("NFKD", character)[:1] or character  # "é" → "e", "ﬁ" → "f"
    lower = base.lower()
    return lower if len(lower) == 1 else base  # "İ".lower() is two characters: keep one


def fold(text: str) -> str:
    """``text`` compared as searches compare it: "Pâques" → "paques", "Straße" → "straße"."""
    return "".join(_fold_character(character) for character in text)
