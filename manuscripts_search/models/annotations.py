"""Text harvested from annotations: transcriptions, OCR, comments, tags — searched later."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class TextAnnotation(Base):
    """One textual annotation body on a canvas (or a part of it, in canvas coordinates).

    ``canvas_iiif_id`` is the target as published; ``canvas_id``/``manifest_id`` are filled in when
    a harvested canvas has that id (an annotation list harvested on its own may arrive before the
    manifest it annotates, and is linked when the manifest comes). ``origin_url`` is the document
    through which the text was reached (the manifest, or the annotation list itself when harvested
    on its own); a re-harvest replaces all rows of one (source_url, origin_url) pair.
    """

    __tablename__ = "text_annotations"
    id: Mapped[int] = mapped_column(primary_key=True)
    manifest_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), index=True)
    canvas_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("canvases.id", ondelete="CASCADE"), index=True)
    canvas_iiif_id: Mapped[Optional[str]] = mapped_column(Text, index=True)
    iiif_id: Mapped[Optional[str]] = mapped_column(Text)  # the annotation's id, when it has one
    motivation: Mapped[Optional[str]] = mapped_column(String(64))  # supplementing, commenting, painting...
    language: Mapped[Optional[str]] = mapped_column(String(35))
    text: Mapped[str] = mapped_column(Text)  # plain text (HTML bodies are reduced to text)
    # Target box in canvas coordinates; all NULL means the whole canvas.
    x: Mapped[Optional[int]] = mapped_column(Integer)
    y: Mapped[Optional[int]] = mapped_column(Integer)
    w: Mapped[Optional[int]] = mapped_column(Integer)
    h: Mapped[Optional[int]] = mapped_column(Integer)
    source_url: Mapped[Optional[str]] = mapped_column(Text, index=True)  # the list/page it came from
    origin_url: Mapped[Optional[str]] = mapped_column(Text)  # the manifest (or list) it was reached by
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def xywh(self) -> Optional[str]:
        if None in (self.x, self.y, self.w, self.h):
            return None
        return f"{self.x},{self.y},{self.w},{self.h}"
