"""Other digitisations of a page: near-duplicates by perceptual hash.

The embedding worker stores the hashes (:mod:`manuscripts_search.embedding.perceptual_hashes`); the
search compares each image's 256-bit hash with the other's crops both ways, so re-encoded,
resized and slightly cropped copies are found, for a canvas or for a drawn region's pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from manuscripts_search.models import Canvas
from manuscripts_search.embedding.perceptual_hashes import find_near_duplicates


@dataclass
class DuplicateResult:
    canvases: list[tuple[Canvas, Any]] = field(default_factory=list)  # (canvas, hit with distance, similarity)
    message: Optional[str] = None  # why there are none, when that is not simply "no duplicates"


def find_duplicates(session: Session, canvas: Canvas, region_image=None, limit: int = 12) -> DuplicateResult:
    """Near-duplicates of ``canvas`` (or of ``region_image``, a drawn region's pixels), closest first."""
    try:
        if region_image is None:
            hits = find_near_duplicates(session, canvas_id=canvas.id, limit=limit)
        else:
            hits = find_near_duplicates(session, image=region_image, limit=limit)
    except ValueError as error:  # HashLookupError: the canvas has not been hashed yet
        return DuplicateResult(message=str(error)[0].upper() + str(error)[1:] + ".")
    canvases = {c.id: c for c in session.scalars(select(Canvas).where(Canvas.id.in_([h.canvas_id for h in hits])))}
    return DuplicateResult([(canvases[h.canvas_id], h) for h in hits if h.canvas_id in canvases])
