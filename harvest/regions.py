"""Region crops for region-level search: a multi-scale grid of overlapping windows per canvas,
content-aware proposals found in the canvas image (:mod:`.region_proposals`), the boxes of a
detection model (:mod:`.region_detector`), or a combination; each fetched at model resolution
and stored in the derivative store.

Boxes are laid out and stored in **canvas** coordinates (what a viewer highlights); each is
mapped to image pixels with :func:`canvas_to_image_xywh` (the image may be painted on part of the
canvas, at another scale), then fetched the cheapest way the image service allows
(:func:`plan_fetch`: one region request at levels 1/2, stitched tiles at level 0). Without an
image service the whole image is downloaded once per canvas and every region cut from it. A
region whose image host is down is deferred: no error is recorded, the next run fetches it (as
it does every region without a derivative).
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Collection, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from manuscripts_search.store import catalogue as core_store
from manuscripts_search.store.db import session_scope
from manuscripts_search.store.derivatives import DerivativeStore
from manuscripts_search.iiif.fetch_plans import plan_fetch
from manuscripts_search.iiif.image_coordinates import XYWH, canvas_to_image_xywh
from manuscripts_search.iiif.tile_stitching import stitch_tiles
from manuscripts_search.iiif.model import ImageServiceRef
from manuscripts_search.models import Canvas, Region

from .http import Fetcher, FetchError, HostDownError
from .images import InfoCache, fetch_image, normalise_image
from .region_proposals import DEFAULT_LIMIT, Proposal, propose_regions

if TYPE_CHECKING:
    from .region_detector import RegionDetector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegionGrid:
    """``levels``: windows per side at each scale (2 → 2x2 windows, 3 → 3x3 ...); neighbouring
    windows share ``overlap`` of their width/height so that a motif on a boundary is whole in
    some window."""

    levels: tuple[int, ...] = (2, 3)
    overlap: float = 0.25

    def __post_init__(self) -> None:
        if not self.levels or any(not isinstance(n, int) or n < 1 or n > 16 for n in self.levels):
            raise ValueError(f"grid levels must be integers from 1 to 16, got {self.levels!r}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be at least 0 and below 1, got {self.overlap!r}")

    @classmethod
    def parse(cls, levels: str, overlap: float = 0.25) -> "RegionGrid":
        """``"2,3"`` → RegionGrid((2, 3)); raises ValueError with the reason."""
        try:
            parsed = tuple(int(part) for part in levels.split(",") if part.strip())
        except ValueError:
            raise ValueError(f"grid levels must be comma-separated integers, got {levels!r}") from None
        return cls(parsed, overlap)

    def boxes(self, width: int, height: int) -> list[XYWH]:
        """Window boxes for a canvas of ``width`` x ``height``, coarse to fine, no duplicates."""
        if width <= 0 or height <= 0:
            raise ValueError(f"canvas size must be positive, got {width}x{height}")
        boxes: list[XYWH] = []
        for n in sorted(set(self.levels)):
            xs, ys = _spans(width, n, self.overlap), _spans(height, n, self.overlap)
            boxes.extend((x, y, w, h) for (y, h) in ys for (x, w) in xs)
        return list(dict.fromkeys(b for b in boxes if b[2] > 0 and b[3] > 0))


def _spans(length: int, n: int, overlap: float) -> list[tuple[int, int]]:
    """n windows of equal size covering 0..length with the given overlap, as (start, size)."""
    window = length / (n - (n - 1) * overlap)
    step = window * (1 - overlap)
    spans = []
    for i in range(n):
        start = round(i * step)
        end = length if i == n - 1 else min(length, round(i * step + window))
        spans.append((start, end - start))
    return spans


@dataclass
class RegionReport:
    planned: int = 0  # boxes added to the regions table
    fetched: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)  # (region id, reason)
    deferred: dict[str, int] = field(default_factory=dict)  # host down -> regions left for a later run

    def as_dict(self) -> dict:
        result = {"planned": self.planned, "fetched": self.fetched,
                  "failures": [{"region": r, "reason": m} for r, m in self.failures]}
        if self.deferred:
            result["deferred"] = dict(self.deferred)
        return result


def _canvas_size(canvas: Canvas) -> Optional[tuple[int, int]]:
    if canvas.width and canvas.height:
        return canvas.width, canvas.height
    if canvas.image_width and canvas.image_height:  # no canvas size: image pixels are the space
        return canvas.image_width, canvas.image_height
    return None


REGION_METHODS = ("grid", "content", "detector")  # in the order a box found by two keeps the first's name
METHOD_ALIASES = {"both": ("grid", "content")}
# What `--regions` alone means: content proposals beat the grid on bench/regions.py (localisation
# recall@5 1.0 against 0.0, canvas recall@10 0.98 against 0.48) with a quarter of its vectors.
DEFAULT_METHOD = "content"


def parse_region_methods(spec: str) -> tuple[str, ...]:
    """``"grid"``, ``"content"``, ``"detector"``, ``"both"`` (grid+content) or methods joined by
    ``+`` (``"content+detector"``) → the methods, in :data:`REGION_METHODS` order. Raises
    ValueError with the choices."""
    parts = [part.strip().lower() for part in str(spec or "").split("+")]
    methods = set()
    for part in parts:
        if part in METHOD_ALIASES:
            methods.update(METHOD_ALIASES[part])
        elif part in REGION_METHODS:
            methods.add(part)
        else:
            raise ValueError(f"region method must be one of {', '.join(REGION_METHODS)}, both (grid+content) "
                             f"or methods joined by + (content+detector), got {spec!r}")
    return tuple(m for m in REGION_METHODS if m in methods)


def plan_regions(session_factory: sessionmaker[Session], grid: RegionGrid,
                 manifest_ids: Optional[Collection[int]] = None, method: str = "grid",
                 derivatives: Optional[DerivativeStore] = None, limit: int = DEFAULT_LIMIT,
                 detector: Optional["RegionDetector"] = None) -> int:
    """Make every image canvas's regions match ``method`` (added without a derivative; boxes of
    another grid or method removed), of ``manifest_ids`` only when given: ``grid`` windows,
    ``content`` proposals found in the canvas's derivative in ``derivatives``, ``detector`` boxes
    of ``detector`` (a detection model) on it (at most ``limit`` of each), or a combination
    (:func:`parse_region_methods`). A canvas whose image is not fetched yet (or cannot be read)
    keeps its regions, or gets the grid alone when the grid is asked for, until a run that has
    its image; one the detector fails on keeps all its regions. Returns the number of boxes added."""
    methods = parse_region_methods(method)
    if ("content" in methods or "detector" in methods) and derivatives is None:
        raise ValueError("content and detector regions need the derivative store of the canvas images")
    if "detector" in methods and detector is None:
        raise ValueError("detector regions need a region detector (MSEARCH_REGION_MODEL)")
    added = 0
    query = select(Canvas).where(Canvas.service_id.is_not(None) | Canvas.image_url.is_not(None))
    if manifest_ids is not None:
        query = query.where(Canvas.manifest_id.in_(list(manifest_ids)))
    with session_scope(session_factory) as session:
        canvases = session.scalars(query.order_by(Canvas.id)).all()
        for canvas in canvases:
            size = _canvas_size(canvas)
            if size is None:
                continue
            found_by: dict[XYWH, tuple[str, Optional[float]]] = {}
            if "grid" in methods:
                found_by.update((box, ("grid", None)) for box in grid.boxes(*size))
            if "content" in methods or "detector" in methods:
                try:
                    proposals = _image_proposals(canvas, size, derivatives, limit, methods, detector)
                except _DetectionFailed:
                    continue  # its detector boxes stay until a run where the model runs on its image
                if proposals is None and "grid" not in methods:
                    continue
                for name, found in proposals or ():
                    for proposal in found:
                        found_by.setdefault(proposal.box, (name, proposal.score))
            added += core_store.sync_canvas_regions(session, canvas, list(found_by), found_by)
    return added


class _DetectionFailed(Exception):
    """The detector failed on one canvas's image (logged): the canvas keeps all its regions."""


