"""Language-tagged text from any IIIF Presentation version, as one shape: a v3 language map.

Presentation 1/2 write a label as a plain string, a JSON-LD value object
(``{"@value": "Titre", "@language": "fr"}``) or a list mixing both; Presentation 3 writes a
language map (``{"fr": ["Titre"]}``). Real manifests also carry ``"@none"`` keys, bare strings
where lists belong, numbers and the odd nested object. :func:`to_language_map` turns all of
these into a :data:`LanguageMap`, and reports what it had to drop instead of raising, because a
bad label must never cost us a manuscript.

HTML is kept exactly as published: sanitising belongs to the web layer, which knows where the
text is shown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Optional

from manuscripts_search.iiif.model import LanguageMap

NO_LANGUAGE = "none"

# Keys some publishers use for "no language" instead of the spec's "none".
_NO_LANGUAGE_ALIASES = {"", "@none", "none"}

Warn = Callable[[str], None]


def _ignore(_: str) -> None:
    return None


def _language_key(raw: Any) -> str:
    if not isinstance(raw, str):
        return NO_LANGUAGE
    key = raw.strip()
    return NO_LANGUAGE if key in _NO_LANGUAGE_ALIASES else key


def _scalar_text(value: Any) -> Optional[str]:
    """A string for a JSON scalar that can sensibly be shown as text, else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # spelt as in the JSON, not Python's "True"
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return None


def _looks_like_resource(obj: dict) -> bool:
    # {"id": ..., "type": ...} is a linked resource, not a map with Indonesian ("id") text.
    return ("id" in obj or "@id" in obj) and ("type" in obj or "@type" in obj)


def _add(result: LanguageMap, language: str, text: str) -> None:
    result.setdefault(language, []).append(text)


def _collect(value: Any, result: LanguageMap, warn: Warn, where: str, depth: int) -> None:
    if value is None:
        return
    if depth > 4:
        warn(f"{where}: nesting too deep for a text value; ignored")
        return
    text = _scalar_text(value)
    if text is not None:
        _add(result, NO_LANGUAGE, text)
        return
    if isinstance(value, list):
        for item in value:
            _collect(item, result, warn, where, depth + 1)
        return
    if not isinstance(value, dict):
        warn(f"{where}: {type(value).__name__} is not text; ignored")
        return
    if "@value" in value:  # JSON-LD value object (Presentation 1/2)
        text = _scalar_text(value["@value"])
        if text is None:
            warn(f"{where}: @value is {type(value['@value']).__name__}, not text; ignored")
            return
        _add(result, _language_key(value.get("@language")), text)
        return
    if _looks_like_resource(value) or any(
        isinstance(key, str) and key.startswith("@") and key != "@none" for key in value
    ):
        warn(f"{where}: an object that is not a language map; ignored")
        return
    for raw_key, texts in value.items():  # Presentation 3 language map
        language = _language_key(raw_key)
        for item in texts if isinstance(texts, list) else [texts]:
            text = _scalar_text(item)
            if text is None:
                if item is not None:
                    warn(f"{where}: [{raw_key!r}] holds {type(item).__name__}, not text; ignored")
                continue
            _add(result, language, text)


def to_language_map(value: Any, warn: Optional[Warn] = None, where: str = "value") -> LanguageMap:
    """Normalise a v1/v2 value or a v3 language map into a :data:`LanguageMap`.

    Accepts strings, numbers, ``{"@value", "@language"}`` objects, language maps (``"@none"``
    and ``""`` keys become ``"none"``; a bare string in place of a list is accepted) and lists of
    any of these. Values are kept verbatim, HTML and empty strings included; languages with no
    values are left out. Anything else is dropped and reported through ``warn`` (called with a
    message naming ``where``). Never raises.
    """
    result: LanguageMap = {}
    _collect(value, result, warn or _ignore, where, 0)
    return result


def _matching_keys(langmap: LanguageMap, language: str) -> Iterable[str]:
    if language in langmap:
        yield language
    if not isinstance(language, str):
        return
    # "en" also accepts "en-GB", "en-US" ... in the order they were published.
    prefix = language.lower() + "-"
    for key in langmap:
        if isinstance(key, str) and key.lower().startswith(prefix):
            yield key


def first_value(
    langmap: Optional[LanguageMap], preferred: Iterable[str] = ("en", NO_LANGUAGE)
) -> Optional[str]:
    """The text to display from ``langmap``: the first non-blank value in the first preferred
    language that has one (``"en"`` also matches ``"en-GB"``), else the first non-blank value in
    any language, else None. Never raises."""
    if not langmap or not isinstance(langmap, dict):
        return None
    ordered_keys: list[str] = []
    for language in [*preferred, *langmap]:
        for key in _matching_keys(langmap, language):
            if key not in ordered_keys:
                ordered_keys.append(key)
    for key in ordered_keys:
        for text in langmap.get(key) or ():
            if isinstance(text, str) and text.strip():
                return text
    return None
