"""What kind of failure an error is, and which host it happened on: the one rule every surface
uses (the rows written by the harvester, the harvest summary, ``msearch stats``/``errors``/
``manifests``, the web pages and the API), so that "host name not found on images.example.org"
is counted the same way everywhere.

The rule reads the readable reason the fetcher and the decoders give (:mod:`harvest.http`,
:mod:`manuscripts_search.image_decoding`), an HTTP status when the caller has one, and an explicit
kind when the writer knows better (requests *deferred* because their host is marked down). URLs
are taken out of the text before it is read, so that a path such as ``/timeout/1.jpg`` does not
make a 404 a timeout. An image error that tried the image service and then the image URL is
classified by the first attempt (the reason the canvas has no image).
"""
from __future__ import annotations

import re
from typing import Optional
from urllib.parse import urlsplit

HOST_DOWN = "host_down"

# kind -> what a curator reads; the order is the order of the rules below.
LABELS = {
    HOST_DOWN: "host down / deferred",
    "store": "could not store",
    "limit": "crawl limit reached",
    "dns": "host name not found",
    "timeout": "timeout",
    "refused": "connection refused",
    "blocked": "address not allowed",
    "tls": "TLS certificate not trusted",
    "not_found": "404 not found / gone",
    "forbidden": "access denied (401/403)",
    "rate_limited": "too many requests (429)",
    "server_error": "server error (5xx)",
    "http_error": "other HTTP error",
    "connection": "connection failed",
    "too_large": "too large",
    "not_image": "not an image",
    "not_iiif": "not usable IIIF",
    "no_image": "canvas paints no image",
    "other": "other",
}

# stage -> where it happened, for "404 not found / gone (image service)".
_WHERE = {"fetch": "document", "parse": "document", "store": "database", "annotations": "annotation document",
          "image": "images", "region": "region images", "embed": "encoder", "index": "index"}

_URL = re.compile(r"\(?\b(?:https?|file)://[^\s()]+\)?", re.IGNORECASE)
_FIRST_URL = re.compile(r"\b(?:https?|file)://[^\s()]+", re.IGNORECASE)
_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")

# (kind, phrases in the reason, lower case): the first rule with a phrase found wins.
_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (HOST_DOWN, ("host down", "deferred")),
    ("store", ("could not store",)),
    ("limit", ("stopped: more than", "nested more than")),
    ("dns", ("host name not found", "name or service not known", "temporary failure in name resolution",
             "nodename nor servname", "getaddrinfo failed", "no address associated")),
    ("timeout", ("timed out", "took longer than", "timeout")),
    ("refused", ("connection refused",)),
    ("blocked", ("refused:", "is not allowed", "path escapes")),
    ("tls", ("certificate", "ssl", "tls")),
)
_LATER_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("connection", ("connection", "incompleteread", "remote end closed")),
    ("too_large", ("exceeds the", "decompression bomb")),
    ("not_image", ("expected an image", "not an image", "cannot be decoded", "image file is truncated")),
    ("not_iiif", ("not usable iiif", "expected json", "not a iiif", "not json")),
    ("no_image", ("paints no image",)),
    ("not_found", ("no such file", "not found", "gone")),
    ("forbidden", ("permission denied",)),
)


def classify(message: str, stage: Optional[str] = None, http_status: Optional[int] = None,
             kind: Optional[str] = None) -> str:
    """The kind of the failure ``message`` (one of :data:`LABELS`)."""
    if kind in LABELS:
        return kind
    if kind == "deferred":
        return HOST_DOWN
    text = _URL.sub(" ", (message or "").split("; image URL: ")[0]).lower()
    if stage == "store":
        return "store"
    for name, phrases in _RULES:
        if any(phrase in text for phrase in phrases):
            return name
    status = http_status
    found = _HTTP_STATUS.search(text.upper())
    if found:
        status = int(found.group(1))
    if status is not None and status >= 400:
        return _status_kind(status)
    for name, phrases in _LATER_RULES:
        if any(phrase in text for phrase in phrases):
            return name
    if stage == "parse":
        return "not_iiif"
    return "other"


def _status_kind(status: int) -> str:
    if status in (404, 410):
        return "not_found"
    if status in (401, 403):
        return "forbidden"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    return "http_error"


def host_of(message: Optional[str], url: Optional[str] = None) -> Optional[str]:
    """The host the failure happened on: that of the first URL in the reason (the request that
    failed: a tile may live on another host than the canvas's image URL), else of ``url``;
    "local files" for paths. None when neither names one."""
    found = _FIRST_URL.search(message or "")
    candidate = found.group(0) if found else url
    if not candidate:
        return None
    parts = urlsplit(candidate)
    if parts.scheme.lower() in ("http", "https") and parts.netloc:
        return parts.netloc.lower().rsplit("@", 1)[-1][:255]
    if parts.scheme.lower() == "file" or candidate.startswith(("/", "~", ".")):
        return "local files"
    return None


def label(kind: Optional[str]) -> str:
    return LABELS.get(kind or "other", kind or "other")


def describe(kind: Optional[str], stage: Optional[str] = None, message: Optional[str] = None) -> str:
    """"404 not found / gone (image service)": the kind, and where it happened."""
    where = _WHERE.get(stage or "", stage or "")
    if stage == "image" and message:
        if message.startswith("image service:"):
            where = "image service"
        elif message.startswith("image URL:"):
            where = "image URL"
    return f"{label(kind)} ({where})" if where else label(kind)