def _image_proposals(canvas: Canvas, size: tuple[int, int], derivatives: DerivativeStore, limit: int,
                     methods: tuple[str, ...], detector) -> Optional[list[tuple[str, list[Proposal]]]]:
    """(method, proposals) for the image methods of ``methods`` on the canvas's derivative, or
    None when it has none or it cannot be read; raises _DetectionFailed when the detector fails
    on it."""
    if not canvas.derivative_sha256:
        return None
    try:
        image = derivatives.open_image(canvas.derivative_sha256)
    except (OSError, ValueError) as exc:
        log.warning("canvas %s: cannot read its image for region proposals (%s)", canvas.id, exc)
        return None
    target = tuple(int(v) for v in canvas.target_xywh.split(",")) if canvas.target_xywh else None
    found = []
    if "content" in methods:
        found.append(("content", propose_regions(image, canvas_size=size, target_xywh=target, limit=limit)))
    if "detector" in methods:
        try:
            found.append(("detector", detector.detect(image, canvas_size=size, target_xywh=target, limit=limit)))
        except (RuntimeError, ValueError) as exc:  # a model that runs on a test image may still fail on one
            log.warning("canvas %s: the region detector failed on its image (%s); its regions are kept",
                        canvas.id, exc)
            raise _DetectionFailed() from exc
    return found


