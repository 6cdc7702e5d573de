"""Failures recorded against the URL or item they happened on."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Boolean, DateTime, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class HarvestError(Base):
    """Every failure, recorded against the URL (or file) it happened on, with a readable reason."""

    __tablename__ = "errors"
    id: Mapped[int] = mapped_column(primary_key=True)
    stage: Mapped[str] = mapped_column(String(32))  # fetch | parse | image | embed | index
    url: Mapped[Optional[str]] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    manifest_id: Mapped[Optional[int]] = mapped_column(ForeignKey("manifests.id", ondelete="CASCADE"))
    canvas_id: Mapped[Optional[int]] = mapped_column(ForeignKey("canvases.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved: Mapped[bool] = mapped_column(Boolean, default=False)
