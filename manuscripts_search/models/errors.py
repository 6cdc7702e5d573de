"""Failures recorded against the URL or item they happened on."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class HarvestError(Base):
    """Every failure, recorded against the URL (or file) it happened on, with a readable reason.

    ``kind`` and ``host`` are derived from the reason when the row is written
    (:mod:`manuscripts_search.store.error_kinds`): the status pages group hundreds of thousands of
    errors by them with a GROUP BY instead of reading every message. ``resolved`` is set when a
    later attempt on the same canvas or manifest succeeded or failed again (the newer row then
    says what is wrong now), so the open rows are the problems of today, each counted once.
    """

    __tablename__ = "errors"
    __table_args__ = (
        Index("ix_errors_open_kind_host", "resolved", "stage", "kind", "host"),
        Index("ix_errors_manifest_open", "manifest_id", "resolved", "stage", "kind"),
        Index("ix_errors_canvas_id", "canvas_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    stage: Mapped[str] = mapped_column(String(32))  # fetch | parse | image | embed | index
    url: Mapped[Optional[str]] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    manifest_id: Mapped[Optional[int]] = mapped_column(ForeignKey("manifests.id", ondelete="CASCADE"))
    canvas_id: Mapped[Optional[int]] = mapped_column(ForeignKey("canvases.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved: Mapped[bool] = mapped_column(Boolean, default=False)
    kind: Mapped[Optional[str]] = mapped_column(String(32))  # error_kinds.LABELS
    host: Mapped[Optional[str]] = mapped_column(String(255))  # host[:port] the request went to
