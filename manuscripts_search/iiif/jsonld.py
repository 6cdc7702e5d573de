"""Small JSON-LD readers shared by every IIIF parser here: ids, types, links, relative URLs.

Presentation 2 writes ``@id``/``@type``, Presentation 3 ``id``/``type``; a type may be prefixed
(``sc:Manifest``) or a full URI; a reference may be a bare string or an object with an id. These
rules live once, so the manifest parser and the annotation reader cannot drift apart.
"""
from __future__ import annotations

import re
from typing import Any, Optional
from urllib.parse import urljoin

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")


def as_list(value: Any) -> list:
    """JSON-LD's "one value or a list of them" as a list; None as the empty list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def node_id(obj: Any) -> Optional[str]:
    """The v3 ``id`` or v2 ``@id`` of an object, stripped; None when absent or not a string."""
    if not isinstance(obj, dict):
        return None
    for key in ("id", "@id"):
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def reference_id(value: Any) -> Optional[str]:
    """The id a reference points at: a bare string (``"target": "https://…/canvas/1"``) or an
    object's ``id``/``@id``; None when it is neither. Where only an embedded object is
    acceptable (a canvas, a service), use :func:`node_id`."""
    if isinstance(value, str):
        return value.strip() or None
    return node_id(value)


def get_types(obj: Any) -> list[str]:
    if not isinstance(obj, dict):
        return []
    raw = obj.get("type", obj.get("@type"))
    return [t for t in as_list(raw) if isinstance(t, str)]


def local_name(type_name: str) -> str:
    """``sc:Manifest``, ``http://iiif.io/api/presentation/2#Manifest`` -> ``manifest``."""
    return re.split(r"[:#/]", type_name.strip())[-1].lower()


def local_types(obj: Any) -> list[str]:
    return [local_name(t) for t in get_types(obj) if t.strip()]


def describe_type(obj: dict) -> str:
    types = get_types(obj)
    return repr(types[0]) if len(types) == 1 else repr(types)


def has_scheme(url: str) -> bool:
    # Two letters at least, so that a Windows path "C:\..." is not taken for a URI.
    return bool(_SCHEME.match(url))


def resolve(url: str, base: Optional[str]) -> str:
    url = url.strip()
    if base is None or has_scheme(url):
        return url
    return urljoin(base, url)


def link_ids(value: Any, base: Optional[str]) -> list[str]:
    """URLs from a link property given as a string, an object with an id, or a list of them."""
    urls: list[str] = []
    for item in as_list(value):
        url = reference_id(item)
        if url:
            url = resolve(url, base)
            if url not in urls:
                urls.append(url)
    return urls
