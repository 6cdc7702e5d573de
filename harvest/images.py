"""Fetch one image per canvas, at model resolution, into the content-addressed derivative store.

The canvas's IIIF Image API service is preferred (info.json read once per service, a request the
service can honour chosen by :func:`plan_fetch`); the direct image URL is the fallback. What is
stored is a normalised RGB JPEG whose long edge is at most the requested size, so the worker never
meets a decompression bomb or an exotic format.

A canvas whose image host is down (:class:`~harvest.http.HostDownError`) is *deferred*, not
failed: the host is recorded on the canvas (``derivative_deferred``), no error is, and the next
run fetches it like any canvas still without a derivative.
"""
from __future__ import annotations

import io
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Collection, Optional

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from manuscripts_search.store import catalogue as core_store
from manuscripts_search.store.db import session_scope
from manuscripts_search.store.derivatives import DerivativeStore
from manuscripts_search.iiif.fetch_plans import plan_fetch
from manuscripts_search.iiif.info_json import ImageInfo, parse_info_json
from manuscripts_search.iiif.tile_stitching import stitch_tiles
from manuscripts_search.iiif.model import ImageServiceRef
from manuscripts_search.image_decoding import MAX_HARVEST_IMAGE_PIXELS, decode_image
from manuscripts_search.models import Canvas, ImageServiceInfo, utcnow

from .http import Fetcher, FetchError, HostDownError

log = logging.getLogger(__name__)

@dataclass
class ImageReport:
    fetched: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (canvas IIIF id, reason)
    deferred: dict[str, int] = field(default_factory=dict)  # host down -> canvases left for a later run

    def as_dict(self) -> dict:
        result = {"fetched": self.fetched,
                  "failures": [{"canvas": c, "reason": r} for c, r in self.failures]}
        if self.deferred:  # only then: a run without a host down reports as before
            result["deferred"] = dict(self.deferred)
        return result

    def add(self, result: "CanvasImageResult") -> None:
        job, _sha, _width, _height, error, deferred_host = result
        if deferred_host is not None:
            self.deferred[deferred_host] = self.deferred.get(deferred_host, 0) + 1
        elif error is None:
            self.fetched += 1
        else:
            self.failures.append((job.canvas_iiif_id, error))


@dataclass(frozen=True)
class CanvasImageJob:
    canvas_id: int
    canvas_iiif_id: str
    service: Optional[ImageServiceRef]
    image_url: Optional[str]


class InfoCache:
    """info.json documents by service id: in memory for the run, in the database between runs
    (``image_service_infos``), so a re-harvest or a region pass does not fetch them again.
    ``get`` returns None when the service has no usable info.json (then plans fall back to
    what the manifest says); it raises HostDownError, remembering nothing, when the service's
    host is down."""

    def __init__(self, fetcher: Fetcher, session_factory: Optional[sessionmaker[Session]] = None,
                 max_age: timedelta = timedelta(days=30), retry_errors_after: timedelta = timedelta(hours=1)):
        self._fetcher = fetcher
        self._session_factory = session_factory
        self._max_age = max_age
        self._retry_errors_after = retry_errors_after
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._cache: dict[str, Optional[ImageInfo]] = {}

    def get(self, service_id: str) -> Optional[ImageInfo]:
        service_id = service_id.strip().rstrip("/").removesuffix("/info.json")  # one key per service
        with self._lock:
            if service_id in self._cache:
                return self._cache[service_id]
            key_lock = self._key_locks.setdefault(service_id, threading.Lock())
        with key_lock:  # many canvases (or regions) of one service ask at once: fetch it once
            with self._lock:
                if service_id in self._cache:
                    return self._cache[service_id]
            info = self._load(service_id)
            with self._lock:
                self._cache[service_id] = info
            return info

    def _load(self, service_id: str) -> Optional[ImageInfo]:
        row = self._stored(service_id)
        now = utcnow()
        if row is not None and row["fetched_at"] is not None:
            age = now - _aware(row["fetched_at"])
            if row["error"] is None and row["info_json"] is not None and age < self._max_age:
                return _parse_or_none(row["info_json"], service_id)
            if row["error"] is not None and age < self._retry_errors_after:
                return None
        url = service_id.rstrip("/") + "/info.json"
        usable = row if row is not None and row["error"] is None and row["info_json"] is not None else None
        try:
            fetched = self._fetcher.get(url, expect="json", etag=usable["etag"] if usable else None,
                                        last_modified=usable["last_modified"] if usable else None)
            doc = usable["info_json"] if fetched.not_modified and usable else json.loads(fetched.body)
            info = parse_info_json(doc)
        except HostDownError:
            raise  # says nothing about the service: neither cached nor stored
        except (FetchError, ValueError) as exc:  # json errors are ValueErrors too
            log.info("no usable info.json for %s: %s", service_id, exc)
            self._store(service_id, None, None, None, str(exc))
            return None
        self._store(service_id, doc, fetched.etag, fetched.last_modified, None)
        return info

    def _stored(self, service_id: str) -> Optional[dict]:
        if self._session_factory is None:
            return None
        with session_scope(self._session_factory) as session:
            row = session.scalar(select(ImageServiceInfo).where(ImageServiceInfo.service_id == service_id))
            if row is None:
                return None
            return {"info_json": row.info_json, "etag": row.etag, "last_modified": row.last_modified,
                    "fetched_at": row.fetched_at, "error": row.error}

    def _store(self, service_id: str, doc, etag, last_modified, error: Optional[str]) -> None:
        if self._session_factory is None:
            return
        try:
            with session_scope(self._session_factory) as session:
                row = session.scalar(select(ImageServiceInfo).where(ImageServiceInfo.service_id == service_id))
                if row is None:
                    row = ImageServiceInfo(service_id=service_id)
                    session.add(row)
                row.info_json = doc if isinstance(doc, dict) else None
                row.etag, row.last_modified = etag, last_modified
                row.fetched_at, row.error = utcnow(), error[:2000] if error else None
        except IntegrityError:
            pass  # another process cached it at the same moment: theirs is as good


