"""``msearch harvest --engine ray``: many institutions harvested at once on a Ray cluster, with
each host's politeness limits kept for the whole cluster.

1. Manifests and collections. Sources are grouped by host (one institution's server); one Ray
   task per group runs the ordinary crawler (:func:`harvest.manifests.harvest_sources`) on its
   sources, so each group is a resumable crawl of its own, as a local harvest of those sources
   would be.
2. Change Discovery streams, if any, are followed by the driver (they are sequential by nature).
3. Canvas images. The canvases still lacking a derivative are cut into chunks; one task per
   chunk fetches each image at model resolution, stores it in the derivative store (a directory
   every node shares) and records it, as :func:`harvest.images.fetch_canvas_derivatives` does.
4. Region crops (``regions``) are planned and fetched by the driver afterwards.

Every Fetcher of every task, and the driver's, takes its per-host request slots and start times
from one limits actor (:mod:`manuscripts_search.distributed.host_limits`): eight tasks on four
machines still send one server at most ``max_per_host`` requests at once and at most
``requests_per_second``; and a host that stops answering is down for every task at once, its
requests deferred to a later run as a local harvest defers them. A task that Ray retries (its
process died) does its work again: crawls resume from their queue, derivatives are
content-addressed, so nothing is stored twice.

PostgreSQL lets the tasks write at once. SQLite has a single writer, so on SQLite the tasks run
one after another (in Ray's worker processes still): same results, no speed-up.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import urlsplit

from sqlalchemy.orm import Session, sessionmaker

from .cluster_fetch import FetcherSettings, cluster_fetcher
from .http import is_local_source
from manuscripts_search.store.db import connectable_url, session_factory_for

log = logging.getLogger(__name__)

_LIST_FIELDS = ("gone", "failures")
_COUNT_FIELDS = ("manifests", "new", "changed", "unchanged", "unchanged_failures", "collections",
                 "annotation_documents", "text_annotations")


@dataclass(frozen=True)
class RayHarvestOptions:
    images: bool = True  # fetch one derivative per canvas
    annotations: bool = True
    max_documents: Optional[int] = None  # per crawl, i.e. per host group
    threads: int = 8  # fetching threads in each task
    image_chunk: int = 64  # canvases per image task
    parallel: Optional[int] = None  # tasks at once (None: the cluster's CPUs; always 1 on SQLite)
    task_cpus: float = 1.0  # CPUs each task reserves
    regions: bool = False
    # grid, content, detector, both or A+B (regions.parse_region_methods); default regions.DEFAULT_METHOD
    region_method: str = "content"
    region_limit: int = 13  # content (and detector) regions per canvas at most
    region_levels: tuple[int, ...] = (2, 3)
    region_overlap: float = 0.25
    num_cpus: Optional[int] = None  # CPUs of a local Ray started for the run (None: all)

    def __post_init__(self):
        for name in ("threads", "image_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.parallel is not None and self.parallel < 1:
            raise ValueError(f"parallel must be at least 1, got {self.parallel}")
        if self.task_cpus <= 0:
            raise ValueError(f"task_cpus must be positive, got {self.task_cpus}")


@dataclass
class RayHarvestReport:
    """The local harvest's report fields, summed over the tasks, plus what the run did where."""

    harvest: dict = field(default_factory=lambda: {**{name: 0 for name in _COUNT_FIELDS},
                                                   **{name: [] for name in _LIST_FIELDS}, "resumed": False})
    changes: list = field(default_factory=list)
    images: Optional[dict] = None
    regions: Optional[dict] = None
    requests: int = 0
    tasks: dict = field(default_factory=lambda: {"crawls": 0, "image_chunks": 0})
    hosts: dict = field(default_factory=dict)  # per host: requests granted by the limits actor

    def add_crawl(self, report: dict) -> None:
        for name in _COUNT_FIELDS:
            self.harvest[name] += report[name]
        for name in _LIST_FIELDS:
            self.harvest[name] += report[name]
        for host, count in report.get("deferred", {}).items():  # as the local report: only when some were
            deferred = self.harvest.setdefault("deferred", {})
            deferred[host] = deferred.get(host, 0) + count
        self.harvest["resumed"] = self.harvest["resumed"] or report["resumed"]

    def as_dict(self) -> dict:
        result = {**self.harvest, "engine": "ray", "tasks": dict(self.tasks), "requests": self.requests,
                  "hosts": dict(self.hosts)}
        if self.changes:
            result["changes"] = list(self.changes)
        if self.images is not None:
            result["images"] = self.images
        if self.regions is not None:
            result["regions"] = self.regions
        return result


