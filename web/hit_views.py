"""Search hits as the pages and the API show them: the engine's hit plus links (viewer, IIIF
Content State share link), the thumbnail (the engine's, else one cut from the stored derivative),
the regions the hit shows (search/region_display.py: the best and at most two others) as
labelled boxes in percentages of it, a cropped thumbnail of the best region, the holding
institution, and "more like this" only for pages that have an image vector to compare."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from flask import url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from manuscripts_search.iiif.content_state import canvas_content_state, content_state_parameter
from manuscripts_search.models import Canvas, Embedding, Manifest
from manuscripts_search.search.engine import ResultHit

from .canvas_info import http_url, manifest_json_url, region_thumbnail_url
from .thumbnails import stored_thumbnail_url
from .sanitise import language_values

@dataclass
class HitView:
    hit: ResultHit
    canvas_width: Optional[int]
    canvas_height: Optional[int]
    institution: Optional[str]
    viewer_url: str
    share_url: str
    content_state: str
    region_thumbnail: Optional[str]
    thumbnail: Optional[str] = None  # what the card shows (never a full-size image)
    boxes: list[dict] = field(default_factory=list)
    crop_corner: str = "bottom-right"  # where the region's crop sits: the corner that hides least of the boxes
    similar_url: Optional[str] = None  # "more like this"; None: the page has no image vector

    @property
    def aspect(self) -> Optional[str]:
        if self.canvas_width and self.canvas_height:
            return f"{self.canvas_width} / {self.canvas_height}"
        return None

    def as_dict(self) -> dict:
        data = self.hit.as_dict()
        data.update({"institution": self.institution, "viewer_url": self.viewer_url, "share_url": self.share_url,
                     "content_state": self.content_state, "region_thumbnail": self.region_thumbnail,
                     "canvas_width": self.canvas_width, "canvas_height": self.canvas_height,
                     "similar_url": self.similar_url, "thumbnail": self.thumbnail})
        return data


def hit_views(session: Session, hits: list[ResultHit], query: Optional[str]) -> list[HitView]:
    if not hits:
        return []
    canvases = {c.id: c for c in session.scalars(select(Canvas).where(Canvas.id.in_([h.canvas_id for h in hits])))}
    manifests = {m.id: m for m in session.scalars(select(Manifest).where(
        Manifest.id.in_({h.manifest_id for h in hits})))}
    # A page without an image (or not encoded yet) has no vector: "more like this" would fail.
    with_vector = set(session.scalars(select(Embedding.canvas_id).where(
        Embedding.canvas_id.in_(list(canvases)), Embedding.region_id.is_(None), Embedding.stale.is_(False))))
    views = []
    for hit in hits:
        canvas, manifest = canvases.get(hit.canvas_id), manifests.get(hit.manifest_id)
        if canvas is None or manifest is None:
            continue
        view = _view(hit, canvas, manifest, query)
        if canvas.id in with_vector and (canvas.service_id or canvas.image_url):
            view.similar_url = url_for("search.results", like=canvas.id)
        views.append(view)
    return views


def _view(hit: ResultHit, canvas: Canvas, manifest: Manifest, query: Optional[str]) -> HitView:
    shown = hit.shown_regions
    # The link carries the boxes the card draws: the canvas page zooms to the focus (``xywh``,
    # the first of them) and draws the others (``shown``) too.
    focus = hit.focus_xywh
    viewer_url = url_for("viewer.canvas", canvas_id=canvas.id, xywh=focus,
                         shown=";".join(region.xywh for region in shown if region.xywh != focus) or None,
                         q=query or None)
    manifest_ref = manifest_json_url(manifest) or manifest.iiif_id
    state = content_state_parameter(canvas_content_state(canvas.iiif_id, manifest_ref, focus))
    share_url = url_for("viewer.view", _external=True, **{"iiif-content": state})
    boxes = []
    if canvas.width and canvas.height:
        for region in shown:
            box = _percent_box(region.xywh, canvas.width, canvas.height)
            if box:
                boxes.append({**box, "signal": region.signal, "best": region.xywh == focus, "rank": region.rank,
                              "label": region.label, "caption": region.caption})
    institution = None
    for provider in manifest.providers or []:
        label = provider.get("label") if isinstance(provider, dict) and "label" in provider else provider
        values = language_values(label)
        if values:
            institution = values[0]
            break
    return HitView(hit, canvas.width, canvas.height, institution, viewer_url, share_url, state,
                   http_url(region_thumbnail_url(canvas, hit.xywh)),
                   http_url(hit.thumbnail) or stored_thumbnail_url(canvas), boxes, crop_corner=_crop_corner(boxes))


CROP_SIZE = 40  # percent of the thumbnail the crop may take (style.css: max-width/max-height)


def _crop_corner(boxes: list[dict]) -> str:
    """The corner of the thumbnail where the crop covers the least of the drawn boxes (the crop
    of the best region, laid over the best region itself, hid what it shows); bottom right
    unless another corner hides less."""
    def hidden(left: float, top: float) -> float:
        return sum(max(0.0, min(left + CROP_SIZE, b["left"] + b["width"]) - max(left, b["left"]))
                   * max(0.0, min(top + CROP_SIZE, b["top"] + b["height"]) - max(top, b["top"])) for b in boxes)

    far = 100 - CROP_SIZE
    corners = {"bottom-right": (far, far), "bottom-left": (0, far), "top-right": (far, 0), "top-left": (0, 0)}
    return min(corners, key=lambda name: hidden(*corners[name]))  # the first of equals: bottom right


def _percent_box(xywh: str, width: int, height: int) -> Optional[dict]:
    try:
        x, y, w, h = (int(part) for part in xywh.split(","))
    except ValueError:
        return None
    if w <= 0 or h <= 0 or not (0 <= x < width and 0 <= y < height):
        return None  # nothing of it on the canvas
    return {"left": round(100 * x / width, 3), "top": round(100 * y / height, 3),
            "width": round(100 * min(w, width - x) / width, 3), "height": round(100 * min(h, height - y) / height, 3)}
