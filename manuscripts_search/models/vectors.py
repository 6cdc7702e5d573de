"""Vectors: one row per (model space, canvas or region)."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class Embedding(Base):
    """One vector of one canvas (region_id NULL) or region, in one model's space.

    The row id is the label used in the HNSW index, so index and database can be checked
    against each other. ``stale`` vectors (canvas changed or removed) are kept out of search.
    """

    __tablename__ = "embeddings"
    __table_args__ = (
        Index("uq_embedding_canvas", "space", "canvas_id", unique=True,
              sqlite_where=text("region_id IS NULL"), postgresql_where=text("region_id IS NULL")),
        Index("uq_embedding_region", "space", "region_id", unique=True,
              sqlite_where=text("region_id IS NOT NULL"), postgresql_where=text("region_id IS NOT NULL")),
        # Ids are index labels: SQLite must never reuse the id of a deleted vector.
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    space: Mapped[str] = mapped_column(String(512), index=True)  # "<model id>@<revision>"
    model_id: Mapped[str] = mapped_column(Text)
    model_revision: Mapped[str] = mapped_column(String(128))
    canvas_id: Mapped[int] = mapped_column(ForeignKey("canvases.id", ondelete="CASCADE"), index=True)
    region_id: Mapped[Optional[int]] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"))
    dim: Mapped[int] = mapped_column(Integer)
    # L2-normalised, little-endian float16: 2*dim bytes. Read and written through
    # store/vector_codec.py, which also reads the float32 rows (4*dim bytes) from before migration 0006.
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    stale: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