def host_groups(sources: list[str]) -> list[list[str]]:
    """Sources grouped by scheme and host (local files form one group), groups sorted: the same
    sources always make the same groups, so an interrupted run resumes the same crawls."""
    groups: dict[str, list[str]] = {}
    for source in dict.fromkeys(sources):
        key = "" if is_local_source(source) else urlsplit(source.strip()).netloc.lower()
        groups.setdefault(key, []).append(source)
    return [groups[key] for key in sorted(groups)]


# -- the tasks (run in Ray worker processes) ------------------------------------------------------

def crawl_group(db_url: str, sources: list[str], fetch: FetcherSettings, limiter, options: RayHarvestOptions) -> dict:
    """One task: crawl ``sources`` with the ordinary crawler; returns its report and request count."""
    from .manifests import HarvestOptions, harvest_sources

    factory = session_factory_for(db_url)
    fetcher = cluster_fetcher(fetch, limiter)
    try:
        report = harvest_sources(sources, factory, fetcher, options=HarvestOptions(
            workers=options.threads, max_documents=options.max_documents, annotations=options.annotations))
    finally:
        fetcher.close()
        factory.kw["bind"].dispose()
    return {"report": report.as_dict(), "requests": fetcher.stats.get("requests", 0)}


def fetch_image_chunk(db_url: str, derivatives_dir: str, long_edge: int, jobs: list, threads: int,
                      fetch: FetcherSettings,
                      limiter) -> dict:
    """One task: a derivative for each canvas of ``jobs`` (CanvasImageJob), recorded as the
    local image phase records it; returns the count fetched, the failures, the canvases deferred
    per host that was down, and the requests made."""
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from manuscripts_search.store.db import write_transaction
    from manuscripts_search.store.derivatives import DerivativeStore

    from .images import ImageReport, InfoCache, fetch_canvas_derivative, record_canvas_image

    factory = session_factory_for(db_url)
    fetcher = cluster_fetcher(fetch, limiter)
    derivatives = DerivativeStore(Path(derivatives_dir))
    infos = InfoCache(fetcher, factory)
    report = ImageReport()

    def work(job):
        return fetch_canvas_derivative(job, fetcher, infos, derivatives, long_edge)

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for result in pool.map(work, jobs):
                # One short transaction per image, begun as a writer (several tasks write at once).
                with write_transaction(factory) as session:
                    recorded = record_canvas_image(session, *result)
                if recorded:
                    report.add(result)
    finally:
        fetcher.close()
        factory.kw["bind"].dispose()
    return {**report.as_dict(), "requests": fetcher.stats.get("requests", 0)}


# -- the driver ----------------------------------------------------------------------------------

def _run_bounded(ray, calls: list[tuple[Any, tuple]], parallel: int) -> list:
    """Run remote ``(function, args)`` calls with at most ``parallel`` in flight; results in order."""
    results: dict[int, Any] = {}
    in_flight: dict[Any, int] = {}
    queued = deque(enumerate(calls))
    while queued or in_flight:
        while queued and len(in_flight) < parallel:
            position, (function, args) = queued.popleft()
            in_flight[function.remote(*args)] = position
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in ready:
            results[in_flight.pop(ref)] = ray.get(ref)
    return [results[position] for position in range(len(calls))]


