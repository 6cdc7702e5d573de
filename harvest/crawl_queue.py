"""The persistent crawl queue: which URLs a harvest run has still to visit.

Every URL is an item of its crawl, unique per (crawl, url, kind), so a collection that lists
itself, two collections that list each other or a page chain that loops costs nothing. Items are
marked done in the transaction that stores what they yielded (see :mod:`harvest.manifests`);
re-running the same ``msearch harvest`` after a kill finds the unfinished crawl by its key and
continues with the pending items only.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterable, Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from manuscripts_search.models import Crawl, CrawlItem, FetchedDocument, utcnow

# Item kinds: a manifest/collection (or annotation document given as a source), a page of a
# paged collection (its members belong to the collection), an annotation list/page/collection.
DOCUMENT, PAGE, ANNOTATIONS = "document", "page", "annotations"


@dataclass(frozen=True)
class ChildLink:
    """A URL found in a document, to visit next."""

    url: str
    kind: str  # DOCUMENT | PAGE | ANNOTATIONS
    parent_url: Optional[str] = None  # collection iiif id (members, pages) or manifest URL (annotations)
    canvas_iiif_id: Optional[str] = None  # the canvas that referenced an annotation document

    def as_json(self) -> dict:
        return {"url": self.url, "kind": self.kind, "parent": self.parent_url, "canvas": self.canvas_iiif_id}

    @classmethod
    def from_json(cls, data: dict) -> "ChildLink":
        return cls(url=data["url"], kind=data.get("kind") or DOCUMENT, parent_url=data.get("parent"),
                   canvas_iiif_id=data.get("canvas"))


@dataclass(frozen=True)
class CrawlTask:
    """One item to fetch, with what is known about its URL from earlier runs."""

    item_id: int
    url: str
    kind: str
    root_url: str
    parent_url: Optional[str]
    canvas_iiif_id: Optional[str]
    depth: int
    etag: Optional[str] = None
    last_modified: Optional[str] = None
    content_sha256: Optional[str] = None
    child_links: tuple[ChildLink, ...] = field(default_factory=tuple)
    # Why the last version could not be used, when it could not (kept so that an unchanged
    # broken document stays a failure without being parsed again).
    last_error: Optional[str] = None
    known: bool = False  # the URL has a fetched_documents row in this context


def document_context(kind: str, parent_url: Optional[str]) -> str:
    """The context a document's HTTP state is kept in (see FetchedDocument.context): what an
    annotation document or a collection page yields depends on who reached it."""
    return (parent_url or "") if kind in (ANNOTATIONS, PAGE) else ""


def crawl_key(sources: list[str], options: dict) -> str:
    payload = json.dumps({"sources": sorted(sources), "options": options}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def open_crawl(session: Session, sources: list[str], options: dict) -> tuple[Crawl, bool]:
    """The unfinished crawl for these sources and options (resumed=True), or a new one seeded
    with the sources."""
    key = crawl_key(sources, options)
    crawl = session.scalar(select(Crawl).where(Crawl.key == key, Crawl.status == "running")
                           .order_by(Crawl.id.desc()))
    if crawl is not None:
        return crawl, True
    crawl = Crawl(key=key, sources=list(sources), status="running")
    session.add(crawl)
    session.flush()
    add_items(session, crawl.id, [ChildLink(url=s, kind=DOCUMENT) for s in sources],
              root_url=None, depth=0)
    return crawl, False


def add_items(session: Session, crawl_id: int, links: Iterable[ChildLink], root_url: Optional[str],
              depth: int, limit: Optional[int] = None) -> tuple[list[CrawlItem], int]:
    """Add the links not yet in the crawl as pending items; returns (new items, links refused
    because the crawl reached ``limit`` items)."""
    links = list(dict.fromkeys(links))
    if not links:
        return [], 0
    existing: set[tuple[str, str]] = set()
    urls = list({link.url for link in links})
    for start in range(0, len(urls), 500):
        existing.update(session.execute(
            select(CrawlItem.url, CrawlItem.kind).where(CrawlItem.crawl_id == crawl_id,
                                                        CrawlItem.url.in_(urls[start:start + 500]))).all())
    count = None
    if limit is not None:
        count = session.scalar(select(func.count()).select_from(CrawlItem).where(CrawlItem.crawl_id == crawl_id))
    items, refused = [], 0
    for link in links:
        if (link.url, link.kind) in existing:
            continue
        if limit is not None and count + len(items) >= limit:
            refused += 1
            continue
        existing.add((link.url, link.kind))
        items.append(CrawlItem(crawl_id=crawl_id, url=link.url, kind=link.kind,
                               root_url=root_url or link.url, parent_url=link.parent_url,
                               canvas_iiif_id=link.canvas_iiif_id, depth=depth, status="pending"))
    session.add_all(items)
    session.flush()
    return items, refused


def pending_items(session: Session, crawl_id: int) -> list[CrawlItem]:
    return list(session.scalars(select(CrawlItem).where(CrawlItem.crawl_id == crawl_id,
                                                        CrawlItem.status == "pending")
                                .order_by(CrawlItem.id)))


def tasks_for(session: Session, items: list[CrawlItem]) -> list[CrawlTask]:
    """Crawl tasks for ``items``, with the validators and links remembered for their URLs."""
    urls = list({item.url for item in items})
    known: dict[tuple[str, str], FetchedDocument] = {}
    for start in range(0, len(urls), 500):
        for doc in session.scalars(select(FetchedDocument).where(FetchedDocument.url.in_(urls[start:start + 500]))):
            known[(doc.url, doc.context)] = doc
    tasks = []
    for item in items:
        doc = known.get((item.url, document_context(item.kind, item.parent_url)))
        usable = doc is not None and doc.gone_at is None
        tasks.append(CrawlTask(
            item_id=item.id, url=item.url, kind=item.kind, root_url=item.root_url,
            parent_url=item.parent_url, canvas_iiif_id=item.canvas_iiif_id, depth=item.depth,
            etag=doc.etag if usable else None, last_modified=doc.last_modified if usable else None,
            content_sha256=doc.content_sha256 if usable else None,
            child_links=tuple(ChildLink.from_json(c) for c in (doc.child_links or []) if isinstance(c, dict))
            if usable else (),
            last_error=doc.last_error if usable and doc.content_sha256 else None,
            known=doc is not None))
    return tasks


def finish_item(session: Session, item_id: int, status: str, outcome: str,
                error: Optional[str] = None) -> None:
    from sqlalchemy import update

    session.execute(update(CrawlItem).where(CrawlItem.id == item_id).values(
        status=status, outcome=outcome, updated_at=utcnow(), error=error[:4000] if error else None))


def prune_unreferenced_text(session: Session, crawl_id: int) -> int:
    """Delete text that manifests visited in this crawl reached through annotation documents
    they no longer reference (every document a manifest still references is an item of the
    crawl, fetched or not). Returns the number of rows deleted."""
    from sqlalchemy import and_, delete

    from manuscripts_search.models import TextAnnotation

    visited = select(CrawlItem.url).where(CrawlItem.crawl_id == crawl_id, CrawlItem.kind == DOCUMENT,
                                          CrawlItem.status == "done")
    still_referenced = select(CrawlItem.id).where(
        CrawlItem.crawl_id == crawl_id, CrawlItem.kind == ANNOTATIONS,
        CrawlItem.parent_url == TextAnnotation.origin_url, CrawlItem.url == TextAnnotation.source_url)
    result = session.execute(delete(TextAnnotation).where(and_(
        TextAnnotation.origin_url.in_(visited), TextAnnotation.source_url != TextAnnotation.origin_url,
        ~still_referenced.exists())).execution_options(synchronize_session=False))
    return result.rowcount or 0


def finish_crawl(session: Session, crawl_id: int) -> None:
    crawl = session.get(Crawl, crawl_id)
    if crawl is not None:
        crawl.status, crawl.finished_at = "finished", utcnow()
