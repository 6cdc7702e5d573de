"""Crawl manifests, collections and annotation documents from URLs or local files into the store.

Worker threads fetch and parse (:func:`harvest.documents.process_task`); this thread alone writes
to the database. What a document yielded, the links it holds (queued) and its crawl item (marked
done) are written in one transaction, together with the other documents that finished at the
same moment. So:

* a run killed at any moment (SIGKILL included) resumes with the same command, without
  duplicates and without fetching again what was complete (:mod:`harvest.crawl_queue`);
* re-harvesting is incremental: conditional requests and content hashes make an unchanged
  document cost one 304 and no parsing, changed manifests are updated in place
  (:func:`manuscripts_search.store.catalogue.save_manifest`), 404/410 flag a manifest as gone;
* every failure is recorded against its URL with a readable reason and the crawl goes on; a
  document whose host is down is not a failure but deferred (its item ends "deferred", nothing is
  recorded against the URL): the next run, a new crawl from the sources, fetches it.
"""
from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Optional
from urllib.parse import urldefrag

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from manuscripts_search.store import catalogue as store
from manuscripts_search.store.db import session_scope
from manuscripts_search.faults import is_database_outage
from manuscripts_search.iiif.annotations import ParsedAnnotationDocument
from manuscripts_search.iiif.model import ParsedCollection, ParsedManifest
from manuscripts_search.models import Collection, FetchedDocument, Manifest, Source, utcnow

from . import crawl_queue
from .crawl_queue import ANNOTATIONS, DOCUMENT, PAGE, ChildLink, CrawlTask
from .documents import CHANGED, DEFERRED, FAILED, GONE, NEW, NOT_IIIF, UNCHANGED, Outcome, process_task
from .http import Fetcher, is_local_source, local_path

log = logging.getLogger(__name__)

MAX_COLLECTION_DEPTH = 32  # collections nested deeper than this are a loop in disguise


@dataclass
class HarvestOptions:
    workers: int = 16  # threads fetching at once (each host is further limited by the Fetcher)
    max_documents: Optional[int] = None  # items per crawl; a runaway paged collection stops here
    annotations: bool = True  # fetch referenced annotation lists/pages for their text
    max_depth: int = MAX_COLLECTION_DEPTH

    def crawl_identity(self) -> dict:
        """The options that change what a crawl visits (a resumed crawl must match them)."""
        return {"annotations": self.annotations, "max_documents": self.max_documents}


@dataclass
class HarvestReport:
    manifests: list[str] = field(default_factory=list)  # IIIF ids of manifests seen and usable
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    collections: list[str] = field(default_factory=list)
    annotation_documents: int = 0
    text_annotations: int = 0
    gone: list[str] = field(default_factory=list)  # URLs
    unchanged_failures: int = 0  # unusable documents that had not changed (not parsed again)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (url, reason)
    deferred: list[tuple[str, str]] = field(default_factory=list)  # (url, host that was down)
    resumed: bool = False

    _LISTS = ("manifests", "collections", "gone", "failures", "deferred")
    _COUNTS = ("new", "changed", "unchanged", "unchanged_failures", "annotation_documents", "text_annotations")

    def snapshot(self) -> tuple:
        return tuple(len(getattr(self, n)) for n in self._LISTS) + tuple(getattr(self, n) for n in self._COUNTS)

    def restore(self, snapshot: tuple) -> None:
        for name, length in zip(self._LISTS, snapshot):
            del getattr(self, name)[length:]
        for name, value in zip(self._COUNTS, snapshot[len(self._LISTS):]):
            setattr(self, name, value)

    def as_dict(self) -> dict:
        result = {"manifests": len(self.manifests), "new": self.new, "changed": self.changed,
                  "unchanged": self.unchanged, "unchanged_failures": self.unchanged_failures,
                  "collections": len(self.collections),
                  "annotation_documents": self.annotation_documents,
                  "text_annotations": self.text_annotations, "gone": list(self.gone),
                  "resumed": self.resumed,
                  "failures": [{"url": u, "reason": r} for u, r in self.failures]}
        if self.deferred:  # only then: a run without a host down reports as before
            result["deferred"] = {}
            for _url, host in self.deferred:
                result["deferred"][host] = result["deferred"].get(host, 0) + 1
        return result


