"""The embedding worker's tables: the model spaces that hold vectors, claims that let several
workers share one queue, and perceptual hashes of canvas and region images."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import (BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String,
                        Text, text)
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class ModelSpace(Base):
    """An embedding space vectors were written in: which model (id and exact revision) made them,
    their size, and whether the model also encodes text. Vectors of two spaces never mix."""

    __tablename__ = "model_spaces"
    space: Mapped[str] = mapped_column(String(512), primary_key=True)  # "<model id>@<revision>"
    kind: Mapped[str] = mapped_column(String(32))  # vision-language | handcrafted
    model_id: Mapped[str] = mapped_column(Text)
    revision: Mapped[str] = mapped_column(String(128))
    dim: Mapped[int] = mapped_column(Integer)
    supports_text: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EmbeddingClaim(Base):
    """One canvas (``region_id`` NULL) or region being embedded in one space, or waiting to be
    retried after a failure.

    While ``worker_id`` is set the item belongs to that worker until ``lease_until``; a live worker
    keeps extending it, a dead one's lease runs out and any worker takes the item. After a failure
    ``worker_id`` is NULL and ``lease_until`` is when the item may be tried again. The row goes
    when the vector is written, in the same transaction. Times are Unix seconds, taken from the
    database server's clock on PostgreSQL so that workers on several machines agree.
    """

    __tablename__ = "embedding_claims"
    __table_args__ = (
        Index("uq_embedding_claim_canvas", "space", "canvas_id", unique=True,
              sqlite_where=text("region_id IS NULL"), postgresql_where=text("region_id IS NULL")),
        Index("uq_embedding_claim_region", "space", "region_id", unique=True,
              sqlite_where=text("region_id IS NOT NULL"), postgresql_where=text("region_id IS NOT NULL")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    space: Mapped[str] = mapped_column(String(512))
    canvas_id: Mapped[int] = mapped_column(ForeignKey("canvases.id", ondelete="CASCADE"), index=True)
    region_id: Mapped[Optional[int]] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"), index=True)
    worker_id: Mapped[Optional[str]] = mapped_column(String(200), index=True)  # host:pid:token
    lease_until: Mapped[float] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PerceptualHash(Base):
    """Perceptual hashes of one canvas's (``region_id`` NULL) or region's derivative image, for
    near-duplicate search (see :mod:`manuscripts_search.embedding.perceptual_hashes`). ``derivative_sha256`` is the
    image they were computed from: a new derivative makes them outdated."""

    __tablename__ = "perceptual_hashes"
    __table_args__ = (
        Index("uq_perceptual_hash_canvas", "canvas_id", unique=True, sqlite_where=text("region_id IS NULL"),
              postgresql_where=text("region_id IS NULL")),
        Index("uq_perceptual_hash_region", "region_id", unique=True, sqlite_where=text("region_id IS NOT NULL"),
              postgresql_where=text("region_id IS NOT NULL")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    canvas_id: Mapped[int] = mapped_column(ForeignKey("canvases.id", ondelete="CASCADE"))
    region_id: Mapped[Optional[int]] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"))
    derivative_sha256: Mapped[str] = mapped_column(String(64))
    algorithm: Mapped[str] = mapped_column(String(32))
    phash64: Mapped[int] = mapped_column(BigInteger)  # 64-bit DCT hash, stored signed
    crop_hashes: Mapped[bytes] = mapped_column(LargeBinary)  # 256-bit hashes of the image and its crops
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
