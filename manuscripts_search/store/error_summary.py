"""The open errors of a catalogue counted and grouped, in the database: how many there are, by
kind and host ("host name not found on images.example.org: 722, e.g. ..."), and per manifest.

Every query is a GROUP BY or a count over the indexed ``kind``/``host``/``manifest_id`` columns,
with the groups returned capped, so the answer costs the same memory for ten errors as for
hundreds of thousands. An example of each group is its newest error, fetched by id afterwards.
Used by ``msearch stats``/``errors``/``manifests``, the web pages and the JSON API alike.

Canvas images *deferred* because their host was down are no error rows (``canvases.
derivative_deferred`` names the host; the next run fetches them): they are counted here as the
"host down / deferred" kind, by host, beside the errors.
"""
from __future__ import annotations

import heapq
from typing import Iterable, Optional

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ..models import Canvas, HarvestError, Manifest
from . import error_kinds

IMAGE_STAGES = ("image", "region")
GROUP_LIMIT = 20

OPEN = HarvestError.resolved.is_(False)


def open_error_count(session: Session, manifest_id: Optional[int] = None) -> int:
    query = select(func.count()).select_from(HarvestError).where(OPEN)
    if manifest_id is not None:
        query = query.where(HarvestError.manifest_id == manifest_id)
    return session.scalar(query) or 0


DEFERRED = Canvas.derivative_deferred.is_not(None)


def has_problem():
    """A condition on Manifest: it could not be used, it has open errors (of its images), or
    images waiting for a host that was down."""
    return or_(Manifest.error.is_not(None),
               select(HarvestError.id).where(OPEN, HarvestError.manifest_id == Manifest.id).exists(),
               Manifest.id.in_(select(Canvas.manifest_id).where(DEFERRED)))


def manifest_counts(session: Session) -> dict:
    """Manifests with a problem of any kind, that could not be used, whose canvas or region
    images failed; and the canvas images deferred (their host was down)."""
    count = lambda *where: session.scalar(select(func.count()).select_from(Manifest).where(*where)) or 0  # noqa: E731
    return {
        "manifests_with_errors": count(has_problem()),
        "manifests_unusable": count(Manifest.error.is_not(None)),
        "manifests_with_image_errors": count(select(HarvestError.id).where(
            HarvestError.manifest_id == Manifest.id, OPEN, HarvestError.stage.in_(IMAGE_STAGES)).exists()),
        "deferred_images": session.scalar(select(func.count()).select_from(Canvas).where(DEFERRED)) or 0,
    }


def error_groups(session: Session, limit: int = GROUP_LIMIT, manifest_id: Optional[int] = None) -> dict:
    """``{"total": open errors, "deferred": deferred canvas images, "group_count": all groups,
    "groups": [the ``limit`` largest]}``; a group is the errors of one stage, kind and host (or
    the images deferred on one host), with its count and newest example.

    One GROUP BY (an index-only scan of the open errors); its rows, one per stage, kind and host,
    are streamed and only the ``limit`` largest are kept."""
    where = [OPEN] if manifest_id is None else [OPEN, HarvestError.manifest_id == manifest_id]
    grouped = (select(HarvestError.stage, HarvestError.kind, HarvestError.host,
                      func.count().label("n"), func.max(HarvestError.id).label("newest"))
               .where(*where).group_by(HarvestError.stage, HarvestError.kind, HarvestError.host))
    deferred = (select(Canvas.derivative_deferred, func.count().label("n"), func.max(Canvas.id).label("newest"))
                .where(DEFERRED).group_by(Canvas.derivative_deferred))
    if manifest_id is not None:
        deferred = deferred.where(Canvas.manifest_id == manifest_id)
    total = group_count = deferred_total = 0
    largest: list = []

    def keep(entry) -> None:
        if len(largest) < limit:
            heapq.heappush(largest, entry)
        elif limit:
            heapq.heappushpop(largest, entry)

    for row in session.execute(grouped.execution_options(yield_per=1000)):
        total += row.n
        group_count += 1
        keep((row.n, row.newest, tuple(row)))
    # Deferred images, by host: their example is a canvas (told apart by a negative id).
    for host, n, newest in session.execute(deferred.execution_options(yield_per=1000)):
        deferred_total += n
        group_count += 1
        keep((n, 0, ("image", error_kinds.HOST_DOWN, error_kinds.host_of(None, host), n, -newest)))
    rows = [entry[2] for entry in sorted(largest, reverse=True)]
    examples = {e.id: e for e in session.scalars(select(HarvestError).where(
        HarvestError.id.in_([newest for *_, newest in rows if newest > 0])))} if rows else {}
    canvases = {c.id: c for c in session.scalars(select(Canvas).where(
        Canvas.id.in_([-newest for *_, newest in rows if newest < 0])))} if rows else {}
    groups = []
    for stage, kind, host, n, newest in rows:
        if newest < 0:
            canvas = canvases.get(-newest)
            groups.append({
                "stage": stage, "kind": kind, "host": host, "count": n, "deferred": True,
                "description": error_kinds.describe(kind, stage),
                "example": None if canvas is None else {
                    "id": None, "url": canvas.iiif_id, "manifest_id": canvas.manifest_id, "canvas_id": canvas.id,
                    "message": f"host down: image deferred ({canvas.derivative_deferred}); the next harvest retries it",
                    "created_at": None}})
            continue
        example = examples.get(newest)
        groups.append({
            "stage": stage, "kind": kind or "other", "host": host, "count": n,
            "description": error_kinds.describe(kind, stage, example.message if example else None),
            "example": None if example is None else {
                "id": example.id, "url": example.url, "message": example.message,
                "manifest_id": example.manifest_id, "canvas_id": example.canvas_id,
                "created_at": example.created_at.isoformat(timespec="seconds") if example.created_at else None},
        })
    return {"total": total, "deferred": deferred_total, "group_count": group_count, "groups": groups}


