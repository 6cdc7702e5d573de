"""Thumbnails of canvases: a small image URL for every card of a results or manifest page.

In order: the ``thumbnail`` the manifest gives the canvas; a size request to its Image API
service (level 1 and up, or an unknown level); for a level-0 service, a whole-image size its
info.json lists (as cached at harvest in ``image_service_infos``), since level 0 serves only
those; for a canvas without a service, its one image URL. Never ``full/max`` of a service:
a page of 24 such cards weighed 52 MB. None when nothing small is on offer (a level-0 service
listing no small size): the web app then serves the harvester's stored derivative instead.
"""
from __future__ import annotations

from typing import Iterable, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..iiif.image_requests import image_request_url
from ..iiif.info_json import ImageInfo, parse_info_json
from ..models import Canvas, ImageServiceInfo

THUMBNAIL_EDGE = 256
# A listed size above this many times the wanted edge is no thumbnail (some services list only
# the full size): better the stored derivative than megabytes per card.
MAX_LISTED_FACTOR = 4


def service_key(service_id: str) -> str:
    """The key the harvester caches an info.json under (see harvest.images.InfoCache)."""
    return service_id.strip().rstrip("/").removesuffix("/info.json")


def level0_infos(session: Session, canvases: Iterable[Canvas]) -> dict[str, ImageInfo]:
    """The cached info.json of the level-0 services of ``canvases`` (by service key), in one query."""
    keys = {service_key(c.service_id) for c in canvases
            if c.service_id and c.service_level == 0 and not c.thumbnail}
    if not keys:
        return {}
    infos = {}
    for service_id, doc in session.execute(select(ImageServiceInfo.service_id, ImageServiceInfo.info_json)
                                           .where(ImageServiceInfo.service_id.in_(keys),
                                                  ImageServiceInfo.info_json.is_not(None))):
        try:
            infos[service_id] = parse_info_json(doc)
        except ValueError:
            continue  # an unusable document: no listed sizes
    return infos


def thumbnail_url(canvas: Canvas, long_edge: int = THUMBNAIL_EDGE,
                  infos: Optional[dict[str, ImageInfo]] = None) -> Optional[str]:
    """A small image URL for ``canvas`` (``infos``: from :func:`level0_infos`), or None."""
    if canvas.thumbnail and canvas.thumbnail != canvas.image_url:
        return canvas.thumbnail
    if canvas.service_id and canvas.service_level != 0:
        # Image API 2.1 level 1 only promises "w,"; "!w,h" needs level 2 (or an unknown level,
        # where it is by far the most widely supported form).
        size = f"{long_edge}," if canvas.service_level == 1 else f"!{long_edge},{long_edge}"
        try:
            return image_request_url(canvas.service_id, canvas.service_api_version or 2, size=size)
        except ValueError:
            return None
    if canvas.service_id:
        info = (infos or {}).get(service_key(canvas.service_id))
        return _listed_size_url(canvas.service_id, info, long_edge) if info is not None else None
    return canvas.image_url


def _listed_size_url(service_id: str, info: ImageInfo, long_edge: int) -> Optional[str]:
    if not info.sizes:
        return None
    big_enough = [wh for wh in info.sizes if max(wh) >= long_edge]
    size = min(big_enough, key=max) if big_enough else max(info.sizes, key=max)
    if max(size) > long_edge * MAX_LISTED_FACTOR:
        return None
    # Static level-0 trees keep 2.x sizes under "w," and 3.0 sizes under "w,h" (canonical forms).
    param = f"{size[0]},{size[1]}" if info.api_version == 3 else f"{size[0]},"
    try:
        # The manifest's service id, which the harvester reached (info.json ids are sometimes an
        # internal host's).
        return image_request_url(service_id, info.api_version, size=param)
    except ValueError:
        return None
