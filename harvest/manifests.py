"""Crawl manifests and collections from URLs or local files into the store.

Collections are followed breadth-first (members and v2 `first`/`next` pages); every URL is visited
once per run, so cycles and duplicate members cost nothing. Each failure is recorded against its
URL and the crawl goes on.
"""
from __future__ import annotations

import hashlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional
from urllib.parse import urldefrag

from sqlalchemy.orm import Session, sessionmaker

from manuscripts_search import store
from manuscripts_search.db import session_scope
from manuscripts_search.iiif.model import IIIFParseError, ParsedCollection
from manuscripts_search.iiif.presentation import parse_document

from .http import Fetcher, FetchError, is_local_source, local_path

log = logging.getLogger(__name__)


@dataclass
class HarvestReport:
    manifests: list[str] = field(default_factory=list)  # IIIF ids saved
    collections: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (url, reason)

    def as_dict(self) -> dict:
        return {"manifests": len(self.manifests), "collections": len(self.collections),
                "failures": [{"url": u, "reason": r} for u, r in self.failures]}


def _normalise_source(source: str) -> str:
    if is_local_source(source):
        return str(local_path(source).resolve())
    return urldefrag(source)[0]


def harvest_sources(sources: list[str], session_factory: sessionmaker[Session], fetcher: Fetcher,
                    max_documents: Optional[int] = None,
                    on_document: Optional[Callable[[str], None]] = None) -> HarvestReport:
    """Harvest each source (manifest or collection URL, or local JSON file) recursively."""
    report = HarvestReport()
    # Queue entries: (url, root source url, collection iiif id that listed it)
    queue: deque[tuple[str, str, Optional[str]]] = deque(
        (_normalise_source(s), _normalise_source(s), None) for s in sources)
    visited: set[str] = set()
    while queue:
        url, root, parent_collection = queue.popleft()
        if url in visited:
            if parent_collection:
                _link_by_url(session_factory, parent_collection, url)
            continue
        visited.add(url)
        if max_documents is not None and len(visited) > max_documents:
            report.failures.append((url, f"stopped: more than {max_documents} documents"))
            break
        if on_document:
            on_document(url)
        for child in _harvest_one(url, root, parent_collection, session_factory, fetcher, report):
            queue.append(child)
    return report


def _harvest_one(url, root, parent_collection, session_factory, fetcher, report):
    """Fetch and store one document; returns the (url, root, parent) entries it points to."""
    try:
        fetched = fetcher.get(url)
    except FetchError as exc:
        report.failures.append((url, exc.reason))
        with session_scope(session_factory) as session:
            source = store.get_or_create_source(session, root)
            store.record_manifest_failure(session, url, f"fetch failed: {exc.reason}",
                                          stage="fetch", source=source, http_status=exc.status)
        return []
    try:
        parsed = parse_document(fetched.body, source_url=fetched.url if not is_local_source(url) else None)
    except IIIFParseError as exc:
        report.failures.append((url, str(exc)))
        with session_scope(session_factory) as session:
            source = store.get_or_create_source(session, root)
            store.record_manifest_failure(session, url, f"not usable IIIF: {exc}", source=source,
                                          raw_json=fetched.body.decode("utf-8", "replace")[:2_000_000])
        return []

    with session_scope(session_factory) as session:
        is_collection = isinstance(parsed, ParsedCollection)
        source = store.get_or_create_source(
            session, root, kind=("collection" if is_collection else "manifest") if url == root else None)
        if is_collection:
            store.save_collection(session, parsed, source=source)
            report.collections.append(parsed.id)
            children = [(_normalise_source(m.id) if not is_local_source(m.id) else m.id, root,
                         parsed.id if m.kind == "Manifest" else None) for m in parsed.members]
            children += [(page, root, parsed.id) for page in parsed.pages]
            return children
        manifest = store.save_manifest(
            session, parsed, url=url, source=source, fetched_from=fetched.url,
            raw_json=fetched.body.decode("utf-8", "replace"),
            content_sha256=hashlib.sha256(fetched.body).hexdigest(),
            etag=fetched.headers.get("etag"), last_modified=fetched.headers.get("last-modified"),
            http_status=fetched.status)
        if parent_collection:
            _link(session, parent_collection, manifest)
        report.manifests.append(parsed.id)
    return []


def _link(session: Session, collection_iiif_id: str, manifest) -> None:
    from sqlalchemy import select

    from manuscripts_search.models import Collection

    collection = session.scalar(select(Collection).where(Collection.iiif_id == collection_iiif_id))
    if collection is not None:
        store.link_manifest(session, collection, manifest)


def _link_by_url(session_factory, collection_iiif_id: str, url: str) -> None:
    from sqlalchemy import select

    from manuscripts_search.models import Manifest

    with session_scope(session_factory) as session:
        manifest = session.scalar(select(Manifest).where(Manifest.url == url))
        if manifest is not None and manifest.error is None:
            _link(session, collection_iiif_id, manifest)
