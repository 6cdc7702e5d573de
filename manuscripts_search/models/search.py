"""Search: text documents for full-text and semantic text search, their sentence vectors, and
curator-defined categories (open-set classification) with their prototypes and canvas labels.

The full-text index itself is made by raw SQL in migration 0004, per dialect: an FTS5 table
(``search_documents_fts``, external content, kept in step by triggers) on SQLite, a GIN index on
``to_tsvector('simple', text)`` on PostgreSQL. The models do not know it; Alembic's comparison
skips it through :func:`alembic_include_object`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import (
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow

FTS_TABLE = "search_documents_fts"
PG_FULLTEXT_INDEX = "ix_search_documents_fulltext"


def is_fulltext_object(name: Optional[str], type_: str) -> bool:
    """Whether a reflected table or index is part of the raw-SQL full-text index (FTS5 table and
    its shadow tables, or the PostgreSQL GIN index), which Alembic's autogenerate must ignore."""
    if not name:
        return False
    return (type_ == "table" and name.startswith(FTS_TABLE)) or (type_ == "index" and name == PG_FULLTEXT_INDEX)


def alembic_include_object(_object, name, type_, _reflected, _compare_to) -> bool:
    """Alembic's ``include_object`` hook (migrations/env.py): compare everything but the
    full-text index made by raw SQL."""
    return not is_fulltext_object(name, type_)


class SearchDocument(Base):
    """One unit of searchable text: a manifest's metadata, a canvas's label, or one annotation.

    Row ids are never reused (labels of the text-vector index point at them through TextVector).
    ``source_key`` ("manifest:12", "canvas:7", "annotation:99") lets a refresh update in place.
    """

    __tablename__ = "search_documents"
    __table_args__ = ({"sqlite_autoincrement": True},)
    id: Mapped[int] = mapped_column(primary_key=True)
    source_key: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # manifest | canvas | annotation
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifests.id", ondelete="CASCADE"), index=True)
    canvas_id: Mapped[Optional[int]] = mapped_column(ForeignKey("canvases.id", ondelete="CASCADE"), index=True)
    annotation_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("text_annotations.id", ondelete="CASCADE"), index=True)
    language: Mapped[Optional[str]] = mapped_column(String(35))
    text: Mapped[str] = mapped_column(Text)
    # The annotation's box in canvas coordinates; all NULL for a whole canvas or a manifest.
    x: Mapped[Optional[int]] = mapped_column(Integer)
    y: Mapped[Optional[int]] = mapped_column(Integer)
    w: Mapped[Optional[int]] = mapped_column(Integer)
    h: Mapped[Optional[int]] = mapped_column(Integer)
    content_sha256: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def xywh(self) -> Optional[str]:
        if None in (self.x, self.y, self.w, self.h):
            return None
        return f"{self.x},{self.y},{self.w},{self.h}"


class TextVector(Base):
    """The sentence vector (MiniLM) of one document in one text model's space.

    The row id is the label in that space's HNSW index; a changed document gets a new row.
    """

    __tablename__ = "text_vectors"
    __table_args__ = (UniqueConstraint("space", "document_id", name="uq_text_vector_document"),
                      {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("search_documents.id", ondelete="CASCADE"), index=True)
    space: Mapped[str] = mapped_column(String(512), index=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float16, L2-normalised, like Embedding.vector
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Category(Base):
    """A class a curator defines ("initial with gold", "map", "binding") by prototypes."""

    __tablename__ = "categories"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[Optional[str]] = mapped_column(Text)
    # Cosine similarity a canvas must reach to its nearest prototype; NULL: the run's default.
    threshold: Mapped[Optional[float]] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CategoryPrototype(Base):
    """One example of a category: a text prompt, an image, or an existing canvas, with its vector
    in one model's space (text prompts are re-encoded for a new space; images must be re-added)."""

    __tablename__ = "category_prototypes"
    id: Mapped[int] = mapped_column(primary_key=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # text | image | canvas
    text: Mapped[Optional[str]] = mapped_column(Text)  # the prompt, for kind text
    source: Mapped[Optional[str]] = mapped_column(Text)  # image path or URL, for kind image
    canvas_id: Mapped[Optional[int]] = mapped_column(ForeignKey("canvases.id", ondelete="CASCADE"))
    space: Mapped[str] = mapped_column(String(512), index=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float16, L2-normalised, like Embedding.vector
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CanvasLabel(Base):
    """A canvas labelled with a category (its nearest prototype, above the threshold) in a space."""

    __tablename__ = "canvas_labels"
    canvas_id: Mapped[int] = mapped_column(ForeignKey("canvases.id", ondelete="CASCADE"), primary_key=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id", ondelete="CASCADE"),
                                             primary_key=True, index=True)
    space: Mapped[str] = mapped_column(String(512), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    labelled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
