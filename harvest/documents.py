"""Fetching and parsing one crawl item, off the database thread.

:func:`process_task` is what the worker threads run: a conditional GET, the content hash, the
parse (manifest, collection or annotation document) and the links to follow. It touches no
database and never raises: every problem comes back as an :class:`Outcome` with a readable
reason, for the writer to record against the URL.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Optional, Union

from manuscripts_search.iiif.annotations import (
    ManifestText,
    ParsedAnnotationDocument,
    annotation_document_kind,
    parse_annotation_document,
)
from manuscripts_search.iiif.model import IIIFParseError, ParsedCollection, ParsedManifest
from manuscripts_search.iiif.json_decoding import load_json_object
from manuscripts_search.iiif.presentation import parse_document_with_text

from .crawl_queue import ANNOTATIONS, DOCUMENT, PAGE, ChildLink, CrawlTask
from .http import Fetcher, FetchError, FetchResult, HostDownError, is_local_source

log = logging.getLogger(__name__)

# Outcome statuses (DEFERRED: the document's host is down; a later run fetches it)
NEW, CHANGED, UNCHANGED, GONE, FAILED, NOT_IIIF = "new", "changed", "unchanged", "gone", "failed", "not-iiif"
DEFERRED = "deferred"

Parsed = Union[ParsedManifest, ParsedCollection, ParsedAnnotationDocument]


@dataclass
class Outcome:
    task: CrawlTask
    status: str
    fetched: Optional[FetchResult] = None
    content_sha256: Optional[str] = None
    parsed: Optional[Parsed] = None
    text: Optional[ManifestText] = None  # text a manifest embeds
    children: list[ChildLink] = field(default_factory=list)
    error: Optional[str] = None
    http_status: Optional[int] = None
    deferred_host: Optional[str] = None  # DEFERRED: the host that was down

    @property
    def ok(self) -> bool:
        return self.status in (NEW, CHANGED, UNCHANGED)


def process_task(task: CrawlTask, fetcher: Fetcher, follow_annotations: bool = True) -> Outcome:
    """Fetch and parse ``task``'s URL. Never raises."""
    try:
        return _process(task, fetcher, follow_annotations)
    except Exception as exc:  # a bug or an input nobody foresaw: recorded against the URL, run goes on
        log.exception("unexpected error while processing %s", task.url)
        return Outcome(task, FAILED, error=f"internal error: {exc.__class__.__name__}: {exc}")


def _process(task: CrawlTask, fetcher: Fetcher, follow_annotations: bool) -> Outcome:
    try:
        fetched = fetcher.get(task.url, expect="json", etag=task.etag, last_modified=task.last_modified)
    except HostDownError as down:
        return Outcome(task, DEFERRED, error=down.reason, deferred_host=down.host)
    except FetchError as exc:
        return Outcome(task, GONE if exc.gone else FAILED, error=exc.reason, http_status=exc.status)
    digest = task.content_sha256 if fetched.not_modified else hashlib.sha256(fetched.body).hexdigest()
    if fetched.not_modified or (task.content_sha256 and digest == task.content_sha256):
        # Nothing to parse (a 304, or a server that ignores conditional requests but sends the
        # same bytes). A document that could not be used last time still cannot.
        if task.last_error:
            return Outcome(task, NOT_IIIF, fetched, digest, error=task.last_error, http_status=fetched.status)
        return Outcome(task, UNCHANGED, fetched=fetched, content_sha256=digest,
                       children=list(task.child_links), http_status=fetched.status)
    status = CHANGED if task.content_sha256 else NEW
    source_url = None if is_local_source(task.url) else fetched.url
    try:
        if task.kind == ANNOTATIONS:
            parsed = parse_annotation_document(load_json_object(fetched.body), source_url,
                                               default_canvas=task.canvas_iiif_id)
            return Outcome(task, status, fetched, digest, parsed, http_status=fetched.status,
                           children=[ChildLink(p, ANNOTATIONS, task.parent_url, task.canvas_iiif_id)
                                     for p in parsed.pages])
        try:
            parsed, text = parse_document_with_text(fetched.body, source_url=source_url)
        except IIIFParseError:
            annotations = _as_annotation_document(fetched.body, source_url)
            if annotations is None:
                raise
            return Outcome(task, status, fetched, digest, annotations, http_status=fetched.status,
                           children=[ChildLink(p, ANNOTATIONS, task.url) for p in annotations.pages])
    except IIIFParseError as exc:
        return Outcome(task, NOT_IIIF, fetched, digest, error=str(exc), http_status=fetched.status)
    if isinstance(parsed, ParsedCollection):
        # Members and pages of a page belong to the collection the first page came from.
        owner = task.parent_url if task.kind == PAGE and task.parent_url else parsed.id
        children = [ChildLink(_member_url(m.id), DOCUMENT, owner) for m in parsed.members]
        children += [ChildLink(page, PAGE, owner) for page in parsed.pages]
        return Outcome(task, status, fetched, digest, parsed, children=children, http_status=fetched.status)
    children = []
    # A manifest read from disk is an offline copy: its remote annotation links are not followed.
    if follow_annotations and text is not None and not is_local_source(task.url):
        children = [ChildLink(ref.url, ANNOTATIONS, task.url, ref.canvas_id) for ref in text.references]
    return Outcome(task, status, fetched, digest, parsed, text, children, http_status=fetched.status)


def _as_annotation_document(body: bytes, source_url: Optional[str]) -> Optional[ParsedAnnotationDocument]:
    """The document as annotations, when it is an annotation list/page given as a source.
    Raises IIIFParseError with the annotation parser's reason (a search response, say)."""
    try:
        data = load_json_object(body)
    except IIIFParseError:
        return None
    types = data.get("type", data.get("@type"))
    is_term_list = isinstance(types, str) and types.lower().endswith("termlist")
    if annotation_document_kind(data) is None and "resources" not in data and not is_term_list:
        return None
    return parse_annotation_document(data, source_url)


def _member_url(member_id: str) -> str:
    # Fragments never reach the server; without them two spellings of one URL stay one item.
    return member_id.split("#", 1)[0] if "://" in member_id else member_id