@dataclass(frozen=True)
class _CanvasRegionsJob:
    canvas_id: int
    canvas_size: tuple[int, int]
    target_xywh: Optional[XYWH]
    service: Optional[ImageServiceRef]
    image_url: Optional[str]
    regions: tuple[tuple[int, XYWH], ...]  # (region id, canvas box)


def _pending_jobs(session: Session, manifest_ids: Optional[Collection[int]] = None) -> list[_CanvasRegionsJob]:
    query = (select(Region, Canvas).join(Canvas, Canvas.id == Region.canvas_id)
             .where(Region.derivative_sha256.is_(None)))
    if manifest_ids is not None:
        query = query.where(Canvas.manifest_id.in_(list(manifest_ids)))
    rows = session.execute(query.order_by(Canvas.id, Region.id)).all()
    by_canvas: dict[int, tuple[Canvas, list]] = {}
    for region, canvas in rows:
        by_canvas.setdefault(canvas.id, (canvas, []))[1].append((region.id, (region.x, region.y, region.w, region.h)))
    jobs = []
    for canvas, regions in by_canvas.values():
        size = _canvas_size(canvas)
        if size is None:
            continue
        service = None
        if canvas.service_id:
            service = ImageServiceRef(id=canvas.service_id, api_version=canvas.service_api_version or 2,
                                      profile=canvas.service_profile, level=canvas.service_level,
                                      width=canvas.image_width, height=canvas.image_height)
        target = tuple(int(v) for v in canvas.target_xywh.split(",")) if canvas.target_xywh else None
        jobs.append(_CanvasRegionsJob(canvas.id, size, target, service, canvas.image_url, tuple(regions)))
    return jobs


# (region id, derivative sha256, error, host down: the region is deferred)
RegionResult = tuple[int, Optional[str], Optional[str], Optional[str]]


