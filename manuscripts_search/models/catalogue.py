"""The catalogue: sources, collections, manifests, canvases and regions as harvested.

Language-map properties are stored as JSON exactly as normalised ({"en": ["..."]}) so that all
languages are kept for later search; the raw manifest JSON is kept too, to re-parse without refetching.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import (
    DateTime,
    Float,

    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, utcnow


class Source(Base):
    """What a librarian asked to harvest: a manifest or collection URL, or a local file."""

    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text, unique=True)
    kind: Mapped[Optional[str]] = mapped_column(String(32))  # manifest | collection | unknown
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_harvested_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    status: Mapped[Optional[str]] = mapped_column(String(32))


class Collection(Base):
    __tablename__ = "collections"
    id: Mapped[int] = mapped_column(primary_key=True)
    iiif_id: Mapped[str] = mapped_column(Text, unique=True)
    source_id: Mapped[Optional[int]] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    iiif_version: Mapped[Optional[int]] = mapped_column(Integer)
    label: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fetched_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))


class CollectionMembership(Base):
    """Which manifests a collection lists (a manifest may belong to several collections)."""

    __tablename__ = "collection_manifests"
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True)
    manifest_id: Mapped[int] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True)


class Manifest(Base):
    """One manifest document, identified by where it is harvested from.

    The URL (or file path) is the key, not the id the document declares: publishers reuse ids
    across renderings (a v2 and a v3 copy), mirrors and test fixtures, and rewrite them (localhost
    ids); re-harvesting and conditional requests are per URL. ``iiif_id`` is kept, indexed.
    """

    __tablename__ = "manifests"
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text, unique=True)  # where it is harvested from
    iiif_id: Mapped[str] = mapped_column(Text, index=True)  # the id the document declares
    source_id: Mapped[Optional[int]] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    fetched_from: Mapped[Optional[str]] = mapped_column(Text)  # final URL after redirects, or path
    iiif_version: Mapped[Optional[int]] = mapped_column(Integer)
    label: Mapped[dict[str, Any]] = mapped_column(default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metadata_entries: Mapped[list[Any]] = mapped_column("metadata", default=list)
    required_statement: Mapped[Optional[dict[str, Any]]] = mapped_column()
    rights: Mapped[Optional[str]] = mapped_column(Text)
    nav_date: Mapped[Optional[str]] = mapped_column(String(64))
    providers: Mapped[list[Any]] = mapped_column(default=list)
    homepage: Mapped[list[Any]] = mapped_column(default=list)
    see_also: Mapped[list[Any]] = mapped_column(default=list)
    thumbnail: Mapped[Optional[str]] = mapped_column(Text)
    raw_json: Mapped[Optional[str]] = mapped_column(Text)
    content_sha256: Mapped[Optional[str]] = mapped_column(String(64))
    etag: Mapped[Optional[str]] = mapped_column(Text)
    last_modified: Mapped[Optional[str]] = mapped_column(Text)
    http_status: Mapped[Optional[int]] = mapped_column(Integer)
    fetched_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    canvas_count: Mapped[int] = mapped_column(Integer, default=0)
    image_canvas_count: Mapped[int] = mapped_column(Integer, default=0)
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[Optional[str]] = mapped_column(Text)  # why it could not be used; NULL when fine

    canvases: Mapped[list["Canvas"]] = relationship(
        back_populates="manifest", order_by="Canvas.position", cascade="all, delete-orphan")


class Canvas(Base):
    __tablename__ = "canvases"
    __table_args__ = (UniqueConstraint("manifest_id", "iiif_id", name="uq_canvas_in_manifest"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifests.id", ondelete="CASCADE"), index=True)
    iiif_id: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[dict[str, Any]] = mapped_column(default=dict)
    width: Mapped[Optional[int]] = mapped_column(Integer)
    height: Mapped[Optional[int]] = mapped_column(Integer)
    # The first painted image: its Image API service (preferred) and/or its direct URL.
    service_id: Mapped[Optional[str]] = mapped_column(Text)
    service_api_version: Mapped[Optional[int]] = mapped_column(Integer)
    service_level: Mapped[Optional[int]] = mapped_column(Integer)
    service_profile: Mapped[Optional[str]] = mapped_column(Text)
    image_url: Mapped[Optional[str]] = mapped_column(Text)
    image_format: Mapped[Optional[str]] = mapped_column(String(64))
    image_width: Mapped[Optional[int]] = mapped_column(Integer)
    image_height: Mapped[Optional[int]] = mapped_column(Integer)
    target_xywh: Mapped[Optional[str]] = mapped_column(String(64))  # where the image sits on the canvas
    thumbnail: Mapped[Optional[str]] = mapped_column(Text)  # the manifest's thumbnail of this canvas
    # The fetched derivative, in the content-addressed store under the data dir.
    derivative_sha256: Mapped[Optional[str]] = mapped_column(String(64))
    derivative_width: Mapped[Optional[int]] = mapped_column(Integer)
    derivative_height: Mapped[Optional[int]] = mapped_column(Integer)
    derivative_error: Mapped[Optional[str]] = mapped_column(Text)
    # The host that was down when the image was last tried: deferred (not failed) to a later run.
    derivative_deferred: Mapped[Optional[str]] = mapped_column(Text)

    manifest: Mapped[Manifest] = relationship(back_populates="canvases")

    @property
    def paints_image(self) -> bool:
        return bool(self.service_id or self.image_url)


class Region(Base):
    """A rectangle of a canvas, in canvas coordinates, encoded on its own for region-level search."""

    __tablename__ = "regions"
    __table_args__ = (UniqueConstraint("canvas_id", "x", "y", "w", "h", name="uq_region_box"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    canvas_id: Mapped[int] = mapped_column(ForeignKey("canvases.id", ondelete="CASCADE"), index=True)
    x: Mapped[int] = mapped_column(Integer)
    y: Mapped[int] = mapped_column(Integer)
    w: Mapped[int] = mapped_column(Integer)
    h: Mapped[int] = mapped_column(Integer)
    derivative_sha256: Mapped[Optional[str]] = mapped_column(String(64))
    # How the box was found: "grid" (a window of the multi-scale grid), "content" (a region
    # proposal from the page image, with its score, 0..1) or "detector" (a detection model's box,
    # with its score); a re-plan with another method keeps the boxes both would make and removes
    # the others.
    method: Mapped[str] = mapped_column(String(16), default="grid", server_default="grid")
    score: Mapped[Optional[float]] = mapped_column(Float)

    @property
    def xywh(self) -> str:
        return f"{self.x},{self.y},{self.w},{self.h}"
