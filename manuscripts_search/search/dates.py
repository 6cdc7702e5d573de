"""The years a manuscript is dated to, from its navDate or, without one, its metadata ("Date:
c. 1450", "1450-1475", "15th century", "s. XV"): for the date facet and the date filter, which
must agree (a facet's link filters to what it counted)."""
from __future__ import annotations

import re
from typing import Any, Optional

from .text_folding import fold

_NAV_YEAR = re.compile(r"^(\d{4})")
_RANGE = re.compile(r"\b(\d{3,4})\s*(?:-|–|—|to|bis|à)\s*(\d{3,4})\b")
_YEAR = re.compile(r"\b(\d{3,4})\b")
_CENTURY = re.compile(r"\b(\d{1,2})\s*(?:st|nd|rd|th|e|eme|er|\.)?\s*(?:century|centuries|siecle|jh|jahrhundert)")
_ROMAN_CENTURY = re.compile(r"\b(?:s|saec|saeculum|siecle)\.?\s*([ivxl]{1,6})\b")
_DATE_LABELS = ("date", "datum", "dated", "datation", "period", "century", "siecle", "fecha", "data")
_ROMAN = {"i": 1, "v": 5, "x": 10, "l": 50}
MIN_YEAR, MAX_YEAR = 100, 2100


def _roman(text: str) -> int:
    total = 0
    for position, letter in enumerate(text):
        value = _ROMAN[letter]
        following = _ROMAN[text[position + 1]] if position + 1 < len(text) else 0
        total += -value if value < following else value
    return total


def _plausible(start: int, end: int) -> Optional[tuple[int, int]]:
    if MIN_YEAR <= start <= end <= MAX_YEAR:
        return start, end
    return None


def years_in_text(text: str) -> Optional[tuple[int, int]]:
    """(first year, last year) a date statement names, or None when it names none."""
    folded = fold(text)
    match = _RANGE.search(folded)
    if match:
        return _plausible(int(match.group(1)), int(match.group(2)))
    match = _CENTURY.search(folded)
    if match and 1 <= int(match.group(1)) <= 21:
        start = (int(match.group(1)) - 1) * 100
        return _plausible(max(start, MIN_YEAR), start + 99)
    match = _ROMAN_CENTURY.search(folded)
    if match:
        century = _roman(match.group(1))
        if 1 <= century <= 21:
            start = (century - 1) * 100
            return _plausible(max(start, MIN_YEAR), start + 99)
    match = _YEAR.search(folded)
    if match:
        return _plausible(int(match.group(1)), int(match.group(1)))
    return None


def metadata_years(metadata_entries: Any) -> Optional[tuple[int, int]]:
    """The years of the first metadata entry labelled as a date that names any."""
    from .documents import language_map_texts

    for entry in metadata_entries or []:
        if not isinstance(entry, dict):
            continue
        label = fold(" ".join(language_map_texts(entry.get("label"))))
        if not any(word in label for word in _DATE_LABELS):
            continue
        for value in language_map_texts(entry.get("value")):
            years = years_in_text(value)
            if years:
                return years
    return None


def manuscript_years(nav_date: Optional[str], metadata_entries: Any) -> Optional[tuple[int, int]]:
    """navDate's year when there is one, else the metadata's date statement."""
    if nav_date:
        match = _NAV_YEAR.match(str(nav_date))
        return (int(match.group(1)),) * 2 if match else None
    return metadata_years(metadata_entries)


def century_key(years: tuple[int, int]) -> str:
    """"1400-1499" for a date inside the 15th century (a range over several: its first)."""
    start = years[0] // 100 * 100
    return f"{start:04d}-{start + 99:04d}"


def decade_key(years: tuple[int, int]) -> Optional[str]:
    """"1450-1459" for a date inside one decade; None for a vaguer one."""
    start = years[0] // 10 * 10
    return f"{start:04d}-{start + 9:04d}" if years[1] <= start + 9 else None
