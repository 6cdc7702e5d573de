"""Size and nesting limits for JSON documents from other servers, checked before decoding.

A 1 GB manifest or ``[[[[…]]]]`` ten thousand levels deep is not IIIF but an attack or an
accident; either would cost memory and stack far beyond any real document (the real-world
corpus tops out at 1.5 MB and 17 levels). The nesting check runs over the raw text before
``json.loads``, so a deep document never reaches a recursive decoder or our own recursive
readers, and costs a few milliseconds per megabyte (numpy, no Python loop per character).
"""
from __future__ import annotations

import re

from .model import IIIFParseError

MAX_JSON_BYTES = 64 * 1024 * 1024  # characters of decoded text; matches the harvester's default body cap
MAX_JSON_DEPTH = 100

# In JSON a backslash always escapes the next character; dropping the pairs leaves only real quotes.
_ESCAPE = re.compile(r"\\.", re.DOTALL)


def check_json_text(text: str, max_chars: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise IIIFParseError when ``text`` is longer than ``max_chars`` or nests arrays/objects
    deeper than ``max_depth``. Malformed JSON is left for the decoder to report."""
    if len(text) > max_chars:
        raise IIIFParseError(f"document of {len(text)} characters exceeds the limit of {max_chars}")
    if text.count("[") + text.count("{") <= max_depth:
        return  # cannot nest deeper than it has brackets
    depth = nesting_depth(text)
    if depth > max_depth:
        raise IIIFParseError(f"JSON nests {depth} levels deep; at most {max_depth} are accepted")


def nesting_depth(text: str) -> int:
    """The deepest array/object nesting in JSON ``text`` (brackets inside strings ignored)."""
    import numpy as np

    if "\\" in text:
        text = _ESCAPE.sub("", text)
    # +1 opening bracket, -1 closing bracket, 2 quote, 0 anything else; UTF-8 multi-byte
    # sequences never contain these ASCII bytes.
    kinds = np.zeros(256, dtype=np.int8)
    kinds[[ord("["), ord("{")]], kinds[[ord("]"), ord("}")]], kinds[ord('"')] = 1, -1, 2
    tokens = kinds[np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)]
    tokens = tokens[tokens != 0]
    if not len(tokens):
        return 0
    quotes = tokens == 2
    inside_string = (np.cumsum(quotes, dtype=np.int64) & 1) == 1
    steps = np.where(quotes | inside_string, 0, tokens).astype(np.int64)
    return int(np.cumsum(steps).max())


def check_json_value(value, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise IIIFParseError when an already decoded ``value`` nests deeper than ``max_depth``
    (for documents handed over as Python objects). Iterative, so any depth is safe to measure."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise IIIFParseError(f"JSON nests more than {max_depth} levels deep")
        stack.extend((child, depth + 1) for child in children)


# ``\u0000`` preceded by an even number of backslashes is an escaped NUL (an odd number would make
# the first backslash part of an escaped backslash, "\\u0000", which is the text "\u0000").
_ESCAPED_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def remove_nul_escapes(text: str) -> tuple[str, int]:
    """``text`` (JSON) without escaped NUL characters, and how many there were.

    NUL is never meaningful in a label or a transcription, and PostgreSQL cannot store it in a
    text column: one manifest with ``\\u0000`` in its metadata would make every later write of
    its search document fail. Raw NUL bytes need no treatment: JSON does not allow them."""
    if "\\u0000" not in text:
        return text, 0
    return _ESCAPED_NUL.subn(r"\1", text)


def remove_nul_characters(value):
    """A copy of decoded JSON ``value`` without NUL characters in any string (keys included),
    and how many were removed; ``value`` itself when there are none."""
    removed = 0

    def clean(item):
        nonlocal removed
        if isinstance(item, str):
            if "\x00" in item:
                removed += item.count("\x00")
                return item.replace("\x00", "")
            return item
        if isinstance(item, dict):
            return {clean(k): clean(v) for k, v in item.items()}
        if isinstance(item, list):
            return [clean(v) for v in item]
        return item

    cleaned = clean(value)  # depth is bounded by check_json_value, which runs first
    return (cleaned, removed) if removed else (value, 0)
