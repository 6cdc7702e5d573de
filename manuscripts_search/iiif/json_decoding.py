"""Bytes → a JSON object, the way real IIIF servers send them: BOMs, UTF-16 exports,
Windows-1252 files, NUL characters, and size and nesting limits checked before decoding."""
from __future__ import annotations

import codecs
import json
from typing import Any, Union

from manuscripts_search.iiif.json_limits import (check_json_text, check_json_value, remove_nul_characters,
                                                 remove_nul_escapes)
from manuscripts_search.iiif.model import IIIFParseError
from manuscripts_search.iiif.parsing import ParseWarnings

# What the parsers accept: the bytes as fetched, text, or JSON already decoded.
Document = Union[bytes, bytearray, memoryview, str, dict]

def decode_bytes(data: bytes, warn: ParseWarnings) -> str:
    # JSON is UTF-8 by RFC 8259, but BOMs, UTF-16 exports and Windows-1252 files all occur.
    data = data.removeprefix(codecs.BOM_UTF8)
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError:
                break  # a lying BOM: fall through to the byte-wise fallbacks below
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start
    try:
        text = data.decode("cp1252")
        warn(f"document is not valid UTF-8 (bad byte at offset {offset}); decoded as Windows-1252")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
        warn(f"document is not valid UTF-8 (bad byte at offset {offset}); decoded as ISO-8859-1")
    return text


def load_json(doc: Any, warn: ParseWarnings) -> dict:
    if isinstance(doc, (bytes, bytearray, memoryview)):
        doc = decode_bytes(bytes(doc), warn)
    if isinstance(doc, str):
        text = doc.removeprefix("\ufeff")
        check_json_text(text)  # size and nesting limits, before any recursive decoding
        text, nuls = remove_nul_escapes(text)
        if nuls:
            warn(f"document contains {nuls} NUL character(s) (\\u0000); removed")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as error:
            raise IIIFParseError(
                f"invalid JSON: {error.msg} at line {error.lineno}, column {error.colno}"
            ) from None
        except (RecursionError, ValueError) as error:
            raise IIIFParseError(f"invalid JSON: {error}") from None
    elif not isinstance(doc, (dict, list, int, float, bool, type(None))):
        raise TypeError(f"expected bytes, str or a decoded JSON object, got {type(doc).__name__}")
    else:
        check_json_value(doc)
        doc, nuls = remove_nul_characters(doc)
        if nuls:
            warn(f"document contains {nuls} NUL character(s); removed")
    if not isinstance(doc, dict):
        kind = {list: "an array", bool: "a boolean", type(None): "null"}.get(type(doc))
        kind = kind or ("a string" if isinstance(doc, str) else "a number")
        raise IIIFParseError(f"JSON is {kind}, not an object: not a IIIF Manifest or Collection")
    return doc


def load_json_object(doc: Document) -> dict:
    """Decode ``doc`` as the parser does (BOMs, UTF-16, Windows-1252 fallback) and return the JSON
    object. Raises IIIFParseError for invalid JSON or JSON that is not an object."""
    return load_json(doc, ParseWarnings())
