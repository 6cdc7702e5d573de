"""Search: a text query through the model's text tower, k-NN in the HNSW index, hits resolved
to canvases (and regions) with everything the web page and the CLI need to show them."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from .iiif.language import first_value
from .index import VectorIndex
from .models import Canvas, Embedding, Manifest, Region


@dataclass
class SearchHit:
    rank: int
    score: float
    embedding_id: int
    canvas_id: int  # database id
    canvas: str  # IIIF canvas id
    canvas_label: Optional[str]
    manifest: str  # IIIF manifest id
    manifest_id: int
    manifest_label: Optional[str]
    xywh: Optional[str]  # region in canvas coordinates; None for a whole-canvas hit
    service_id: Optional[str]
    service_api_version: Optional[int]
    image_url: Optional[str]
    thumbnail: Optional[str]

    def as_dict(self) -> dict:
        return asdict(self)


class SearchError(ValueError):
    """A query cannot be answered; the message tells the user why (no index yet, empty query)."""


def thumbnail_url(canvas: Canvas, long_edge: int = 256) -> Optional[str]:
    """An image URL a browser can show for ``canvas``: its Image API service at a small size
    (level 0 services can only serve listed sizes, so they fall back to the direct image)."""
    from .iiif.image_api import image_request_url

    if canvas.service_id and canvas.service_level != 0:
        # Image API 2.1 level 1 only promises "w,"; "!w,h" needs level 2 (or an unknown level,
        # where it is by far the most widely supported form).
        size = f"{long_edge}," if canvas.service_level == 1 else f"!{long_edge},{long_edge}"
        return image_request_url(canvas.service_id, canvas.service_api_version or 2, size=size)
    return canvas.image_url


def load_index(index_dir: Path, space: str) -> VectorIndex:
    index = VectorIndex.load(index_dir, space)
    if index is None:
        raise SearchError(f"no index for model space {space!r}: run `msearch embed` "
                          "and `msearch index` first")
    return index


def resolve_hits(session: Session, scored: list[tuple[int, float]]) -> list[SearchHit]:
    """Turn (embedding id, score) pairs into hits; labels no longer live in the DB are dropped."""
    if not scored:
        return []
    rows = session.execute(
        select(Embedding, Canvas, Manifest, Region)
        .join(Canvas, Canvas.id == Embedding.canvas_id)
        .join(Manifest, Manifest.id == Canvas.manifest_id)
        .outerjoin(Region, Region.id == Embedding.region_id)
        .where(Embedding.id.in_([label for label, _ in scored]))
        .where(Embedding.stale.is_(False))).all()
    by_id = {row[0].id: row for row in rows}
    hits = []
    for label, score in scored:
        if label not in by_id:
            continue  # stale or deleted since the index was saved: never return it
        embedding, canvas, manifest, region = by_id[label]
        hits.append(SearchHit(
            rank=len(hits) + 1, score=round(score, 6), embedding_id=embedding.id,
            canvas_id=canvas.id, canvas=canvas.iiif_id, canvas_label=first_value(canvas.label),
            manifest=manifest.iiif_id, manifest_id=manifest.id,
            manifest_label=first_value(manifest.label), xywh=region.xywh if region else None,
            service_id=canvas.service_id, service_api_version=canvas.service_api_version,
            image_url=canvas.image_url, thumbnail=thumbnail_url(canvas)))
    return hits


def search_text(session: Session, encoder, index: VectorIndex, query: str, k: int = 10) -> list[SearchHit]:
    query = (query or "").strip()
    if not query:
        raise SearchError("the query is empty")
    if len(query) > 1000:
        raise SearchError("the query is longer than 1000 characters")
    if k < 1 or k > 1000:
        raise SearchError("k must be between 1 and 1000")
    vector = encoder.encode_texts([query])[0]
    # Ask for a few more than k so that labels dropped as stale do not shorten the page.
    scored = index.query(vector, k + 16)
    return resolve_hits(session, scored)[:k]
