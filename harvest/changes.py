"""IIIF Change Discovery API 1.0: follow a publisher's activity stream.

Implements the consuming algorithm of the specification (section 3.5): start at the ``last``
page, read activities newest first, walk ``prev`` pages backwards, and stop at the first
activity older than the previous run (or at the very activity applied last). For each object
only its newest activity counts. Create/Update/Add harvest the object, Delete/Remove flag it as
gone, Move does both; after a ``Refresh`` a consumer that has read the stream before only looks
for deletions, and a new consumer stops there. The position is stored per stream
(``change_streams``) only after the activities were applied, so a killed run repeats work
rather than skipping it.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from manuscripts_search.store import catalogue as store
from manuscripts_search.store.db import session_scope
from manuscripts_search.models import ChangeStream, FetchedDocument, utcnow

from .http import Fetcher, FetchError
from .manifests import HarvestOptions, HarvestReport, harvest_urls_once, normalise_source

log = logging.getLogger(__name__)

MAX_PAGES = 100_000  # a stream longer than this is read over several runs at most once each
_KNOWN_OBJECT_TYPES = {"manifest", "collection"}


@dataclass
class ChangesReport:
    stream: str
    pages_read: int = 0
    activities_read: int = 0
    harvested: list[str] = field(default_factory=list)  # object URLs created/updated
    removed: list[str] = field(default_factory=list)  # object URLs deleted/removed
    skipped: int = 0  # older duplicates, unknown object types, non-deletions after a Refresh
    stopped_at: Optional[str] = None  # why reading stopped
    harvest: Optional[HarvestReport] = None
    failures: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"stream": self.stream, "pages_read": self.pages_read,
                "activities_read": self.activities_read, "harvested": len(self.harvested),
                "removed": len(self.removed), "skipped": self.skipped, "stopped_at": self.stopped_at,
                "harvest": self.harvest.as_dict() if self.harvest else None,
                "failures": [{"url": u, "reason": r} for u, r in self.failures]}


@dataclass(frozen=True)
class _Activity:
    type: str  # local name, lower case: create, update, delete ...
    object_id: Optional[str]
    object_type: Optional[str]
    time: Optional[str]  # endTime (startTime for Refresh) as published
    target_id: Optional[str]
    origin_id: Optional[str]

    @property
    def key(self) -> str:
        return f"{self.type}|{self.object_id or ''}|{self.time or ''}"


def _local(name: Any) -> Optional[str]:
    if not isinstance(name, str) or not name.strip():
        return None
    return name.strip().rsplit(":", 1)[-1].rsplit("/", 1)[-1].rsplit("#", 1)[-1].lower()


def _id(value: Any) -> Optional[str]:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, dict):
        for key in ("id", "@id"):
            if isinstance(value.get(key), str) and value[key].strip():
                return value[key].strip()
    return None


def _type(value: Any) -> Optional[str]:
    if isinstance(value, dict):
        raw = value.get("type", value.get("@type"))
        return _local(raw[0] if isinstance(raw, list) and raw else raw)
    return None


def _activity(raw: Any) -> Optional[_Activity]:
    if not isinstance(raw, dict):
        return None
    kind = _type(raw)
    if kind is None:
        return None
    time = raw.get("endTime") or raw.get("startTime") or raw.get("published")
    obj = raw.get("object")
    return _Activity(type=kind, object_id=_id(obj), object_type=_type(obj),
                     time=time if isinstance(time, str) else None,
                     target_id=_id(raw.get("target")), origin_id=_id(raw.get("origin")))


def _parse_time(value: Optional[str]) -> Optional[datetime]:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _fetch_json(fetcher: Fetcher, url: str) -> dict:
    result = fetcher.get(url, expect="json")
    try:
        doc = json.loads(result.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FetchError(url, f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise FetchError(url, "not a JSON object")
    return doc


def process_change_stream(stream_url: str, session_factory: sessionmaker[Session], fetcher: Fetcher,
                          options: Optional[HarvestOptions] = None, max_pages: int = MAX_PAGES) -> ChangesReport:
    """Read ``stream_url`` (an OrderedCollection of activities) back to where the previous run
    stopped and apply the newer activities. Never raises for remote problems: they are in
    ``failures`` and the stream position is left where it was; so is it when documents were
    deferred because their host was down."""
    stream_url = normalise_source(stream_url)
    report = ChangesReport(stream=stream_url)
    with session_scope(session_factory) as session:
        state = session.scalar(select(ChangeStream).where(ChangeStream.url == stream_url))
        last_time = state.last_activity_time if state else None
        last_key = state.last_activity_key if state else None
    last_moment = _parse_time(last_time)
    seen_before = last_time is not None or last_key is not None

    try:
        plan = _read_stream(stream_url, fetcher, report, last_moment, last_key, seen_before, max_pages)
    except FetchError as exc:
        report.failures.append((exc.url, exc.reason))
        report.stopped_at = f"could not read the stream: {exc.reason}"
        with session_scope(session_factory) as session:
            _state(session, stream_url).last_error = exc.reason
        return report
    newest, to_harvest, to_remove = plan

    for url in to_remove:
        with session_scope(session_factory) as session:
            store.mark_manifest_gone(session, url, "deleted (Change Discovery activity)")
            doc = session.scalar(select(FetchedDocument).where(FetchedDocument.url == url,
                                                               FetchedDocument.context == ""))
            if doc is not None:
                doc.gone_at, doc.etag, doc.last_modified, doc.content_sha256 = utcnow(), None, None, None
        report.removed.append(url)
    if to_harvest:
        report.harvest = harvest_urls_once(to_harvest, session_factory, fetcher, options)
        report.harvested.extend(to_harvest)
        report.failures.extend(report.harvest.failures)
    deferred = report.harvest is not None and report.harvest.deferred
    if deferred:
        # Their hosts were down: the next run reads these activities again (the rest cost a 304).
        report.stopped_at = (f"{report.stopped_at}; " if report.stopped_at else "") + (
            f"{len(report.harvest.deferred)} document(s) deferred (host down), position kept")
    with session_scope(session_factory) as session:
        state = _state(session, stream_url)
        if newest is not None and not deferred:
            state.last_activity_time, state.last_activity_key = newest.time, newest.key
        state.activities_applied = (state.activities_applied or 0) + len(to_harvest) + len(to_remove)
        state.last_run_at, state.last_error = utcnow(), None
    return report


def _state(session: Session, url: str) -> ChangeStream:
    state = session.scalar(select(ChangeStream).where(ChangeStream.url == url))
    if state is None:
        state = ChangeStream(url=url, activities_applied=0)
        session.add(state)
        session.flush()
    return state


def _read_stream(stream_url, fetcher, report, last_moment, last_key, seen_before, max_pages):
    """Walk the pages backwards; returns (newest activity, URLs to harvest, URLs to remove)."""
    collection = _fetch_json(fetcher, stream_url)
    kind = _type(collection)
    if kind == "orderedcollectionpage":
        page_url: Optional[str] = stream_url  # a single page given directly
    elif kind == "orderedcollection":
        page_url = _id(collection.get("last"))
        if page_url is None:
            raise FetchError(stream_url, "activity stream has no `last` page")
    else:
        raise FetchError(stream_url, f"not a Change Discovery OrderedCollection (type {kind or 'missing'})")

    processed: set[str] = set()
    visited: set[str] = set()
    to_harvest: list[str] = []
    to_remove: list[str] = []
    newest: Optional[_Activity] = None
    only_delete = False
    while page_url:
        if page_url in visited:
            report.stopped_at = f"page loop at {page_url}"
            break
        if len(visited) >= max_pages:
            report.stopped_at = f"read {max_pages} pages"
            break
        visited.add(page_url)
        page = collection if page_url == stream_url else _fetch_json(fetcher, page_url)
        report.pages_read += 1
        items = page.get("orderedItems")
        stop = False
        for raw in reversed(items if isinstance(items, list) else []):
            activity = _activity(raw)
            if activity is None:
                report.skipped += 1
                continue
            report.activities_read += 1
            if newest is None and activity.type != "refresh":
                newest = activity
            moment = _parse_time(activity.time)
            if last_key is not None and activity.key == last_key:
                report.stopped_at = "reached the activity applied last time"
                stop = True
                break
            if last_moment is not None and moment is not None and moment < last_moment:
                report.stopped_at = "reached activities older than the last run"
                stop = True
                break
            if activity.type == "refresh":
                if not seen_before:
                    report.stopped_at = "reached a Refresh: everything newer has been read"
                    stop = True
                    break
                only_delete = True
                continue
            object_id = activity.object_id
            if not object_id or object_id in processed or (activity.object_type or "") not in _KNOWN_OBJECT_TYPES:
                report.skipped += 1
                continue
            processed.add(object_id)
            if activity.type == "delete" or (activity.type == "remove" and activity.origin_id == stream_url):
                to_remove.append(object_id)
            elif only_delete:
                report.skipped += 1
            elif activity.type in ("create", "update") or (
                    activity.type == "add" and activity.target_id in (None, stream_url)):
                to_harvest.append(object_id)
            elif activity.type == "move":
                to_remove.append(object_id)
                if activity.target_id:
                    to_harvest.append(activity.target_id)
            else:
                report.skipped += 1
        if stop:
            break
        page_url = _id(page.get("prev"))
    if report.stopped_at is None:
        report.stopped_at = "reached the first page"
    return newest, to_harvest, to_remove
