"""Queries behind the browse pages and their JSON twins: sources, collections, manifests,
harvest runs and errors, as plain dicts (labels as published; templates escape or sanitise)."""
from __future__ import annotations

from typing import Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from manuscripts_search.iiif.language import first_value
from manuscripts_search.models import (Canvas, Collection, CollectionMembership, Crawl, CrawlItem, HarvestError,
                                       Manifest, Source)
from manuscripts_search.store import error_kinds, error_summary

from .canvas_info import manifest_json_url
from .errors import AppError

PAGE_SIZE = 50


def _iso(value) -> Optional[str]:
    return value.isoformat(timespec="seconds") if value is not None else None


def sources(session: Session) -> list[dict]:
    counts = dict(session.execute(select(Manifest.source_id, func.count()).group_by(Manifest.source_id)).all())
    errors = dict(session.execute(select(Manifest.source_id, func.count()).where(error_summary.has_problem())
                                  .group_by(Manifest.source_id)).all())
    return [{"id": s.id, "url": s.url, "kind": s.kind, "status": s.status, "added_at": _iso(s.added_at),
             "last_harvested_at": _iso(s.last_harvested_at), "manifests": counts.get(s.id, 0),
             "manifests_with_errors": errors.get(s.id, 0)}
            for s in session.scalars(select(Source).order_by(Source.id))]


def collections(session: Session) -> list[dict]:
    counts = dict(session.execute(select(CollectionMembership.collection_id, func.count())
                                  .group_by(CollectionMembership.collection_id)).all())
    return [{"id": c.id, "iiif_id": c.iiif_id, "label": first_value(c.label), "iiif_version": c.iiif_version,
             "manifests": counts.get(c.id, 0), "fetched_at": _iso(c.fetched_at)}
            for c in session.scalars(select(Collection).order_by(Collection.id))]


def manifests(session: Session, page: int = 1, collection_id: Optional[int] = None,
              errors_only: bool = False) -> tuple[list[dict], bool]:
    statement = select(Manifest).order_by(Manifest.id)
    if collection_id is not None:
        statement = statement.where(Manifest.id.in_(select(CollectionMembership.manifest_id).where(
            CollectionMembership.collection_id == collection_id)))
    if errors_only:
        statement = statement.where(error_summary.has_problem())
    rows = list(session.scalars(statement.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)))
    shown = rows[:PAGE_SIZE]
    problems = error_summary.per_manifest(session, [m.id for m in shown])
    return [manifest_summary(m, problems.get(m.id)) for m in shown], len(rows) > PAGE_SIZE


_NO_PROBLEMS = {"errors": 0, "image_errors": 0, "deferred": {}, "kinds": []}


def manifest_summary(manifest: Manifest, problems: Optional[dict] = None) -> dict:
    """A manifest's row; ``problems`` its open errors (:func:`error_summary.per_manifest`)."""
    problems = problems or _NO_PROBLEMS
    return {"id": manifest.id, "iiif_id": manifest.iiif_id, "url": manifest.url, "label": first_value(manifest.label),
            "iiif_version": manifest.iiif_version, "canvas_count": manifest.canvas_count,
            "image_canvas_count": manifest.image_canvas_count, "json_url": manifest_json_url(manifest),
            "nav_date": manifest.nav_date, "error": manifest.error, "fetched_at": _iso(manifest.fetched_at),
            "open_errors": problems["errors"], "image_errors": problems["image_errors"],
            "deferred_images": sum(problems["deferred"].values()), "deferred_hosts": sorted(problems["deferred"]),
            "error_kinds": [{"description": d, "count": n} for d, n in problems["kinds"]]}


def manifest_detail(session: Session, manifest: Manifest) -> dict:
    detail = manifest_summary(manifest, error_summary.per_manifest(session, [manifest.id]).get(manifest.id))
    detail["error_groups"] = error_summary.error_groups(session, manifest_id=manifest.id)
    detail.update({"labels": manifest.label or {}, "summary": manifest.summary or {},
                   "metadata": manifest.metadata_entries or [], "required_statement": manifest.required_statement,
                   "rights": manifest.rights, "providers": manifest.providers or [],
                   "homepage": manifest.homepage or [], "warnings": manifest.warnings or [],
                   "collections": [{"id": cid, "label": first_value(label)} for cid, label in session.execute(
                       select(Collection.id, Collection.label).join(
                           CollectionMembership, CollectionMembership.collection_id == Collection.id)
                       .where(CollectionMembership.manifest_id == manifest.id))]})
    return detail


def manifest_canvases(session: Session, manifest: Manifest, limit: int = 500) -> list[Canvas]:
    return list(session.scalars(select(Canvas).where(Canvas.manifest_id == manifest.id)
                                .order_by(Canvas.position).limit(limit)))


def load_manifest(session: Session, manifest_id: int) -> Manifest:
    manifest = session.get(Manifest, manifest_id) if 0 < manifest_id < 2**63 else None
    if manifest is None:
        raise AppError(f"There is no manifest with id {manifest_id}.", 404)
    return manifest


def harvest_status(session: Session, limit: int = 50) -> dict:
    """Recent crawls; the open errors counted and grouped by kind and host (all of them, in the
    database), the ``limit`` newest of them, and the manifests that could not be used."""
    crawls = []
    for crawl in session.scalars(select(Crawl).order_by(Crawl.id.desc()).limit(20)):
        counts = dict(session.execute(select(CrawlItem.status, func.count()).where(CrawlItem.crawl_id == crawl.id)
                                      .group_by(CrawlItem.status)).all())
        crawls.append({"id": crawl.id, "status": crawl.status, "sources": crawl.sources or [],
                       "started_at": _iso(crawl.started_at), "finished_at": _iso(crawl.finished_at),
                       "items": counts})
    errors = [{"id": e.id, "stage": e.stage, "kind": e.kind, "host": e.host,
               "description": error_kinds.describe(e.kind, e.stage, e.message), "url": e.url,
               "message": e.message, "manifest_id": e.manifest_id, "canvas_id": e.canvas_id,
               "created_at": _iso(e.created_at), "resolved": e.resolved}
              for e in session.scalars(select(HarvestError).where(error_summary.OPEN)
                                       .order_by(HarvestError.id.desc()).limit(limit))]
    grouped = error_summary.error_groups(session)
    failed = select(Manifest).where(Manifest.error.is_not(None))
    failed_manifests = [manifest_summary(m) for m in session.scalars(failed.order_by(Manifest.id.desc()).limit(limit))]
    return {"crawls": crawls, "error_count": grouped["total"], "deferred_images": grouped["deferred"],
            "error_groups": grouped["groups"],
            "error_group_count": grouped["group_count"], "errors": errors,
            **error_summary.manifest_counts(session), "failed_manifests": failed_manifests}