def _fetch_canvas_regions(job: _CanvasRegionsJob, fetcher: Fetcher, infos: InfoCache,
                          derivatives: DerivativeStore, long_edge: int) -> list[RegionResult]:
    """A result for each region of one canvas."""
    results: list[RegionResult] = []
    deferred_by = None  # the host of the info.json, when it was down
    try:
        info = infos.get(job.service.id) if job.service is not None else None
    except HostDownError as down:
        info, deferred_by = None, down.host
    image_size = (info.width, info.height) if info else (
        (job.service.width, job.service.height) if job.service and job.service.width and job.service.height else None)
    whole_image = None  # downloaded once when regions cannot be requested from a service
    tile_cache: dict[str, object] = {}  # level-0 tiles shared by overlapping regions

    def via_service(image_box: XYWH):
        plan = plan_fetch(info, job.service, long_edge, region_xywh=image_box)
        tiles = []
        for request in plan.requests:
            if request.url not in tile_cache:
                tile_cache[request.url] = fetch_image(fetcher, request.url)
            tiles.append(tile_cache[request.url])
        return stitch_tiles(plan, tiles)

    use_service = job.service is not None and image_size is not None
    for region_id, box in job.regions:
        try:
            if use_service:
                try:
                    image_box = canvas_to_image_xywh(box, *job.canvas_size, *image_size, job.target_xywh)
                    crop = via_service(image_box)
                except (FetchError, OSError) as exc:
                    if not job.image_url:
                        raise
                    log.info("region via service failed for canvas %s (%s); using the image URL",
                             job.canvas_id, exc)
                    use_service = False
            if not use_service:
                if whole_image is None:
                    if not job.image_url:
                        raise ValueError("no image service with a known size and no image URL")
                    whole_image = fetch_image(fetcher, job.image_url)
                x, y, w, h = canvas_to_image_xywh(box, *job.canvas_size, *whole_image.size, job.target_xywh)
                crop = whole_image.crop((x, y, x + w, y + h))
            data, _width, _height = normalise_image(crop, long_edge)
            results.append((region_id, derivatives.put(data), None, None))
        except (FetchError, ValueError, OSError) as exc:
            results.append((region_id, None, str(exc), exc.host if isinstance(exc, HostDownError) else deferred_by))
    return results


def fetch_region_derivatives(session_factory: sessionmaker[Session], fetcher: Fetcher,
                             derivatives: DerivativeStore, long_edge: int = 448, threads: int = 4,
                             show_progress: bool = False, infos: Optional[InfoCache] = None,
                             manifest_ids: Optional[Collection[int]] = None) -> RegionReport:
    """Fetch a derivative for every region that has none, canvas by canvas (of ``manifest_ids``'
    canvases only, when given)."""
    from tqdm import tqdm

    with session_scope(session_factory) as session:
        jobs = _pending_jobs(session, manifest_ids)
    infos = infos or InfoCache(fetcher, session_factory)
    report = RegionReport()
    total = sum(len(job.regions) for job in jobs)

    def work(job):
        return job, _fetch_canvas_regions(job, fetcher, infos, derivatives, long_edge)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool, \
            tqdm(total=total, unit="region", desc="regions", disable=not show_progress or not total) as bar:
        try:
            for job, results in pool.map(work, jobs):
                with session_scope(session_factory) as session:  # one canvas's regions per transaction
                    # The regions not fetched before were all tried now: their errors replace older ones.
                    core_store.resolve_errors(session, ("region",), canvas_id=job.canvas_id)
                    for region_id, sha, error, deferred_host in results:
                        region = session.get(Region, region_id)
                        if region is None:
                            continue  # the canvas changed under us; its new regions come next run
                        if sha is not None:
                            region.derivative_sha256 = sha
                            report.fetched += 1
                        elif deferred_host is not None:
                            report.deferred[deferred_host] = report.deferred.get(deferred_host, 0) + 1
                        else:
                            core_store.record_error(session, "region", job.service.id if job.service else job.image_url,
                                                    f"region {region.xywh}: {error}", canvas_id=job.canvas_id)
                            report.failures.append((region_id, error))
                bar.update(len(results))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # see fetch_canvas_derivatives
            raise
    return report