def per_manifest(session: Session, manifest_ids: Iterable[int]) -> dict[int, dict]:
    """For each manifest id with open errors or deferred images: ``{"errors": n, "image_errors":
    canvases whose image failed, "deferred": {host: images deferred}, "kinds": [(description,
    count), ...] of the errors, largest first}``."""
    ids = list(dict.fromkeys(manifest_ids))
    found: dict[int, dict] = {}

    def entry_of(manifest_id: int) -> dict:
        return found.setdefault(manifest_id, {"errors": 0, "image_errors": 0, "deferred": {}, "kinds": []})

    for start in range(0, len(ids), 500):
        for manifest_id, host, n in session.execute(
                select(Canvas.manifest_id, Canvas.derivative_deferred, func.count())
                .where(DEFERRED, Canvas.manifest_id.in_(ids[start:start + 500]))
                .group_by(Canvas.manifest_id, Canvas.derivative_deferred)):
            entry_of(manifest_id)["deferred"][host] = n
        rows = session.execute(
            select(HarvestError.manifest_id, HarvestError.stage, HarvestError.kind, func.count())
            .where(OPEN, HarvestError.manifest_id.in_(ids[start:start + 500]))
            .group_by(HarvestError.manifest_id, HarvestError.stage, HarvestError.kind)).all()
        for manifest_id, stage, kind, n in rows:
            entry = entry_of(manifest_id)
            entry["errors"] += n
            if stage == "image":  # one per canvas whose image failed
                entry["image_errors"] += n
            entry["kinds"].append((error_kinds.describe(kind, stage), n))
    for entry in found.values():
        merged: dict[str, int] = {}
        for description, n in entry["kinds"]:
            merged[description] = merged.get(description, 0) + n
        entry["kinds"] = sorted(merged.items(), key=lambda item: (-item[1], item[0]))
    return found


def summarise_failures(failures: Iterable[tuple[str, Optional[str], str]], limit: int = 5) -> list[dict]:
    """Group a harvest run's failures ``(stage, url, reason)`` (already in memory: the run's
    report) by kind and host as the database does: the ``limit`` largest groups, each with its
    count and first example."""
    groups: dict[tuple, dict] = {}
    for stage, url, reason in failures:
        kind = error_kinds.classify(reason, stage)
        key = (stage, kind, error_kinds.host_of(reason, url))
        group = groups.get(key)
        if group is None:
            groups[key] = {"stage": stage, "kind": kind, "host": key[2], "count": 1,
                           "description": error_kinds.describe(kind, stage, reason),
                           "example": {"url": url, "message": reason}}
        else:
            group["count"] += 1
    return sorted(groups.values(), key=lambda g: -g["count"])[:limit]
