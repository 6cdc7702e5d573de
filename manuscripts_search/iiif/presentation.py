"""Parse IIIF Presentation 1, 2 and 3 documents into the internal model of :mod:`.model`.

This is the one place that knows how differently institutions write IIIF: v2 ``@id`` and
v3 ``id``, ``sequences`` and ``items``, ``oa:Choice`` and ``Choice``, image services described
by context, type, profile or a Stanford compliance URI, widths given as strings, v3 manifests
that still carry v2 ``sequences``. Structure is read by what a document contains rather than
by the version it declares, so mixtures parse too.

Only a document that cannot be a Manifest or Collection at all raises :class:`IIIFParseError`;
anything odd inside a usable document becomes a line in ``.warnings``.

This module reads Manifests and Collections and is the parser's entry point; the parts live
beside it, one job each: :mod:`.json_decoding` (bytes → JSON), :mod:`.document_kinds` (kind,
version, id), :mod:`.canvases` (canvases and painted images), :mod:`.image_services`,
:mod:`.metadata`, with :mod:`.jsonld` and :mod:`.parsing` shared by all of them and by
:mod:`.annotations`.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from manuscripts_search.iiif.annotations import ManifestText, manifest_text
from manuscripts_search.iiif.canvases import read_canvases
from manuscripts_search.iiif.document_kinds import classify, context_version, document_id, key_version
from manuscripts_search.iiif.json_decoding import Document, load_json
from manuscripts_search.iiif.jsonld import (as_list, describe_type, get_types, has_scheme, link_ids, local_types, node_id,
                                            resolve)
from manuscripts_search.iiif.language import to_language_map
from manuscripts_search.iiif.metadata import metadata_entries, providers, required_statement, rights_statement
from manuscripts_search.iiif.model import CollectionMember, IIIFParseError, ParsedCollection, ParsedManifest
from manuscripts_search.iiif.parsing import ParseWarnings

# Discovery API activities that take a resource away rather than announce it.
_REMOVAL_ACTIVITIES = {"delete", "remove"}


# --- manifests -------------------------------------------------------------------------------


def _read_manifest(
    doc: dict, version: int, source_url: Optional[str], warn: ParseWarnings
) -> ParsedManifest:
    manifest_id = document_id(doc, source_url, "Manifest", warn)
    base = source_url or (manifest_id if has_scheme(manifest_id) else None)
    nav_date = doc.get("navDate")
    if nav_date is not None and not isinstance(nav_date, str):
        warn(f"navDate is {nav_date!r}, not a date string; ignored")
        nav_date = None
    thumbnails = link_ids(doc.get("thumbnail"), base)
    summary = doc.get("summary") if "summary" in doc else doc.get("description")
    canvases = read_canvases(doc, base, warn)
    if not canvases:
        warn("manifest lists no canvases")
    return ParsedManifest(
        id=manifest_id,
        iiif_version=version,
        label=to_language_map(doc.get("label"), warn, "label"),
        summary=to_language_map(summary, warn, "summary"),
        metadata=metadata_entries(doc.get("metadata"), warn),
        required_statement=required_statement(doc, warn),
        rights=rights_statement(doc),
        nav_date=nav_date.strip() if nav_date and nav_date.strip() else None,
        providers=providers(doc, warn),
        homepage=link_ids(doc.get("homepage", doc.get("related")), base),
        see_also=link_ids(doc.get("seeAlso"), base),
        thumbnail=thumbnails[0] if thumbnails else None,
        canvases=canvases,
        warnings=warn.finish(),
    )


# --- collections -----------------------------------------------------------------------------


_MEMBER_KINDS = {"manifest": "Manifest", "collection": "Collection"}


class _MemberList:
    """Members in order of first appearance; the same id listed twice is kept once, and the
    collection itself is never its own member (that would send a harvester round in a loop)."""

    def __init__(self, collection_id: str, base: Optional[str], warn: ParseWarnings) -> None:
        self.base = base
        self.warn = warn
        self.members: list[CollectionMember] = []
        self._seen: set[str] = {collection_id}

    def add(self, entry: Any, default_kind: Optional[str], where: str) -> None:
        if isinstance(entry, str) and entry.strip():
            member_id, kind, label = entry.strip(), default_kind, None
        elif isinstance(entry, dict) and node_id(entry):
            member_id = node_id(entry)
            kinds = local_types(entry)
            kind = _MEMBER_KINDS.get(next((k for k in kinds if k in _MEMBER_KINDS), ""))
            if not kinds:
                kind = default_kind  # an untyped entry in `manifests` is a manifest
            label = entry.get("label")
        else:
            self.warn(f"{where} has no id; ignored")
            return
        if kind is None:
            described = f"a {describe_type(entry)}" if get_types(entry) else "untyped"
            self.warn(f"{where} is {described}, not a Manifest or Collection; ignored")
            return
        member_id = resolve(member_id, self.base)
        if member_id in self._seen:
            return
        self._seen.add(member_id)
        self.members.append(
            CollectionMember(
                id=member_id, kind=kind, label=to_language_map(label, self.warn, f"{where}.label")
            )
        )


def _read_collection(
    doc: dict, kind: str, version: int, source_url: Optional[str], warn: ParseWarnings
) -> ParsedCollection:
    collection_id = document_id(doc, source_url, "Collection", warn)
    base = source_url or (collection_id if has_scheme(collection_id) else None)
    members = _MemberList(collection_id, base, warn)
    pages: list[str] = []
    if kind == "OrderedCollectionPage":  # IIIF Change Discovery: activities about resources
        for index, activity in enumerate(as_list(doc.get("orderedItems"))):
            activity_types = local_types(activity)
            if set(activity_types) & _REMOVAL_ACTIVITIES:
                continue
            target = activity.get("object") if isinstance(activity, dict) else None
            members.add(target, None, f"orderedItems[{index}].object")
        pages = link_ids(doc.get("next"), base)
    elif kind == "OrderedCollection":
        pages = link_ids(doc.get("first"), base) or link_ids(doc.get("last"), base)
    else:
        # v2.1 `members` carries the publisher's intended order, so it goes first.
        for key, default_kind in (
            ("members", None),
            ("manifests", "Manifest"),
            ("collections", "Collection"),
        ):
            for index, entry in enumerate(as_list(doc.get(key))):
                members.add(entry, default_kind, f"{key}[{index}]")
        for index, entry in enumerate(as_list(doc.get("items"))):
            members.add(entry, None, f"items[{index}]")
        # A paged collection points at its first page; each page points at the next.
        for key in ("first", "next"):
            for url in link_ids(doc.get(key), base):
                if url not in pages and url != collection_id:
                    pages.append(url)
    if not members.members and not pages:
        warn("collection lists no members and no pages")
    return ParsedCollection(
        id=collection_id,
        iiif_version=version,
        label=to_language_map(doc.get("label"), warn, "label"),
        members=members.members,
        pages=pages,
        warnings=warn.finish(),
    )


# --- public API ------------------------------------------------------------------------------


def parse_document(
    doc: Document, source_url: Optional[str] = None
) -> Union[ParsedManifest, ParsedCollection]:
    """Parse a IIIF Presentation 1/2/3 Manifest or Collection (also a collection page, and IIIF
    Change Discovery OrderedCollection/OrderedCollectionPage) given as bytes, text or decoded JSON.

    ``source_url`` is where the document was fetched from: relative ids resolve against it and
    it stands in for a missing id.

    Raises IIIFParseError (with the reason) for invalid JSON, JSON that is not an object, and
    documents that are not a Manifest or Collection (an AnnotationList, a bare Canvas, ``{}``),
    or have neither an id nor a ``source_url``. Raises TypeError for a ``doc`` of another Python
    type. Problems inside a usable document are recorded in ``.warnings`` instead.
    """
    warn = ParseWarnings()
    data = load_json(doc, warn)
    kind = classify(data, warn)
    version = context_version(data) or key_version(data)
    if kind == "Manifest":
        return _read_manifest(data, version, source_url, warn)
    return _read_collection(data, kind, version, source_url, warn)


def parse_document_with_text(
    doc: Document, source_url: Optional[str] = None
) -> tuple[Union[ParsedManifest, ParsedCollection], Optional[ManifestText]]:
    """Like :func:`parse_document`, and for a Manifest also the text annotations it embeds and
    the annotation documents it references (see :func:`.annotations.manifest_text`); the JSON is
    decoded once. The second item is None for a Collection. Raises as :func:`parse_document`."""
    warn = ParseWarnings()
    data = load_json(doc, warn)
    kind = classify(data, warn)
    version = context_version(data) or key_version(data)
    if kind != "Manifest":
        return _read_collection(data, kind, version, source_url, warn), None
    manifest = _read_manifest(data, version, source_url, warn)
    base = source_url or (manifest.id if has_scheme(manifest.id) else None)
    sizes = {c.id: (c.width, c.height) for c in manifest.canvases if c.width and c.height}
    return manifest, manifest_text(data, base, sizes)


def parse_manifest(doc: Document, source_url: Optional[str] = None) -> ParsedManifest:
    """Like :func:`parse_document`, and raises IIIFParseError when the document is a Collection."""
    parsed = parse_document(doc, source_url)
    if not isinstance(parsed, ParsedManifest):
        raise IIIFParseError(f"expected a Manifest, found a Collection ({parsed.id})")
    return parsed


def parse_collection(doc: Document, source_url: Optional[str] = None) -> ParsedCollection:
    """Like :func:`parse_document`, and raises IIIFParseError when the document is a Manifest."""
    parsed = parse_document(doc, source_url)
    if not isinstance(parsed, ParsedCollection):
        raise IIIFParseError(f"expected a Collection, found a Manifest ({parsed.id})")
    return parsed
