"""Manifest text on pages: IIIF's small HTML subset kept, everything else made inert.

Presentation 3 (section 4.4 "HTML markup in property values") lets ``summary``, ``metadata``
values and ``requiredStatement`` values carry HTML: a value starting with ``<`` and ending with
``>`` is HTML, and only ``a``, ``b``, ``br``, ``i``, ``img``, ``p``, ``small``, ``span``,
``sub`` and ``sup`` may be used, with ``href`` on ``a`` and ``src``/``alt`` on ``img``. We clean
it with nh3 (the maintained Rust ``ammonia`` sanitiser): other tags are stripped (their text
stays, ``script``/``style`` content goes), attributes outside the list are dropped, and links
and images keep only http(s) URLs. Anything else is plain text, escaped by Jinja.
"""
from __future__ import annotations

from typing import Any, Optional

from markupsafe import Markup, escape

ALLOWED_TAGS = {"a", "b", "br", "i", "img", "p", "small", "span", "sub", "sup"}
ALLOWED_ATTRIBUTES = {"a": {"href"}, "img": {"src", "alt"}}
MAX_VALUE_CHARS = 20_000


def iiif_html(value: Any) -> Markup:
    """Safe markup for one string from a manifest (HTML subset cleaned, else escaped)."""
    import nh3

    if not isinstance(value, str):
        return Markup("")
    text = value.strip()[:MAX_VALUE_CHARS]
    if not (text.startswith("<") and text.endswith(">")):
        return escape(text)
    cleaned = nh3.clean(text, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes={"http", "https"},
                        link_rel="noopener noreferrer nofollow", strip_comments=True,
                        clean_content_tags={"script", "style"}, attribute_filter=_absolute_http_urls_only)
    return Markup(cleaned)


def _absolute_http_urls_only(_element: str, attribute: str, value: str) -> Optional[str]:
    # Relative URLs would resolve against *our* site; a manifest can only mean its own links.
    if attribute in ("href", "src") and not value.strip().lower().startswith(("http://", "https://")):
        return None
    return value


def language_values(value: Any, preferred: tuple[str, ...] = ("en", "none")) -> list[str]:
    """The strings of a language map to display: the preferred language's, else the first
    language that has any. (v2 plain strings and lists are accepted too.)"""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    if not isinstance(value, dict):
        return []
    for language in (*preferred, *value.keys()):
        strings = value.get(language)
        strings = strings if isinstance(strings, list) else [strings]
        found = [s for s in strings if isinstance(s, str) and s.strip()]
        if found:
            return found
    return []


def metadata_rows(entries: Any) -> list[tuple[Markup, list[Markup]]]:
    """``metadata`` entries as (label, values) ready for a template."""
    rows = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        labels = language_values(entry.get("label"))
        values = [iiif_html(v) for v in language_values(entry.get("value"))]
        values = [v for v in values if v]
        if values:
            rows.append((escape(labels[0]) if labels else Markup(""), values))
    return rows[:200]


def statement_row(statement: Any) -> Optional[tuple[Markup, list[Markup]]]:
    """``requiredStatement`` as (label, values), or None."""
    rows = metadata_rows([statement]) if isinstance(statement, dict) else []
    return rows[0] if rows else None
