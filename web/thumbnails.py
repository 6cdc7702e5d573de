"""Thumbnails of canvases for the pages: the URL each card shows, and, for canvases whose image
service offers nothing small (a level-0 service listing no small size, or a plain image URL),
a thumbnail cut from the derivative the harvester stored, so that no card loads a full image."""
from __future__ import annotations

import io
import logging
from typing import Iterable, Optional

from flask import Blueprint, Response, current_app, request, url_for
from sqlalchemy.orm import Session

from manuscripts_search.models import Canvas
from manuscripts_search.search.thumbnails import THUMBNAIL_EDGE, level0_infos, thumbnail_url

from .database import get_session
from .errors import AppError

log = logging.getLogger(__name__)
bp = Blueprint("thumbnails", __name__)


def stored_thumbnail_url(canvas: Canvas) -> Optional[str]:
    """This app's thumbnail of ``canvas``'s stored derivative, when there is one (absolute, as
    the API gives every other image URL)."""
    return url_for("thumbnails.canvas", canvas_id=canvas.id, _external=True) if canvas.derivative_sha256 else None


def canvas_thumbnails(session: Session, canvases: Iterable[Canvas], long_edge: int = THUMBNAIL_EDGE) -> dict:
    """{canvas id: thumbnail URL or None} for ``canvases``, in one query for all their services."""
    from .canvas_info import http_url

    canvases = list(canvases)
    infos = level0_infos(session, canvases)
    return {canvas.id: http_url(thumbnail_url(canvas, long_edge, infos)) or stored_thumbnail_url(canvas)
            for canvas in canvases}


@bp.get("/thumbnails/canvas/<int:canvas_id>.jpg")
def canvas(canvas_id: int):
    """The stored derivative of a canvas, scaled to a thumbnail (the derivative never changes
    under its sha256, so the response is cached for a day and revalidated by ETag)."""
    from PIL import Image

    from manuscripts_search.store.derivatives import DerivativeStore

    row = get_session().get(Canvas, canvas_id)
    if row is None or not row.derivative_sha256:
        raise AppError("This canvas has no stored image.", 404)
    etag = f"{row.derivative_sha256[:32]}-{THUMBNAIL_EDGE}"
    if request.if_none_match.contains(etag):
        return Response(status=304, headers={"ETag": f'"{etag}"'})
    store = DerivativeStore(current_app.config["MSEARCH_CONFIG"].derivatives_dir)
    try:
        with Image.open(store.path_for(row.derivative_sha256)) as image:
            image.draft("RGB", (THUMBNAIL_EDGE, THUMBNAIL_EDGE))  # JPEG: decode at a reduced scale
            image = image.convert("RGB")
    except (OSError, ValueError) as error:
        log.warning("derivative of canvas %s unreadable: %s", canvas_id, error)
        raise AppError("This canvas's stored image cannot be read.", 404) from None
    image.thumbnail((THUMBNAIL_EDGE, THUMBNAIL_EDGE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=82)
    return Response(buffer.getvalue(), mimetype="image/jpeg",
                    headers={"ETag": f'"{etag}"', "Cache-Control": "public, max-age=86400"})