def _aware(moment: datetime) -> datetime:
    # SQLite gives naive datetimes back; they were written in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _parse_or_none(doc, service_id: str) -> Optional[ImageInfo]:
    try:
        return parse_info_json(doc)
    except ValueError as exc:
        log.info("cached info.json for %s is unusable: %s", service_id, exc)
        return None


def fetch_image(fetcher: Fetcher, url: str):
    """The RGB image at ``url``. Raises FetchError, ImageTooLargeError (a ValueError: a
    decompression bomb) or UnreadableImageError (an OSError: not an image)."""
    return decode_image(fetcher.get(url, expect="image").body, MAX_HARVEST_IMAGE_PIXELS)


def normalise_image(image, long_edge: int) -> tuple[bytes, int, int]:
    """JPEG bytes of ``image`` with its long edge at most ``long_edge``, and the final size."""
    from PIL import Image

    if max(image.size) > long_edge:
        image = image.copy()
        image.thumbnail((long_edge, long_edge), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue(), image.width, image.height


def fetch_canvas_image(job: CanvasImageJob, fetcher: Fetcher, infos: InfoCache, long_edge: int):
    """Return a PIL image of the whole canvas image, or raise FetchError/ValueError/OSError;
    HostDownError when a way to it was on a host that is down and no other way worked (a later
    run may get it)."""
    reasons, deferred = [], None
    if job.service is not None:
        try:
            plan = plan_fetch(infos.get(job.service.id), job.service, long_edge)
            tiles = [fetch_image(fetcher, request.url) for request in plan.requests]
            return tiles[0] if plan.is_single and plan.crop_box is None else stitch_tiles(plan, tiles)
        except (FetchError, ValueError, OSError) as exc:
            deferred = exc if isinstance(exc, HostDownError) else deferred
            reasons.append(f"image service: {exc}")
    if job.image_url:
        try:
            return fetch_image(fetcher, job.image_url)
        except (FetchError, ValueError, OSError) as exc:
            deferred = exc if isinstance(exc, HostDownError) else deferred
            reasons.append(f"image URL: {exc}")
    if deferred is not None:
        raise deferred
    raise ValueError("; ".join(reasons) or "canvas paints no image")


# What fetching one canvas's image gave: (job, derivative sha256, width, height, error, host down).
CanvasImageResult = tuple[CanvasImageJob, Optional[str], Optional[int], Optional[int], Optional[str], Optional[str]]


def fetch_canvas_derivative(job: CanvasImageJob, fetcher: Fetcher, infos: InfoCache, derivatives: DerivativeStore,
                            long_edge: int) -> CanvasImageResult:
    """Fetch, normalise and store one canvas's image; a failure comes back in the result (a
    StorageError is raised: it stops the run)."""
    try:
        image = fetch_canvas_image(job, fetcher, infos, long_edge)
        data, width, height = normalise_image(image, long_edge)
    except HostDownError as down:
        return job, None, None, None, str(down), down.host
    except (FetchError, ValueError, OSError) as exc:
        return job, None, None, None, str(exc), None
    return job, derivatives.put(data), width, height, None, None


def pending_jobs(session: Session, retry_failed: bool = True,
                 manifest_ids: Optional[Collection[int]] = None) -> list[CanvasImageJob]:
    """Canvases that paint an image and have no derivative yet (of ``manifest_ids`` only, when given)."""
    query = (select(Canvas).where(Canvas.derivative_sha256.is_(None))
             .where(Canvas.service_id.is_not(None) | Canvas.image_url.is_not(None))
             .order_by(Canvas.id))
    if manifest_ids is not None:
        query = query.where(Canvas.manifest_id.in_(list(manifest_ids)))
    if not retry_failed:
        query = query.where(Canvas.derivative_error.is_(None))
    jobs = []
    for canvas in session.scalars(query):
        service = None
        if canvas.service_id:
            service = ImageServiceRef(id=canvas.service_id, api_version=canvas.service_api_version or 2,
                                      profile=canvas.service_profile, level=canvas.service_level,
                                      width=canvas.image_width, height=canvas.image_height)
        jobs.append(CanvasImageJob(canvas.id, canvas.iiif_id, service, canvas.image_url))
    return jobs


def record_canvas_image(session, job, sha: Optional[str], width: Optional[int], height: Optional[int],
                        error: Optional[str], deferred_host: Optional[str] = None) -> bool:
    """Store what fetching ``job``'s image gave: its derivative, the error against the canvas, or
    (``deferred_host``) that its host was down: no error then, the next run tries again.
    Returns False when the canvas is gone meanwhile (deleted by a concurrent re-harvest)."""
    canvas = session.get(Canvas, job.canvas_id)
    if canvas is None:
        return False
    # This attempt's outcome replaces what earlier runs recorded for the canvas's image (a
    # deferral too: the canvas is then counted as waiting for its host, not as failed).
    core_store.resolve_errors(session, ("image",), canvas_id=canvas.id)
    canvas.derivative_deferred = deferred_host
    if deferred_host is not None:
        canvas.derivative_error = None  # not known to be broken: its host did not answer
    elif error is None:
        canvas.derivative_sha256, canvas.derivative_error = sha, None
        canvas.derivative_width, canvas.derivative_height = width, height
    else:
        canvas.derivative_error = error[:2000]
        core_store.record_error(session, "image", job.image_url or (job.service.id if job.service else None), error,
                                manifest_id=canvas.manifest_id, canvas_id=canvas.id)
    return True


def fetch_canvas_derivatives(session_factory: sessionmaker[Session], fetcher: Fetcher,
                             derivatives: DerivativeStore, long_edge: int = 448, threads: int = 4,
                             show_progress: bool = False, retry_failed: bool = True,
                             infos: Optional[InfoCache] = None,
                             manifest_ids: Optional[Collection[int]] = None) -> ImageReport:
    """Fetch a derivative for every canvas that paints an image and has none yet (of
    ``manifest_ids`` only, when given: a command that harvested one manifest leaves the others alone)."""
    from tqdm import tqdm

    with session_scope(session_factory) as session:
        jobs = pending_jobs(session, retry_failed=retry_failed, manifest_ids=manifest_ids)
    infos = infos or InfoCache(fetcher, session_factory)
    report = ImageReport()

    def work(job: CanvasImageJob) -> CanvasImageResult:
        return fetch_canvas_derivative(job, fetcher, infos, derivatives, long_edge)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool, \
            tqdm(total=len(jobs), unit="image", desc="images", disable=not show_progress or not jobs) as bar:
        try:
            for result in pool.map(work, jobs):
                # One short transaction per image: a killed run keeps everything finished so far.
                with session_scope(session_factory) as session:
                    recorded = record_canvas_image(session, *result)
                if recorded:
                    report.add(result)
                bar.update(1)
        except BaseException:
            # A full or read-only store, or a database that went away: stop fetching now
            # instead of working through (and failing) every queued image.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return report
