"""What a decoded document is: Manifest, Collection or Change Discovery list, which Presentation
version, and its id. Judged from the type first, then from the structure, since many documents
declare neither type nor context correctly."""
from __future__ import annotations

from typing import Optional
from urllib.parse import urljoin

from manuscripts_search.iiif.jsonld import as_list, describe_type, get_types, has_scheme, local_name, local_types, node_id
from manuscripts_search.iiif.model import IIIFParseError
from manuscripts_search.iiif.parsing import ParseWarnings

def context_version(doc: dict) -> Optional[int]:
    contexts = [c for c in as_list(doc.get("@context")) if isinstance(c, str)]
    found = set()
    for context in contexts:
        if "iiif.io/api/presentation/3" in context:
            found.add(3)
        elif "iiif.io/api/presentation/2" in context:
            found.add(2)
        elif (
            "shared-canvas.org" in context
            or "iiif.io/api/presentation/1" in context
            or "iiif.io/api/metadata/1" in context
        ):
            found.add(1)
        elif "iiif.io/api/discovery/" in context:
            found.add(3)
    return max(found) if found else None


def key_version(doc: dict) -> int:
    """Without a Presentation context, JSON-LD keywords and v2-only keys tell v2 from v3."""
    if any(t.startswith("sc:") for t in get_types(doc)):
        return 2
    if "@id" in doc or "@type" in doc or "sequences" in doc or "manifests" in doc:
        return 2
    return 3


_KINDS = {
    "manifest": "Manifest",
    "collection": "Collection",
    "orderedcollection": "OrderedCollection",
    "orderedcollectionpage": "OrderedCollectionPage",
}


def _infer_kind_from_keys(doc: dict) -> Optional[str]:
    if isinstance(doc.get("sequences"), list):
        return "Manifest"
    if any(isinstance(doc.get(key), list) for key in ("manifests", "collections", "members")):
        return "Collection"
    item_types = {t for item in as_list(doc.get("items")) for t in local_types(item)}
    if "canvas" in item_types:
        return "Manifest"
    if item_types & {"manifest", "collection"}:
        return "Collection"
    return None


def classify(doc: dict, warn: ParseWarnings) -> str:
    types = get_types(doc)
    for type_name in types:
        kind = _KINDS.get(local_name(type_name))
        if kind:
            return kind
    if types:
        raise IIIFParseError(
            f"document is a {describe_type(doc)}, not a IIIF Manifest or Collection"
        )
    kind = _infer_kind_from_keys(doc)
    if kind is None:
        keys = ", ".join(sorted(str(k) for k in doc)[:8]) or "none"
        raise IIIFParseError(
            f"not a IIIF Manifest or Collection: no @type/type and no IIIF structure (keys: {keys})"
        )
    warn(f"document has no @type/type; treated as a {kind} from its keys")
    return kind


def document_id(doc: dict, source_url: Optional[str], kind: str, warn: ParseWarnings) -> str:
    raw = doc.get("id", doc.get("@id"))
    doc_id = node_id(doc)
    if doc_id is None and raw is not None:
        warn(f"{kind} id is {raw!r}, not a URI")
    if doc_id is None:
        if source_url:
            warn(f"{kind} has no id; using the source URL")
            return source_url
        raise IIIFParseError(f"{kind} has no id and no source URL was given to stand in for it")
    if has_scheme(doc_id):
        return doc_id
    if source_url:
        resolved = urljoin(source_url, doc_id)
        warn(f"relative {kind} id {doc_id!r} resolved against the source URL to {resolved}")
        return resolved
    warn(f"relative {kind} id {doc_id!r} kept as published: no source URL to resolve it against")
    return doc_id