def normalise_source(source: str) -> str:
    """Absolute path for local files, URL without fragment otherwise."""
    if is_local_source(source):
        return str(local_path(source).resolve())
    return urldefrag(source.strip())[0]


def harvest_sources(sources: list[str], session_factory: sessionmaker[Session], fetcher: Fetcher,
                    max_documents: Optional[int] = None,
                    on_document: Optional[Callable[[str], None]] = None,
                    options: Optional[HarvestOptions] = None,
                    show_progress: bool = False) -> HarvestReport:
    """Harvest each source (manifest, collection or annotation document URL, or local JSON file)
    and everything it links to; resumes an unfinished crawl of the same sources."""
    options = options or HarvestOptions()
    if max_documents is not None:
        options.max_documents = max_documents
    normalised = list(dict.fromkeys(normalise_source(s) for s in sources))
    crawler = _Crawler(session_factory, fetcher, options, on_document)
    return crawler.run(normalised, show_progress)


def harvest_urls_once(urls: list[str], session_factory: sessionmaker[Session], fetcher: Fetcher,
                      options: Optional[HarvestOptions] = None) -> HarvestReport:
    """Harvest ``urls`` in a fresh crawl of their own (Change Discovery applies activities this
    way: each batch is new work, never a resumed one)."""
    options = options or HarvestOptions()
    crawler = _Crawler(session_factory, fetcher, options, None)
    return crawler.run([normalise_source(u) for u in urls], False, fresh=True)