def harvest_with_ray(config, session_factory: sessionmaker[Session], sources: list[str], fetch: FetcherSettings,
                     options: RayHarvestOptions = RayHarvestOptions(), *, change_streams: tuple[str, ...] = (),
                     address: Optional[str] = None) -> RayHarvestReport:
    """Harvest ``sources`` (and ``change_streams``) on Ray; ``config`` gives the derivative
    directory (shared by every node) and image size. The database behind ``session_factory``
    must be migrated and reachable from every node (PostgreSQL on a cluster).

    Raises RayUnavailableError when Ray is missing or the cluster unreachable; re-raises a task's
    error that is not a remote problem (remote problems are in the report's failures).
    """
    from manuscripts_search.distributed.host_limits import ClusterHostLimiter, start_host_limits
    from manuscripts_search.distributed.runtime import ray_connection

    engine = session_factory.kw["bind"]
    db_url = connectable_url(engine)
    sqlite = engine.dialect.name == "sqlite"
    report = RayHarvestReport()
    with ray_connection(address, num_cpus=options.num_cpus) as ray:
        limiter = ClusterHostLimiter(start_host_limits(ray, fetch.max_per_host, fetch.requests_per_second,
                                                       health=fetch.health))
        parallel = 1 if sqlite else (options.parallel or max(1, int(ray.cluster_resources().get("CPU", 1)
                                                                    // options.task_cpus)))
        remote = ray.remote(num_cpus=options.task_cpus)
        crawl_task, image_task = remote(crawl_group), remote(fetch_image_chunk)

        groups = host_groups(sources)
        for result in _run_bounded(ray, [(crawl_task, (db_url, group, fetch, limiter, options)) for group in groups],
                                   parallel):
            report.add_crawl(result["report"])
            report.requests += result["requests"]
        report.tasks["crawls"] = len(groups)

        driver_fetcher = cluster_fetcher(fetch, limiter)
        try:
            if change_streams:
                _follow_change_streams(session_factory, driver_fetcher, change_streams, options, report)
            if options.images:
                _fetch_images(ray, image_task, config, session_factory, db_url, fetch, limiter, options,
                              parallel, report)
            if options.regions:
                _fetch_regions(config, session_factory, driver_fetcher, options, report)
        finally:
            driver_fetcher.close()
            report.requests += driver_fetcher.stats.get("requests", 0)
        report.hosts = {host: stats["granted"] for host, stats in limiter.stats().items()}
    return report


def _follow_change_streams(factory, fetcher, streams, options: RayHarvestOptions, report: RayHarvestReport) -> None:
    from .changes import process_change_stream
    from .manifests import HarvestOptions

    harvest_options = HarvestOptions(workers=options.threads, max_documents=options.max_documents,
                                     annotations=options.annotations)
    report.changes = [process_change_stream(url, factory, fetcher, harvest_options).as_dict() for url in streams]


def _fetch_images(ray, image_task, config, factory, db_url: str, fetch: FetcherSettings, limiter,
                  options: RayHarvestOptions, parallel: int, report: RayHarvestReport) -> None:
    from manuscripts_search.store.db import session_scope

    from .images import pending_jobs

    with session_scope(factory) as session:
        jobs = pending_jobs(session)
    chunks = [jobs[start:start + options.image_chunk] for start in range(0, len(jobs), options.image_chunk)]
    calls = [(image_task, (db_url, str(config.derivatives_dir), config.image_size, chunk, options.threads, fetch,
                           limiter))
             for chunk in chunks]
    images: dict = {"fetched": 0, "failures": []}
    for result in _run_bounded(ray, calls, parallel):
        images["fetched"] += result["fetched"]
        images["failures"] += result["failures"]
        for host, count in result.get("deferred", {}).items():  # as the local report: only when some were
            images.setdefault("deferred", {})[host] = images.get("deferred", {}).get(host, 0) + count
        report.requests += result["requests"]
    report.images = images
    report.tasks["image_chunks"] = len(chunks)


def _fetch_regions(config, factory, fetcher, options: RayHarvestOptions, report: RayHarvestReport) -> None:
    from manuscripts_search.store.derivatives import DerivativeStore

    from .images import InfoCache
    from .regions import RegionGrid, fetch_region_derivatives, parse_region_methods, plan_regions

    derivatives = DerivativeStore(config.derivatives_dir)
    detector = None
    if "detector" in parse_region_methods(options.region_method):
        from .region_detector import region_detector_from_config

        detector = region_detector_from_config(config)  # the command loaded it already: reused
    planned = plan_regions(factory, RegionGrid(tuple(options.region_levels), options.region_overlap),
                           method=options.region_method, derivatives=derivatives, limit=options.region_limit,
                           detector=detector)
    regions = fetch_region_derivatives(factory, fetcher, derivatives,
                                       long_edge=config.image_size, threads=options.threads,
                                       infos=InfoCache(fetcher, factory))
    regions.planned = planned
    report.regions = regions.as_dict()
    if detector is not None:
        report.regions["detector"] = detector.describe()
