"""What the database holds of regions, for the region method and detector tests."""
from __future__ import annotations

from sqlalchemy import func, select

from manuscripts_search.models import Embedding, Region
from manuscripts_search.store.db import session_scope


def regions_by_canvas(factory) -> dict[int, list[tuple[tuple[int, int, int, int], str, float | None]]]:
    """canvas id -> [(box, method, score)] in id order."""
    with session_scope(factory) as session:
        by_canvas: dict = {}
        for r in session.scalars(select(Region).order_by(Region.canvas_id, Region.id)):
            by_canvas.setdefault(r.canvas_id, []).append(((r.x, r.y, r.w, r.h), r.method, r.score))
        return by_canvas


def region_vector_count(factory) -> int:
    with session_scope(factory) as session:
        return session.scalar(select(func.count()).select_from(Embedding).where(Embedding.region_id.is_not(None)))
