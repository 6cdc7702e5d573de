"""Writing harvested IIIF into the database: the one place that turns parsed documents into rows.

Re-saving a manifest updates its canvases in place (matched by canvas id), so embeddings of
unchanged canvases survive a re-harvest; canvases whose image changed lose their derivative and
their vectors are marked stale; canvases that disappeared are deleted with their vectors.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .iiif.model import ParsedCollection, ParsedManifest
from .models import (
    Canvas,
    Collection,
    CollectionMembership,
    Embedding,
    HarvestError,
    Manifest,
    Source,
    utcnow,
)

# Canvas columns that decide which pixels a canvas shows; a change invalidates its vectors.
_IMAGE_COLUMNS = ("service_id", "image_url", "target_xywh", "width", "height")


def get_or_create_source(session: Session, url: str, kind: Optional[str] = None) -> Source:
    source = session.scalar(select(Source).where(Source.url == url))
    if source is None:
        source = Source(url=url, kind=kind)
        session.add(source)
        session.flush()
    elif kind and not source.kind:
        source.kind = kind
    return source


def record_error(session: Session, stage: str, url: Optional[str], message: str,
                 manifest_id: Optional[int] = None, canvas_id: Optional[int] = None) -> HarvestError:
    error = HarvestError(stage=stage, url=url, message=message[:4000],
                         manifest_id=manifest_id, canvas_id=canvas_id)
    session.add(error)
    session.flush()
    return error


def _canvas_values(parsed_canvas) -> dict:
    image = parsed_canvas.image
    service = image.service if image else None
    return {
        "position": parsed_canvas.order,
        "label": parsed_canvas.label,
        "width": parsed_canvas.width,
        "height": parsed_canvas.height,
        "service_id": service.id if service else None,
        "service_api_version": service.api_version if service else None,
        "service_level": service.level if service else None,
        "service_profile": service.profile if service else None,
        "image_url": image.url if image else None,
        "image_format": image.format if image else None,
        "image_width": (image.width or (service.width if service else None)) if image else None,
        "image_height": (image.height or (service.height if service else None)) if image else None,
        "target_xywh": ",".join(str(v) for v in image.target_xywh) if image and image.target_xywh else None,
    }


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def save_manifest(session: Session, parsed: ParsedManifest, *, url: Optional[str] = None,
                  source: Optional[Source] = None,
                  fetched_from: Optional[str] = None, raw_json: Optional[str] = None,
                  content_sha256: Optional[str] = None, etag: Optional[str] = None,
                  last_modified: Optional[str] = None, http_status: Optional[int] = None) -> Manifest:
    """Insert or update the manifest harvested from ``url`` (default: its declared id) and its
    canvases; returns the Manifest row (flushed)."""
    url = url or parsed.id
    manifest = session.scalar(select(Manifest).where(Manifest.url == url))
    if manifest is None:
        manifest = Manifest(url=url, iiif_id=parsed.id)
        session.add(manifest)
    manifest.iiif_id = parsed.id
    manifest.source_id = source.id if source else manifest.source_id
    manifest.fetched_from = fetched_from
    manifest.iiif_version = parsed.iiif_version
    manifest.label = parsed.label
    manifest.summary = parsed.summary
    manifest.metadata_entries = _jsonable(parsed.metadata)
    manifest.required_statement = _jsonable(parsed.required_statement)
    manifest.rights = parsed.rights
    manifest.nav_date = parsed.nav_date
    manifest.providers = list(parsed.providers)
    manifest.homepage = list(parsed.homepage)
    manifest.see_also = list(parsed.see_also)
    manifest.thumbnail = parsed.thumbnail
    manifest.raw_json = raw_json
    manifest.content_sha256 = content_sha256
    manifest.etag = etag
    manifest.last_modified = last_modified
    manifest.http_status = http_status
    manifest.fetched_at = utcnow()
    manifest.canvas_count = parsed.canvas_count
    manifest.image_canvas_count = parsed.image_canvas_count
    manifest.warnings = list(parsed.warnings)
    manifest.error = None
    session.flush()

    existing = {c.iiif_id: c for c in session.scalars(
        select(Canvas).where(Canvas.manifest_id == manifest.id))}
    seen: set[str] = set()
    stale_canvas_ids: list[int] = []
    for parsed_canvas in parsed.canvases:
        if parsed_canvas.id in seen:  # the parser de-duplicates; guard the unique constraint anyway
            continue
        seen.add(parsed_canvas.id)
        values = _canvas_values(parsed_canvas)
        canvas = existing.get(parsed_canvas.id)
        if canvas is None:
            session.add(Canvas(manifest_id=manifest.id, iiif_id=parsed_canvas.id, **values))
            continue
        if any(getattr(canvas, col) != values[col] for col in _IMAGE_COLUMNS):
            canvas.derivative_sha256 = None
            canvas.derivative_error = None
            stale_canvas_ids.append(canvas.id)
        for column, value in values.items():
            setattr(canvas, column, value)
    for iiif_id, canvas in existing.items():
        if iiif_id not in seen:
            session.delete(canvas)
    if stale_canvas_ids:
        session.execute(update(Embedding).where(Embedding.canvas_id.in_(stale_canvas_ids))
                        .values(stale=True))
    session.flush()
    return manifest


def record_manifest_failure(session: Session, url: str, message: str, *, stage: str = "parse",
                            source: Optional[Source] = None, http_status: Optional[int] = None,
                            raw_json: Optional[str] = None) -> Manifest:
    """Record that ``url`` could not be used as a manifest.

    A manifest already harvested from that URL keeps its canvases (a passing failure must not
    lose data); otherwise a row with ``error`` set makes the failure visible in listings.
    """
    manifest = session.scalar(select(Manifest).where(Manifest.url == url))
    if manifest is None:
        manifest = Manifest(url=url, iiif_id=url, fetched_from=url,
                            source_id=source.id if source else None, raw_json=raw_json)
        session.add(manifest)
    manifest.error = message
    manifest.http_status = http_status
    manifest.fetched_at = utcnow()
    session.flush()
    record_error(session, stage, url, message, manifest_id=manifest.id)
    return manifest


def save_collection(session: Session, parsed: ParsedCollection,
                    source: Optional[Source] = None) -> Collection:
    collection = session.scalar(select(Collection).where(Collection.iiif_id == parsed.id))
    if collection is None:
        collection = Collection(iiif_id=parsed.id)
        session.add(collection)
    collection.source_id = source.id if source else collection.source_id
    collection.iiif_version = parsed.iiif_version
    collection.label = parsed.label
    collection.fetched_at = utcnow()
    session.flush()
    return collection


def link_manifest(session: Session, collection: Collection, manifest: Manifest) -> None:
    if session.get(CollectionMembership, (collection.id, manifest.id)) is None:
        session.add(CollectionMembership(collection_id=collection.id, manifest_id=manifest.id))
        session.flush()
