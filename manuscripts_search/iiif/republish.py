"""A harvested manifest served again by us (with our search services): it must carry the URL it
is served from as its ``id``, as every IIIF document does. Clover loads the URL it was given and
waits for a resource of that id, forever when the document names another; the Presentation
validator refuses an id that differs from the URL too.

The holder's own URL is kept as ``seeAlso`` (Presentation 3: a machine-readable resource related
to this one; Presentation 2 the same), first in the list, so the original stays one hop away.
Canvas ids are untouched: they are the holder's, and search hits and content states name them.
"""
from __future__ import annotations

import copy
from typing import Optional

PRESENTATION_2_CONTEXT = "http://iiif.io/api/presentation/2/context.json"
PRESENTATION_3_CONTEXT = "http://iiif.io/api/presentation/3/context.json"
ORIGINAL_LABEL = "The manifest as its holder publishes it"


def republished(manifest: dict, own_url: str, original_url: Optional[str], presentation_version: int) -> dict:
    """A copy of ``manifest`` (Presentation 2 or 3 JSON) whose id is ``own_url``, linking the
    holder's ``original_url`` (when it is another URL) as the first ``seeAlso``."""
    result = copy.deepcopy(manifest)
    id_key = "id" if presentation_version >= 3 else "@id"
    result[id_key] = own_url
    if not original_url or original_url == own_url:
        return result
    if presentation_version >= 3:
        link: dict = {"id": original_url, "type": "Dataset", "label": {"en": [ORIGINAL_LABEL]},
                      "format": "application/ld+json", "profile": PRESENTATION_3_CONTEXT}
    else:
        link = {"@id": original_url, "label": ORIGINAL_LABEL, "format": "application/ld+json",
                "profile": PRESENTATION_2_CONTEXT}
    existing = result.get("seeAlso")
    existing = [] if existing is None else (existing if isinstance(existing, list) else [existing])
    result["seeAlso"] = [link] + [item for item in existing if _link_id(item) != original_url]
    return result


def _link_id(item) -> Optional[str]:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        return item.get("id") or item.get("@id")
    return None
