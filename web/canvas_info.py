"""What the viewer page and the canvas API say about one canvas: where its image comes from,
where it sits on the canvas, and how canvas coordinates map to OpenSeadragon's viewport.

OpenSeadragon's viewport measures everything in units of the first image's width. We place the
image on the canvas (its ``target_xywh``, else the whole canvas) in units of the *canvas* width,
so any canvas rectangle (x, y, w, h) becomes (x, y, w, h) / canvas width.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Union
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from manuscripts_search.iiif.language import first_value
from manuscripts_search.models import Canvas, Manifest

from .errors import AppError

_XYWH = re.compile(r"^(?:pixel:)?(\d{1,9}),(\d{1,9}),(\d{1,9}),(\d{1,9})$")
_NUMBER = r"(\d{1,3}(?:\.\d{1,6})?)"
_PERCENT_XYWH = re.compile(rf"^percent:{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}$")


@dataclass(frozen=True)
class CanvasRect:
    x: int
    y: int
    w: int
    h: int

    def as_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}

    def to_viewport(self, canvas_width: int) -> dict:
        return {"x": self.x / canvas_width, "y": self.y / canvas_width,
                "width": self.w / canvas_width, "height": self.h / canvas_width}


def parse_xywh(raw: Optional[str], what: str = "xywh", canvas: Optional[Canvas] = None) -> Optional[CanvasRect]:
    """A Media Fragments region as a rectangle in canvas coordinates; None for None/"".

    ``x,y,w,h`` or ``pixel:x,y,w,h`` (whole numbers), or ``percent:x,y,w,h`` (of the canvas
    size, so ``canvas`` must have one). Raises AppError (400) for anything else, including an
    empty width or height or a percentage above 100.
    """
    if raw is None or not raw.strip():
        return None
    value = raw.strip().replace(" ", "")
    percent = _PERCENT_XYWH.match(value)
    if percent:
        if canvas is None or not canvas.width or not canvas.height:
            raise AppError(f"{what} in percent needs a canvas whose size is known; give pixels instead.", 400)
        px, py, pw, ph = (float(part) for part in percent.groups())
        if px + pw > 100.0001 or py + ph > 100.0001:
            raise AppError(f"{what} must stay within 0 to 100 percent of the canvas, got {raw[:60]!r}.", 400)
        rect = CanvasRect(round(px * canvas.width / 100), round(py * canvas.height / 100),
                          round(pw * canvas.width / 100), round(ph * canvas.height / 100))
    else:
        match = _XYWH.match(value)
        if not match:
            raise AppError(f"{what} must be four whole numbers x,y,w,h in canvas coordinates "
                           f"(or percent:x,y,w,h), got {raw[:60]!r}.", 400)
        rect = CanvasRect(*(int(part) for part in match.groups()))
    if rect.w == 0 or rect.h == 0:
        raise AppError(f"{what} must have a width and height above 0, got {raw[:60]!r}.", 400)
    return rect


def http_url(url: Optional[str]) -> Optional[str]:
    """``url`` when it is an absolute http(s) URL, else None.

    Everything we link to or load comes from harvested manifests; a ``javascript:`` or ``data:``
    URL there must never reach an href, an img src or the viewer.
    """
    if not url or not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url.strip()


def info_json_url(canvas: Canvas) -> Optional[str]:
    service = http_url(canvas.service_id)
    return f"{service.rstrip('/')}/info.json" if service else None


def tile_source(canvas: Canvas) -> Union[dict, str, None]:
    """The OpenSeadragon tile source: the IIIF info.json when there is an image service, a plain
    image otherwise, None when the canvas paints no usable image."""
    info = info_json_url(canvas)
    if info:
        return info
    image = http_url(canvas.image_url)
    return {"type": "image", "url": image} if image else None


def image_placement(canvas: Canvas) -> Optional[dict]:
    """Where the image sits on the canvas, in viewport units; None when the canvas has no width
    (then the image defines the coordinates)."""
    if not canvas.width or canvas.width <= 0:
        return None
    try:
        target = parse_xywh(canvas.target_xywh, "target")
    except AppError:
        target = None  # a malformed target in a manifest: paint over the whole canvas
    if target is None:
        return {"x": 0.0, "y": 0.0, "width": 1.0}
    viewport = target.to_viewport(canvas.width)
    return {"x": viewport["x"], "y": viewport["y"], "width": viewport["width"]}


def overlay(canvas: Canvas, rect: Optional[CanvasRect]) -> Optional[dict]:
    """The highlighted rectangle for the viewer: viewport units when the canvas width is known,
    else image pixels (the viewer converts those once the image is open)."""
    if rect is None:
        return None
    if canvas.width and canvas.width > 0:
        return {"units": "viewport", **rect.to_viewport(canvas.width)}
    return {"units": "image", "x": rect.x, "y": rect.y, "width": rect.w, "height": rect.h}


def manifest_json_url(manifest: Manifest) -> Optional[str]:
    """Where the manifest's JSON can be read: the URL it was harvested from, else the final URL
    after redirects, else its declared id (None when none is an http(s) URL, e.g. a local file)."""
    return http_url(manifest.url) or http_url(manifest.fetched_from) or http_url(manifest.iiif_id)


def load_canvas(session: Session, canvas_id: int) -> Canvas:
    """The canvas with database id ``canvas_id`` (its manifest loaded); AppError 404 if none."""
    # Ids beyond a 64-bit integer cannot exist, and SQLite drivers raise OverflowError on them.
    canvas = session.get(Canvas, canvas_id) if 0 < canvas_id < 2**63 else None
    if canvas is None:
        raise AppError(f"There is no canvas with id {canvas_id}.", 404)
    return canvas


def neighbour_ids(session: Session, canvas: Canvas) -> tuple[Optional[int], Optional[int]]:
    """Database ids of the previous and next canvas in the same manifest."""
    previous_id = session.scalar(
        select(Canvas.id).where(Canvas.manifest_id == canvas.manifest_id, Canvas.position < canvas.position)
        .order_by(Canvas.position.desc()).limit(1))
    next_id = session.scalar(
        select(Canvas.id).where(Canvas.manifest_id == canvas.manifest_id, Canvas.position > canvas.position)
        .order_by(Canvas.position).limit(1))
    return previous_id, next_id


def canvas_summary(canvas: Canvas, thumbnail: Optional[str] = None) -> dict:
    """The canvas as plain JSON-able data (labels as published: escaping is the renderer's job);
    ``thumbnail``: its URL, as :func:`web.thumbnails.canvas_thumbnails` chose it."""
    manifest = canvas.manifest
    return {
        "id": canvas.id,
        "iiif_id": canvas.iiif_id,
        "position": canvas.position,
        "label": first_value(canvas.label),
        "labels": canvas.label or {},
        "width": canvas.width,
        "height": canvas.height,
        "image": {
            "service_id": canvas.service_id,
            "service_api_version": canvas.service_api_version,
            "service_level": canvas.service_level,
            "info_json": info_json_url(canvas),
            "image_url": canvas.image_url,
            "target_xywh": canvas.target_xywh,
            "thumbnail": thumbnail,
        },
        "manifest": {
            "id": manifest.id,
            "iiif_id": manifest.iiif_id,
            "url": manifest.url,
            "label": first_value(manifest.label),
            "json_url": manifest_json_url(manifest),
        },
    }


def image_region(canvas: Canvas, rect: CanvasRect) -> Optional[tuple[int, int, int, int]]:
    """``rect`` (canvas coordinates) in the pixels of the canvas's image, clipped to it; None when
    the region misses the image or the sizes needed are unknown."""
    canvas_width, canvas_height = canvas.width, canvas.height
    target = None
    try:
        target = parse_xywh(canvas.target_xywh, "target") if canvas.target_xywh else None
    except AppError:
        target = None
    area = target or (CanvasRect(0, 0, canvas_width, canvas_height) if canvas_width and canvas_height else None)
    image_width = canvas.image_width or (area.w if area else None)
    image_height = canvas.image_height or (area.h if area else None)
    if area is None or not image_width or not image_height:
        return None
    scale_x, scale_y = image_width / area.w, image_height / area.h
    x0 = max(0, round((rect.x - area.x) * scale_x))
    y0 = max(0, round((rect.y - area.y) * scale_y))
    x1 = min(image_width, round((rect.x + rect.w - area.x) * scale_x))
    y1 = min(image_height, round((rect.y + rect.h - area.y) * scale_y))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


def region_thumbnail_url(canvas: Canvas, xywh: Optional[str], long_edge: int = 256) -> Optional[str]:
    """An Image API URL of just the region ``xywh`` of the canvas (for region hits), or None when
    the canvas has no service that can crop (level 0, or a plain image)."""
    from manuscripts_search.iiif.image_requests import image_request_url

    service = http_url(canvas.service_id)
    if not xywh or not service or canvas.service_level == 0:
        return None
    try:
        rect = parse_xywh(xywh)
    except AppError:
        return None
    region = image_region(canvas, rect) if rect else None
    if region is None:
        return None
    size = f"{long_edge}," if canvas.service_level == 1 else f"!{long_edge},{long_edge}"
    try:
        return image_request_url(service, canvas.service_api_version or 2, region=region, size=size)
    except ValueError:
        return None


def rights_label(rights: Optional[str]) -> Optional[str]:
    """A short name for a Creative Commons or RightsStatements.org URI (else None)."""
    url = http_url(rights)
    if not url:
        return None
    match = re.search(r"creativecommons\.org/(licenses|publicdomain)/([a-z-]+)/(\d\.\d)?", url)
    if match:
        kind, code, version = match.groups()
        if kind == "publicdomain":
            return "Public Domain Mark" if code == "mark" else "CC0 (public domain)"
        return f"CC {code.upper()}" + (f" {version}" if version else "")
    match = re.search(r"rightsstatements\.org/vocab/([A-Za-z-]+)/", url)
    if match:
        return f"RightsStatements.org {match.group(1)}"
    return None
