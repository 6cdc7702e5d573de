"""Fetch one image per canvas, at model resolution, into the content-addressed derivative store.

The canvas's IIIF Image API service is preferred (info.json read once per service, a request the
service can honour chosen by :func:`plan_fetch`); the direct image URL is the fallback. What is
stored is a normalised RGB JPEG whose long edge is at most the requested size, so the worker never
meets a decompression bomb or an exotic format.
"""
from __future__ import annotations

import io
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from manuscripts_search import store as core_store
from manuscripts_search.db import session_scope
from manuscripts_search.derivatives import DerivativeStore
from manuscripts_search.iiif.image_api import ImageInfo, parse_info_json, plan_fetch, stitch_tiles
from manuscripts_search.iiif.model import ImageServiceRef
from manuscripts_search.models import Canvas

from .http import Fetcher, FetchError

log = logging.getLogger(__name__)

# Refuse to decode images above this many pixels (a full-resolution page is ~50 MP at most).
MAX_IMAGE_PIXELS = 250_000_000


@dataclass
class ImageReport:
    fetched: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (canvas IIIF id, reason)

    def as_dict(self) -> dict:
        return {"fetched": self.fetched,
                "failures": [{"canvas": c, "reason": r} for c, r in self.failures]}


@dataclass(frozen=True)
class CanvasImageJob:
    canvas_id: int
    canvas_iiif_id: str
    service: Optional[ImageServiceRef]
    image_url: Optional[str]


class InfoCache:
    """info.json documents by service id, fetched once per run (None when unavailable)."""

    def __init__(self, fetcher: Fetcher):
        self._fetcher = fetcher
        self._lock = threading.Lock()
        self._cache: dict[str, Optional[ImageInfo]] = {}

    def get(self, service_id: str) -> Optional[ImageInfo]:
        with self._lock:
            if service_id in self._cache:
                return self._cache[service_id]
        info = None
        try:
            body = self._fetcher.get(service_id.rstrip("/") + "/info.json").body
            info = parse_info_json(json.loads(body))
        except (FetchError, ValueError) as exc:  # json errors are ValueErrors too
            log.info("no usable info.json for %s: %s", service_id, exc)
        with self._lock:
            self._cache[service_id] = info
        return info


def _decode(data: bytes):
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def _normalise(image, long_edge: int) -> tuple[bytes, int, int]:
    from PIL import Image

    if max(image.size) > long_edge:
        image = image.copy()
        image.thumbnail((long_edge, long_edge), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue(), image.width, image.height


def fetch_canvas_image(job: CanvasImageJob, fetcher: Fetcher, infos: InfoCache, long_edge: int):
    """Return a PIL image of the whole canvas image, or raise FetchError/ValueError/OSError."""
    reasons = []
    if job.service is not None:
        try:
            plan = plan_fetch(infos.get(job.service.id), job.service, long_edge)
            tiles = [_decode(fetcher.get(request.url).body) for request in plan.requests]
            return tiles[0] if plan.is_single and plan.crop_box is None else stitch_tiles(plan, tiles)
        except (FetchError, ValueError, OSError) as exc:
            reasons.append(f"image service: {exc}")
    if job.image_url:
        try:
            return _decode(fetcher.get(job.image_url).body)
        except (FetchError, ValueError, OSError) as exc:
            reasons.append(f"image URL: {exc}")
    raise ValueError("; ".join(reasons) or "canvas paints no image")


def pending_jobs(session: Session, retry_failed: bool = True) -> list[CanvasImageJob]:
    query = (select(Canvas).where(Canvas.derivative_sha256.is_(None))
             .where(Canvas.service_id.is_not(None) | Canvas.image_url.is_not(None))
             .order_by(Canvas.id))
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


def fetch_canvas_derivatives(session_factory: sessionmaker[Session], fetcher: Fetcher,
                             derivatives: DerivativeStore, long_edge: int = 448, threads: int = 4,
                             show_progress: bool = False, retry_failed: bool = True) -> ImageReport:
    """Fetch a derivative for every canvas that paints an image and has none yet."""
    from tqdm import tqdm

    with session_scope(session_factory) as session:
        jobs = pending_jobs(session, retry_failed=retry_failed)
    infos = InfoCache(fetcher)
    report = ImageReport()

    def work(job: CanvasImageJob):
        try:
            image = fetch_canvas_image(job, fetcher, infos, long_edge)
            data, width, height = _normalise(image, long_edge)
            return job, derivatives.put(data), width, height, None
        except (FetchError, ValueError, OSError) as exc:
            return job, None, None, None, str(exc)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool, \
            tqdm(total=len(jobs), unit="image", disable=not show_progress or not jobs) as bar:
        for job, sha, width, height, error in pool.map(work, jobs):
            # One short transaction per image: a killed run keeps everything finished so far.
            with session_scope(session_factory) as session:
                canvas = session.get(Canvas, job.canvas_id)
                if canvas is None:
                    continue  # deleted by a concurrent re-harvest
                if error is None:
                    canvas.derivative_sha256, canvas.derivative_error = sha, None
                    canvas.derivative_width, canvas.derivative_height = width, height
                    report.fetched += 1
                else:
                    canvas.derivative_error = error[:2000]
                    core_store.record_error(session, "image", job.image_url or
                                            (job.service.id if job.service else None), error,
                                            manifest_id=canvas.manifest_id, canvas_id=canvas.id)
                    report.failures.append((job.canvas_iiif_id, error))
            bar.update(1)
    return report
