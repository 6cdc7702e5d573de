"""Writing harvested IIIF into the database: the one place that turns parsed documents into rows.

Re-saving a manifest updates its canvases in place (matched by canvas id), so embeddings of
unchanged canvases survive a re-harvest; canvases whose image changed lose their derivative (and
their regions' derivatives) and their vectors are marked stale; canvases that disappeared are
deleted with their vectors. A manifest whose URL disappears (404/410, or a Delete activity) keeps
its rows but is flagged (``error``, ``http_status``) and its vectors are marked stale, so search
stops returning it while nothing is lost if it comes back.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from . import error_kinds
from ..iiif.annotations import ParsedTextAnnotation
from ..iiif.model import ParsedCollection, ParsedManifest
from ..models import (
    Canvas,
    Collection,
    CollectionMembership,
    Embedding,
    FetchedDocument,
    HarvestError,
    ImageServiceInfo,
    Manifest,
    Region,
    Source,
    TextAnnotation,
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


# The stages of a manifest's own errors (as opposed to those of its canvases' images).
MANIFEST_STAGES = ("fetch", "parse", "store")


def record_error(session: Session, stage: str, url: Optional[str], message: str,
                 manifest_id: Optional[int] = None, canvas_id: Optional[int] = None, *,
                 kind: Optional[str] = None, http_status: Optional[int] = None) -> HarvestError:
    """Record a failure with its kind and host (:mod:`.error_kinds`; ``kind`` when the caller
    knows it, e.g. "deferred"). An error of a canvas is also one of its manifest."""
    if canvas_id is not None and manifest_id is None:
        manifest_id = session.scalar(select(Canvas.manifest_id).where(Canvas.id == canvas_id))
    error = HarvestError(stage=stage, url=url, message=message[:4000],
                         manifest_id=manifest_id, canvas_id=canvas_id,
                         kind=error_kinds.classify(message, stage, http_status, kind),
                         host=error_kinds.host_of(message, url))
    session.add(error)
    session.flush()
    return error


def resolve_errors(session: Session, stages: tuple[str, ...], *, manifest_id: Optional[int] = None,
                   canvas_id=None, subject: Optional[str] = None) -> None:
    """Mark the open errors of ``stages`` on a canvas (or canvases: a list of ids), or on a
    manifest itself (not its canvases), resolved: a later attempt succeeded, or failed again and
    its error replaces them. So the open errors say what is wrong now, once, however many runs
    tried. ``subject``: only errors whose message starts with it (one item of a canvas)."""
    if isinstance(canvas_id, (list, tuple, set)):
        if not canvas_id:
            return
        target = HarvestError.canvas_id.in_(list(canvas_id))
    elif canvas_id is not None:
        target = HarvestError.canvas_id == canvas_id
    elif manifest_id is not None:
        target = (HarvestError.manifest_id == manifest_id) & HarvestError.canvas_id.is_(None)
    else:
        raise ValueError("resolve_errors needs a canvas or a manifest")
    if subject is not None:
        target = target & HarvestError.message.startswith(subject, autoescape=True)
    session.execute(update(HarvestError).where(target, HarvestError.stage.in_(stages),
                                               HarvestError.resolved.is_(False))
                    .values(resolved=True).execution_options(synchronize_session=False))


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
        "thumbnail": parsed_canvas.thumbnail,
    }


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def save_manifest(session: Session, parsed: ParsedManifest, *, url: Optional[str] = None,
                  source: Optional[Source] = None, source_id: Optional[int] = None,
                  fetched_from: Optional[str] = None, raw_json: Optional[str] = None,
                  content_sha256: Optional[str] = None, etag: Optional[str] = None,
                  last_modified: Optional[str] = None, http_status: Optional[int] = None) -> Manifest:
    """Insert or update the manifest harvested from ``url`` (default: its declared id) and its
    canvases; returns the Manifest row (flushed)."""
    url = url or parsed.id
    manifest = session.scalar(select(Manifest).where(Manifest.url == url))
    is_new = manifest is None
    if manifest is None:
        manifest = Manifest(url=url, iiif_id=parsed.id)
        session.add(manifest)
    manifest.iiif_id = parsed.id
    manifest.source_id = source.id if source else (source_id or manifest.source_id)
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
    if not is_new:
        resolve_errors(session, MANIFEST_STAGES, manifest_id=manifest.id)
    if parsed.id != url:  # a failed fetch of its id (as a collection lists it) left a row of its own
        absorb_failed_copy(session, manifest, parsed.id)

    existing = {} if is_new else {c.iiif_id: c for c in session.scalars(
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
            canvas.derivative_error = canvas.derivative_deferred = None
            stale_canvas_ids.append(canvas.id)
        for column, value in values.items():
            setattr(canvas, column, value)
    for iiif_id, canvas in existing.items():
        if iiif_id not in seen:
            session.delete(canvas)
    if stale_canvas_ids:
        session.execute(update(Embedding).where(Embedding.canvas_id.in_(stale_canvas_ids))
                        .values(stale=True))
        session.execute(update(Region).where(Region.canvas_id.in_(stale_canvas_ids))
                        .values(derivative_sha256=None))
    session.flush()
    return manifest


def record_manifest_failure(session: Session, url: str, message: str, *, stage: str = "parse",
                            source: Optional[Source] = None, http_status: Optional[int] = None,
                            raw_json: Optional[str] = None, flag_existing: bool = True) -> Manifest:
    """Record that ``url`` could not be used as a manifest.

    A manifest already harvested from that URL keeps its canvases (a passing failure must not
    lose data); it is flagged with ``error`` only when ``flag_existing`` (a timeout or a 503 on
    a re-harvest is logged in ``errors`` but does not mark good data as broken). A URL never
    harvested gets a row with ``error`` set, so the failure is visible in listings.
    """
    manifest = session.scalar(select(Manifest).where(Manifest.url == url))
    if manifest is None:
        manifest = Manifest(url=url, iiif_id=url, fetched_from=url,
                            source_id=source.id if source else None, raw_json=raw_json)
        session.add(manifest)
        flag_existing = True
    if flag_existing:
        manifest.error = message
        manifest.http_status = http_status
        manifest.fetched_at = utcnow()
    session.flush()
    resolve_errors(session, MANIFEST_STAGES, manifest_id=manifest.id)
    record_error(session, stage, url, message, manifest_id=manifest.id, http_status=http_status)
    return manifest


def absorb_failed_copy(session: Session, manifest: Manifest, url: str) -> bool:
    """``manifest`` declares the id ``url`` but came from another URL: the row a failed fetch of
    ``url`` left (an error, no canvases) is the same manifest. Its collection links move to
    ``manifest``, its errors too (resolved: the manifest is held), and the row goes, so the
    catalogue counts no failure for a manifest it holds. Returns whether there was such a row."""
    copy = session.scalar(select(Manifest).where(Manifest.url == url, Manifest.id != manifest.id,
                                                 Manifest.error.is_not(None)))
    if copy is None or session.scalar(select(Canvas.id).where(Canvas.manifest_id == copy.id).limit(1)) is not None:
        return False
    collection_ids = list(session.scalars(select(CollectionMembership.collection_id)
                                          .where(CollectionMembership.manifest_id == copy.id)))
    session.execute(delete(CollectionMembership).where(CollectionMembership.manifest_id == copy.id))
    for collection_id in collection_ids:
        link_manifest_ids(session, collection_id, manifest.id)
    session.execute(update(HarvestError).where(HarvestError.manifest_id == copy.id)
                    .values(manifest_id=manifest.id, resolved=True).execution_options(synchronize_session=False))
    session.delete(copy)
    session.flush()
    return True


def mark_manifest_gone(session: Session, url: str, reason: str,
                       http_status: Optional[int] = None) -> Optional[Manifest]:
    """Flag the manifest harvested from ``url`` as gone: ``error`` says why, its rows stay, its
    vectors are marked stale so search no longer returns it. Returns None when no manifest was
    ever harvested from ``url`` (nothing to flag)."""
    manifest = session.scalar(select(Manifest).where(Manifest.url == url))
    if manifest is None:
        return None
    manifest.error = f"gone: {reason}"
    manifest.http_status = http_status
    manifest.fetched_at = utcnow()
    canvas_ids = select(Canvas.id).where(Canvas.manifest_id == manifest.id).scalar_subquery()
    session.execute(update(Embedding).where(Embedding.canvas_id.in_(canvas_ids)).values(stale=True))
    session.flush()
    resolve_errors(session, MANIFEST_STAGES, manifest_id=manifest.id)
    record_error(session, "fetch", url, manifest.error, manifest_id=manifest.id, http_status=http_status)
    return manifest


def replace_text_annotations(session: Session, annotations: list[ParsedTextAnnotation], *,
                             source_url: str, origin_url: str,
                             manifest: Optional[Manifest] = None) -> int:
    """Replace the text annotations that ``source_url`` yielded when reached through
    ``origin_url`` (the manifest, or the annotation document itself) with ``annotations``.

    Targets are resolved to canvases of ``manifest`` when given, else to any harvested canvas
    with that id; unresolved ones are kept with ``canvas_iiif_id`` and linked when a manifest
    with that canvas is saved. Returns the number of rows written.
    """
    session.execute(delete(TextAnnotation).where(TextAnnotation.source_url == source_url,
                                                 TextAnnotation.origin_url == origin_url))
    targets = {a.canvas_id for a in annotations if a.canvas_id}
    canvases: dict[str, Canvas] = {}
    if targets:
        query = select(Canvas).where(Canvas.iiif_id.in_(targets))
        if manifest is not None:
            query = query.where(Canvas.manifest_id == manifest.id)
        for canvas in session.scalars(query.order_by(Canvas.id)):
            canvases.setdefault(canvas.iiif_id, canvas)
    rows = []
    for annotation in annotations:
        canvas = canvases.get(annotation.canvas_id) if annotation.canvas_id else None
        x, y, w, h = annotation.xywh or (None, None, None, None)
        rows.append(TextAnnotation(
            manifest_id=canvas.manifest_id if canvas else (manifest.id if manifest else None),
            canvas_id=canvas.id if canvas else None, canvas_iiif_id=annotation.canvas_id,
            iiif_id=annotation.id, motivation=(annotation.motivation or None) and annotation.motivation[:64],
            language=annotation.language, text=annotation.text, x=x, y=y, w=w, h=h,
            source_url=source_url, origin_url=origin_url))
    session.add_all(rows)
    session.flush()
    return len(rows)


def link_all_orphan_text_annotations(session: Session) -> int:
    """Attach every text annotation that arrived before its canvas (an annotation list harvested
    on its own) to a harvested canvas with that id, if there is one now. Returns rows linked."""
    canvas = select(Canvas.id).where(Canvas.iiif_id == TextAnnotation.canvas_iiif_id).order_by(Canvas.id).limit(1)
    manifest = (select(Canvas.manifest_id).where(Canvas.iiif_id == TextAnnotation.canvas_iiif_id)
                .order_by(Canvas.id).limit(1))
    result = session.execute(
        update(TextAnnotation)
        .where(TextAnnotation.canvas_id.is_(None), TextAnnotation.canvas_iiif_id.is_not(None),
               select(Canvas.id).where(Canvas.iiif_id == TextAnnotation.canvas_iiif_id).exists())
        .values(canvas_id=canvas.scalar_subquery(), manifest_id=manifest.scalar_subquery())
        .execution_options(synchronize_session=False))
    return result.rowcount or 0


def link_orphan_text_annotations(session: Session, manifest: Manifest) -> None:
    """Attach text annotations that arrived before their canvas (harvested on their own) to the
    canvases of ``manifest``."""
    orphan_targets = select(TextAnnotation.canvas_iiif_id).where(
        TextAnnotation.canvas_id.is_(None), TextAnnotation.canvas_iiif_id.is_not(None))
    for canvas in session.scalars(select(Canvas).where(Canvas.manifest_id == manifest.id,
                                                       Canvas.iiif_id.in_(orphan_targets))):
        session.execute(update(TextAnnotation)
                        .where(TextAnnotation.canvas_id.is_(None),
                               TextAnnotation.canvas_iiif_id == canvas.iiif_id)
                        .values(canvas_id=canvas.id, manifest_id=manifest.id))


def sync_canvas_regions(session: Session, canvas: Canvas, boxes: list[tuple[int, int, int, int]],
                        found_by: Optional[dict[tuple[int, int, int, int], tuple[str, Optional[float]]]] = None) -> int:
    """Make the canvas's regions exactly ``boxes`` (canvas coordinates): missing boxes are added
    without a derivative, boxes no longer wanted are deleted with their vectors. ``found_by``
    gives a box's method and score (default: a grid window); a kept box takes its new ones (the
    crop, hence the vector, is the same). Returns the number of boxes added."""
    found_by = found_by or {}
    wanted = list(dict.fromkeys(boxes))
    existing = {(r.x, r.y, r.w, r.h): r for r in session.scalars(
        select(Region).where(Region.canvas_id == canvas.id))}
    for box, region in existing.items():
        if box not in wanted:
            session.delete(region)
        else:
            region.method, region.score = found_by.get(box, ("grid", None))
    added = [Region(canvas_id=canvas.id, x=x, y=y, w=w, h=h,
                    method=found_by.get((x, y, w, h), ("grid", None))[0],
                    score=found_by.get((x, y, w, h), ("grid", None))[1])
             for (x, y, w, h) in wanted if (x, y, w, h) not in existing]
    session.add_all(added)
    session.flush()
    return len(added)


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
    link_manifest_ids(session, collection.id, manifest.id)


def link_manifest_ids(session: Session, collection_id: int, manifest_id: int) -> None:
    if session.get(CollectionMembership, (collection_id, manifest_id)) is None:
        session.add(CollectionMembership(collection_id=collection_id, manifest_id=manifest_id))
        session.flush()


def move_manifest(session: Session, old_url: str, new_url: str, old_prefix: str, new_prefix: str,
                  canvas_ids: Optional[dict[str, str]] = None) -> Optional[Manifest]:
    """The manifest harvested from ``old_url`` now lives at ``new_url``, every id under
    ``old_prefix`` now under ``new_prefix`` (a published folder served at another base URL): move
    its row and its canvases' ids, image services and image URLs, so that the next harvest of
    ``new_url`` updates the same rows in place and their derivatives and vectors stay. A canvas
    whose id is a key of ``canvas_ids`` takes that value as its new id instead (ids that changed
    scheme). A row already at another ``new_url`` (left by an earlier run) is kept and the one at
    ``old_url`` deleted. Returns the row now at ``new_url``, or None when nothing was harvested
    from ``old_url``."""
    def moved(value: Optional[str]) -> Optional[str]:
        return new_prefix + value[len(old_prefix):] if value and value.startswith(old_prefix) else value

    manifest = session.scalar(select(Manifest).where(Manifest.url == old_url))
    if manifest is None:
        return None
    already = session.scalar(select(Manifest).where(Manifest.url == new_url)) if new_url != old_url else None
    if already is not None:
        session.delete(manifest)
        session.flush()
        return already
    manifest.url, manifest.iiif_id = new_url, moved(manifest.iiif_id)
    manifest.fetched_from = moved(manifest.fetched_from)
    manifest.thumbnail = moved(manifest.thumbnail)
    canvases = session.scalars(select(Canvas).where(Canvas.manifest_id == manifest.id)).all()
    renamed = {canvas.id: (canvas_ids or {}).get(canvas.iiif_id) or moved(canvas.iiif_id) for canvas in canvases}
    for canvas in canvases:  # through ids of their own: a new id may be another canvas's old one
        canvas.iiif_id = f"{renamed[canvas.id]}#moving-{canvas.id}"
    session.flush()
    for canvas in canvases:
        canvas.iiif_id, canvas.service_id, canvas.image_url = (
            renamed[canvas.id], moved(canvas.service_id), moved(canvas.image_url))
    # The validators and last hash go along, so the harvest sees a changed document, not a new one.
    for document in session.scalars(select(FetchedDocument).where(FetchedDocument.url == old_url,
                                                                  FetchedDocument.context == "",
                                                                  FetchedDocument.url != new_url)):
        if session.scalar(select(FetchedDocument.id).where(FetchedDocument.url == new_url,
                                                           FetchedDocument.context == "")) is None:
            document.url = new_url
        else:
            session.delete(document)
    source = session.scalar(select(Source).where(Source.url == old_url)) if new_url != old_url else None
    if source is not None:
        other = session.scalar(select(Source).where(Source.url == new_url))
        if other is None:
            source.url = new_url
        else:
            manifest.source_id = other.id
            session.delete(source)
    session.flush()
    return manifest


def forget_image_services(session: Session, prefix: str) -> int:
    """Drop the cached info.json of every image service under ``prefix`` (a publication whose
    images were regenerated: a service id can stand for new pixels). Returns how many."""
    result = session.execute(delete(ImageServiceInfo).where(
        ImageServiceInfo.service_id.startswith(prefix, autoescape=True)))
    return result.rowcount or 0