class _Crawler:
    def __init__(self, session_factory, fetcher: Fetcher, options: HarvestOptions, on_document):
        self.session_factory = session_factory
        self.fetcher = fetcher
        self.options = options
        self.on_document = on_document
        self.report = HarvestReport()
        self._source_ids: dict[str, int] = {}
        self._collection_ids: dict[str, int] = {}  # iiif id -> row id, for membership links
        self._limit_reported = False

    # -- orchestration ---------------------------------------------------------------------------

    def run(self, sources: list[str], show_progress: bool, fresh: bool = False) -> HarvestReport:
        from tqdm import tqdm

        identity = self.options.crawl_identity()
        if fresh:
            identity = {**identity, "fresh": utcnow().isoformat()}
        with session_scope(self.session_factory) as session:
            crawl, resumed = crawl_queue.open_crawl(session, sources, identity)
            self.crawl_id = crawl.id
            queue = deque(crawl_queue.tasks_for(session, crawl_queue.pending_items(session, crawl.id)))
        self.report.resumed = resumed
        if resumed:
            log.info("resuming crawl %s: %d items pending", self.crawl_id, len(queue))
        in_flight: dict[Future, CrawlTask] = {}
        workers = max(1, self.options.workers)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="harvest") as pool, \
                tqdm(total=len(queue), unit="doc", desc="documents", disable=not show_progress) as bar:
            while queue or in_flight:
                while queue and len(in_flight) < workers * 2:
                    task = queue.popleft()
                    if self.on_document:
                        self.on_document(task.url)
                    in_flight[pool.submit(process_task, task, self.fetcher, self.options.annotations)] = task
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                outcomes = [future.result() for future in done]
                for future in done:
                    in_flight.pop(future)
                new_tasks = self._apply_batch(outcomes)
                queue.extend(new_tasks)
                bar.total += len(new_tasks)
                bar.update(len(outcomes))
        with session_scope(self.session_factory) as session:
            if self.options.annotations:
                crawl_queue.prune_unreferenced_text(session, self.crawl_id)
            store.link_all_orphan_text_annotations(session)
            crawl_queue.finish_crawl(session, self.crawl_id)
            for url in sources:
                source = session.scalar(select(Source).where(Source.url == url))
                if source is not None:
                    source.last_harvested_at = utcnow()
        return self.report

    def _apply_batch(self, outcomes: list[Outcome]) -> list[CrawlTask]:
        """Store the documents that finished together in one transaction; if the database
        refuses one of them, store them one by one so that only that one fails."""
        if len(outcomes) == 1:
            return self._apply_safely(outcomes[0])
        snapshot = self.report.snapshot()
        try:
            with session_scope(self.session_factory) as session:
                return [task for outcome in outcomes for task in self._apply(session, outcome)]
        except SQLAlchemyError as exc:
            if is_database_outage(exc):
                raise  # the server or its disk failed: one by one would fail too (the CLI reports it)
            self.report.restore(snapshot)
            self._collection_ids.clear()
            return [task for outcome in outcomes for task in self._apply_safely(outcome)]

    def _apply_safely(self, outcome: Outcome) -> list[CrawlTask]:
        try:
            with session_scope(self.session_factory) as session:
                return self._apply(session, outcome)
        except SQLAlchemyError as exc:
            if is_database_outage(exc):
                raise
            # One document the database refuses (an absurd value, say) must not end the crawl.
            log.exception("could not store %s", outcome.task.url)
            self._collection_ids.clear()  # ids cached in the rolled-back transaction
            reason = f"could not store: {exc.__class__.__name__}: {str(exc).splitlines()[0][:300]}"
            with session_scope(self.session_factory) as session:
                self._record_failure(session, outcome.task, reason, None, stage="store")
                crawl_queue.finish_item(session, outcome.task.item_id, "failed", FAILED, reason)
            self.report.failures.append((outcome.task.url, reason))
            return []

    # -- the writer ------------------------------------------------------------------------------

    def _apply(self, session: Session, outcome: Outcome) -> list[CrawlTask]:
        task = outcome.task
        if outcome.status == DEFERRED:
            self.report.deferred.append((task.url, outcome.deferred_host))
            crawl_queue.finish_item(session, task.item_id, "deferred", DEFERRED, outcome.error)
            return []
        if not outcome.ok:
            return self._apply_failure(session, outcome)
        self._remember_document(session, outcome)
        parsed = outcome.parsed
        if outcome.status == UNCHANGED:
            self.report.unchanged += 1
            self._touch_unchanged(session, task)
        elif isinstance(parsed, ParsedManifest):
            self._save_manifest(session, outcome)
        elif isinstance(parsed, ParsedCollection):
            if task.kind != PAGE:
                store.save_collection(session, parsed, source=self._source(session, task))
                self.report.collections.append(parsed.id)
        elif isinstance(parsed, ParsedAnnotationDocument):
            self._save_annotations(session, outcome)
        if outcome.status in (NEW, CHANGED):
            setattr(self.report, outcome.status, getattr(self.report, outcome.status) + 1)
            if task.url == task.root_url and task.kind == DOCUMENT:
                self._source(session, task).kind = (
                    "manifest" if isinstance(parsed, ParsedManifest) else
                    "collection" if isinstance(parsed, ParsedCollection) else "annotations")
        crawl_queue.finish_item(session, task.item_id, "done", outcome.status)
        held = self._link_known_members(session, outcome)
        return self._queue_children(session, task, [c for c in outcome.children if c.url not in held])

    def _save_manifest(self, session: Session, outcome: Outcome) -> None:
        task, parsed, fetched = outcome.task, outcome.parsed, outcome.fetched
        if outcome.status == NEW and task.parent_url:
            held = self._held_elsewhere(session, [task.url]).get(task.url)
            if held is not None:  # saved under its own URL while this copy was in flight
                self._link_held(session, task.parent_url, task.url, held)
                self.report.manifests.append(held.iiif_id)
                return
        manifest = store.save_manifest(
            session, parsed, url=task.url, source_id=self._source_id(session, task),
            fetched_from=fetched.url, raw_json=fetched.body.decode("utf-8", "replace"),
            content_sha256=outcome.content_sha256, etag=fetched.etag,
            last_modified=fetched.last_modified, http_status=fetched.status)
        # A manifest seen for the first time has no text rows to replace.
        if outcome.text is not None and (outcome.text.annotations or outcome.status == CHANGED):
            self.report.text_annotations += store.replace_text_annotations(
                session, outcome.text.annotations, source_url=task.url, origin_url=task.url,
                manifest=manifest)
        self._link_to_collection(session, task.parent_url, manifest)
        self.report.manifests.append(parsed.id)

    def _save_annotations(self, session: Session, outcome: Outcome) -> None:
        task, parsed = outcome.task, outcome.parsed
        if task.kind == ANNOTATIONS and task.parent_url:
            manifest = session.scalar(select(Manifest).where(Manifest.url == task.parent_url))
            origin = task.parent_url
        else:  # an annotation document harvested on its own
            manifest, origin = None, task.url
        self.report.text_annotations += store.replace_text_annotations(
            session, parsed.annotations, source_url=task.url, origin_url=origin, manifest=manifest)
        self.report.annotation_documents += 1

    def _touch_unchanged(self, session: Session, task: CrawlTask) -> None:
        manifest = session.scalar(select(Manifest).where(Manifest.url == task.url))
        if manifest is not None:
            if manifest.error is None:
                self.report.manifests.append(manifest.iiif_id)
            self._link_to_collection(session, task.parent_url, manifest)
        elif task.kind == DOCUMENT:
            doc = session.scalar(select(FetchedDocument).where(FetchedDocument.url == task.url,
                                                               FetchedDocument.context == ""))
            if doc is not None and doc.kind == "collection":
                self.report.collections.append(task.url)

    def _apply_failure(self, session: Session, outcome: Outcome) -> list[CrawlTask]:
        task = outcome.task
        doc = self._document_row(session, task)
        doc.checked_at = utcnow()
        doc.http_status = outcome.http_status
        doc.last_error = outcome.error
        doc.error_count = (doc.error_count or 0) + 1
        reason = outcome.error or "unknown failure"
        if task.kind == DOCUMENT and task.parent_url:
            held = self._held_elsewhere(session, [task.url]).get(task.url)
            if held is not None:
                # A member listed by its id, held from another URL (saved while this fetch was
                # in flight): the collection has it; the failed copy is no failure of the catalogue.
                log.info("%s: %s; held from %s, linked", task.url, reason, held.url)
                self._link_held(session, task.parent_url, task.url, held)
                crawl_queue.finish_item(session, task.item_id, "done", "held", reason)
                return []
        if outcome.status == GONE:
            doc.gone_at = doc.gone_at or utcnow()
            doc.etag = doc.last_modified = doc.content_sha256 = None
            gone = store.mark_manifest_gone(session, task.url, f"HTTP {outcome.http_status}",
                                            outcome.http_status)
            if gone is not None:
                self.report.gone.append(task.url)
            else:
                self._record_failure(session, task, f"fetch failed: {reason}", outcome.http_status)
        elif outcome.status == NOT_IIIF:
            # Remember the validators: an unchanged broken document then costs a 304, no parse.
            doc.gone_at = None
            if outcome.fetched is not None and not outcome.fetched.not_modified:
                doc.etag, doc.last_modified = outcome.fetched.etag, outcome.fetched.last_modified
            doc.content_sha256, doc.child_links = outcome.content_sha256, []
            self._record_failure(session, task, f"not usable IIIF: {reason}", outcome.http_status,
                                 stage="parse", raw=outcome.fetched.body if outcome.fetched else None)
            if outcome.fetched is not None and outcome.fetched.not_modified:
                self.report.unchanged_failures += 1
        else:
            self._record_failure(session, task, f"fetch failed: {reason}", outcome.http_status,
                                 stage="fetch")
        self.report.failures.append((task.url, reason))
        crawl_queue.finish_item(session, task.item_id, "failed", outcome.status, reason)
        return []

    def _record_failure(self, session: Session, task: CrawlTask, message: str,
                        http_status: Optional[int], stage: str = "fetch", raw: Optional[bytes] = None) -> None:
        if task.kind == DOCUMENT:
            # A transient failure on a manifest harvested before must not mark its data broken.
            store.record_manifest_failure(
                session, task.url, message, stage=stage, source=self._source(session, task),
                http_status=http_status, flag_existing=stage != "fetch",
                raw_json=raw.decode("utf-8", "replace")[:2_000_000] if raw else None)
        else:
            store.record_error(session, "annotations" if task.kind == ANNOTATIONS else stage, task.url, message)

    def _remember_document(self, session: Session, outcome: Outcome) -> None:
        doc = self._document_row(session, outcome.task)
        now = utcnow()
        doc.checked_at = now
        doc.gone_at = None
        doc.http_status = outcome.http_status
        doc.last_error = None
        if outcome.fetched is not None and (outcome.fetched.etag or outcome.status != UNCHANGED):
            doc.etag = outcome.fetched.etag
        if outcome.fetched is not None and (outcome.fetched.last_modified or outcome.status != UNCHANGED):
            doc.last_modified = outcome.fetched.last_modified
        if outcome.status != UNCHANGED:
            doc.changed_at = now
            doc.content_sha256 = outcome.content_sha256
            doc.child_links = [c.as_json() for c in outcome.children]
            parsed = outcome.parsed
            doc.kind = ("manifest" if isinstance(parsed, ParsedManifest) else
                        "collection" if isinstance(parsed, ParsedCollection) else "annotations")

    def _document_row(self, session: Session, task: CrawlTask) -> FetchedDocument:
        context = crawl_queue.document_context(task.kind, task.parent_url)
        doc = None
        if task.known:  # the row existed when the task was made; else no need to look
            doc = session.scalar(select(FetchedDocument).where(FetchedDocument.url == task.url,
                                                               FetchedDocument.context == context))
        if doc is None:
            doc = FetchedDocument(url=task.url, context=context, child_links=[], error_count=0)
            session.add(doc)
        return doc

    def _queue_children(self, session: Session, task: CrawlTask, children: list[ChildLink]) -> list[CrawlTask]:
        if not children:
            return []
        # Only members of a collection go one level deeper; pages and annotations stay level.
        nested = [c for c in children if c.kind == DOCUMENT]
        level = [c for c in children if c.kind != DOCUMENT]
        items = []
        if nested and task.depth + 1 > self.options.max_depth:
            reason = f"collections nested more than {self.options.max_depth} deep; members not followed"
            store.record_error(session, "fetch", task.url, reason)
            self.report.failures.append((task.url, reason))
            nested = []
        for links, depth in ((nested, task.depth + 1), (level, task.depth)):
            added, refused = crawl_queue.add_items(session, self.crawl_id, links, task.root_url, depth,
                                                   limit=self.options.max_documents)
            items += added
            if refused and not self._limit_reported:
                self._limit_reported = True
                reason = f"stopped: more than {self.options.max_documents} documents in this crawl"
                store.record_error(session, "fetch", task.url, reason)
                self.report.failures.append((task.url, reason))
        return crawl_queue.tasks_for(session, items)

    def _link_known_members(self, session: Session, outcome: Outcome) -> set[str]:
        """Link members harvested before (or listed twice) to the collection now. Returns the
        member URLs not to fetch: manifests held under that id from another URL (a collection
        lists ids; the row may have come from a file, a mirror or another spelling of the URL)."""
        members = [c for c in outcome.children if c.kind == DOCUMENT and c.parent_url]
        if not members:
            return set()
        urls = [c.url for c in members]
        usable: set[str] = set()
        for start in range(0, len(urls), 500):
            for manifest in session.scalars(select(Manifest).where(Manifest.url.in_(urls[start:start + 500]),
                                                                   Manifest.error.is_(None))):
                usable.add(manifest.url)
                self._link_to_collection(session, members[0].parent_url, manifest)
        held = self._held_elsewhere(session, [u for u in urls if u not in usable])
        for url, manifest in held.items():
            self._link_held(session, members[0].parent_url, url, manifest)
        return set(held)

    def _link_held(self, session: Session, collection_iiif_id: str, url: str, manifest: Manifest) -> None:
        """Link the manifest held under the member id ``url`` to the collection, in place of the
        row of failure an earlier fetch of ``url`` left (its links go to ``manifest``)."""
        store.absorb_failed_copy(session, manifest, url)
        self._link_to_collection(session, collection_iiif_id, manifest)

    @staticmethod
    def _held_elsewhere(session: Session, ids: list[str]) -> dict[str, Manifest]:
        """Usable manifests that declare one of ``ids`` but were harvested from another URL, by id."""
        held: dict[str, Manifest] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for manifest in session.scalars(select(Manifest).where(
                    Manifest.iiif_id.in_(chunk), Manifest.url.not_in(chunk), Manifest.error.is_(None))
                    .order_by(Manifest.id)):
                held.setdefault(manifest.iiif_id, manifest)
        return held

    def _link_to_collection(self, session: Session, collection_iiif_id: Optional[str], manifest) -> None:
        if not collection_iiif_id:
            return
        collection_id = self._collection_ids.get(collection_iiif_id)
        if collection_id is None:
            collection_id = session.scalar(select(Collection.id).where(Collection.iiif_id == collection_iiif_id))
            if collection_id is None:
                return
            self._collection_ids[collection_iiif_id] = collection_id
        store.link_manifest_ids(session, collection_id, manifest.id)

    def _source(self, session: Session, task: CrawlTask) -> Source:
        source = store.get_or_create_source(session, task.root_url)
        self._source_ids[task.root_url] = source.id
        return source

    def _source_id(self, session: Session, task: CrawlTask) -> int:
        source_id = self._source_ids.get(task.root_url)
        return source_id if source_id is not None else self._source(session, task).id
