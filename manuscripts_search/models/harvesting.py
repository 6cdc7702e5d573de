"""What the harvester remembers between runs: per-URL HTTP state (for conditional requests and
change detection), the crawl queue (so a killed run resumes where it stopped), Change Discovery
stream positions and cached Image API info.json documents."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class FetchedDocument(Base):
    """The last known HTTP state of one IIIF document URL (manifest, collection, collection page,
    annotation list/page): validators for conditional requests, the hash of the last body, the
    links found in it (so an unchanged document is not parsed again), and whether it is gone.

    ``context`` is the manifest URL for an annotation document read on behalf of a manifest
    (its text is stored per manifest, so "unchanged" only holds within that context), the
    collection for a collection page (its members belong to that collection), else "".
    """

    __tablename__ = "fetched_documents"
    __table_args__ = (UniqueConstraint("url", "context", name="uq_fetched_document"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    context: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[Optional[str]] = mapped_column(String(32))  # manifest | collection | annotations
    etag: Mapped[Optional[str]] = mapped_column(Text)
    last_modified: Mapped[Optional[str]] = mapped_column(Text)
    content_sha256: Mapped[Optional[str]] = mapped_column(String(64))
    # [{"url": ..., "kind": ..., "canvas": ...}] found in the last body that parsed.
    child_links: Mapped[list[Any]] = mapped_column(default=list)
    http_status: Mapped[Optional[int]] = mapped_column(Integer)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    checked_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    changed_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    gone_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))  # 404/410 or Delete
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    error_count: Mapped[int] = mapped_column(Integer, default=0)


class Crawl(Base):
    """One run of ``msearch harvest`` over a set of sources. An unfinished crawl with the same
    key (sources and options) is resumed instead of starting again."""

    __tablename__ = "crawls"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), index=True)
    sources: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | finished
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))


class CrawlItem(Base):
    """One URL to visit in a crawl. Marked done in the same transaction that stores what it
    yielded, so a crawl killed at any moment neither loses nor repeats completed work."""

    __tablename__ = "crawl_items"
    __table_args__ = (
        UniqueConstraint("crawl_id", "url", "kind", name="uq_crawl_item"),
        Index("ix_crawl_items_crawl_status", "crawl_id", "status"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    crawl_id: Mapped[int] = mapped_column(ForeignKey("crawls.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))  # document | annotations
    root_url: Mapped[str] = mapped_column(Text)  # the source it was reached from
    parent_url: Mapped[Optional[str]] = mapped_column(Text)  # collection, or manifest of annotations
    canvas_iiif_id: Mapped[Optional[str]] = mapped_column(Text)  # canvas that referenced annotations
    depth: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done | failed
    outcome: Mapped[Optional[str]] = mapped_column(String(32))  # new | changed | unchanged | gone ...
    error: Mapped[Optional[str]] = mapped_column(Text)
    updated_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))


class ChangeStream(Base):
    """How far a IIIF Change Discovery activity stream has been processed."""

    __tablename__ = "change_streams"
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text, unique=True)
    # The newest activity applied: its time as published, and type|object|time to recognise it.
    last_activity_time: Mapped[Optional[str]] = mapped_column(String(64))
    last_activity_key: Mapped[Optional[str]] = mapped_column(Text)
    last_run_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    activities_applied: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[Optional[str]] = mapped_column(Text)


class ImageServiceInfo(Base):
    """A cached IIIF Image API info.json, by service id (``error`` set when none was usable)."""

    __tablename__ = "image_service_infos"
    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[str] = mapped_column(Text, unique=True)
    info_json: Mapped[Optional[dict[str, Any]]] = mapped_column()
    etag: Mapped[Optional[str]] = mapped_column(Text)
    last_modified: Mapped[Optional[str]] = mapped_column(Text)
    fetched_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    error: Mapped[Optional[str]] = mapped_column(Text)
