"""One shared HTTP client for harvesting, and the safety rules every request follows.

* a real User-Agent, gzip, connection reuse;
* per-host concurrency and rate limits (:mod:`harvest.politeness`); retries with exponential
  backoff and jitter on connection errors, timeouts, 429 and 5xx; ``Retry-After`` honoured (and
  applied to the whole host) up to a ceiling;
* a host that stops answering (connection failures and timeouts in a row) is down for the rest
  of the run: its requests fail at once with :class:`HostDownError` (the caller defers them to a
  later run) except a probe now and then (:mod:`manuscripts_search.host_health`);
* connect/read timeouts plus a total deadline per response, so a server that drips one byte a
  second cannot hold a worker forever;
* a maximum body size (checked against Content-Length first, then while streaming, after gzip
  decoding); redirects followed by hand, at most ``max_redirects``, loops detected;
* SSRF protection: every connection, redirect targets included, goes only to addresses the
  :class:`~manuscripts_search.netguard.NetworkPolicy` allows (public ones by default), checked
  after DNS resolution (:mod:`harvest.ssrf`); plus an optional ``url_guard`` called with every
  URL before it is requested (e.g. a host allow-list);
* conditional requests (If-None-Match / If-Modified-Since): a 304 comes back as a result whose
  ``not_modified`` is true;
* a content-type check for JSON and image requests, so an HTML error page served with 200 is a
  readable failure instead of a confusing parse error.

Local files and file:// URLs are read through the same interface (a librarian may harvest a
manifest saved on disk), and URL prefixes can be mapped to local folders (``local_mirrors``), which
``msearch publish`` uses to read its own static IIIF tree without a running web server.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import unquote, urljoin, urlsplit

from manuscripts_search.config import environment
from manuscripts_search.host_health import HostDown, Lease
from manuscripts_search.netguard import AddressRefusedError, NetworkPolicy

from .politeness import HostLimiter, PolitenessPolicy, backoff_delay, parse_retry_after

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
GONE_STATUSES = frozenset({404, 410})
ACCEPT = {
    "json": "application/ld+json, application/json;q=0.9, */*;q=0.1",
    "image": "image/jpeg, image/png;q=0.9, image/*;q=0.8, */*;q=0.1",
}
# Media types that are never a JSON document, whatever the body looks like.
_NOT_JSON_PREFIXES = ("image/", "audio/", "video/", "font/", "application/pdf", "application/zip")

UrlGuard = Callable[[str], None]


class FetchError(RuntimeError):
    """A resource could not be fetched; ``reason`` is readable, ``status`` the HTTP code if any."""

    def __init__(self, url: str, reason: str, status: Optional[int] = None):
        super().__init__(f"{reason} ({url})")
        self.url = url
        self.reason = reason
        self.status = status

    @property
    def gone(self) -> bool:
        """The server says the resource is not there (404/410), as opposed to a passing failure."""
        return self.status in GONE_STATUSES


class HostDownError(FetchError):
    """The host does not answer (connection failures and timeouts in a row): the request was not
    sent, or failed as the host's probe. Not the resource's failure: defer it to a later run."""

    def __init__(self, url: str, reason: str, host: str):
        super().__init__(url, reason)
        self.host = host


@dataclass
class FetchResult:
    url: str  # final URL after redirects (or the file path)
    status: int
    body: bytes
    headers: dict = field(default_factory=dict)  # lower-cased names

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def etag(self) -> Optional[str]:
        return self.headers.get("etag")

    @property
    def last_modified(self) -> Optional[str]:
        return self.headers.get("last-modified")


def is_local_source(source: str) -> bool:
    return source.startswith("file://") or "://" not in source


def local_path(source: str) -> Path:
    if source.startswith("file://"):
        return Path(unquote(urlsplit(source).path))
    return Path(source).expanduser()


def allow_only_hosts(*hosts: str) -> UrlGuard:
    """A ``url_guard`` that refuses every host but ``hosts`` (e.g. tests that must stay offline)."""
    allowed = {h.lower() for h in hosts}

    def guard(url: str) -> None:
        host = (urlsplit(url).hostname or "").lower()
        if host not in allowed:
            raise FetchError(url, f"host {host or '(none)'!r} is not allowed")

    return guard


class _Retry(Exception):
    """Internal: this attempt failed in a way worth retrying."""

    def __init__(self, reason: str, status: Optional[int] = None, wait: Optional[float] = None,
                 unreachable: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.wait = wait
        self.unreachable = unreachable  # no answer at all: refused, unreachable, timed out


class Fetcher:
    """Fetch URLs and local files with the project's politeness and safety rules. Thread-safe:
    one Fetcher is shared by every worker of a harvest."""

    def __init__(self, user_agent: str, timeout: float = 30.0, max_bytes: int = 64 * 1024 * 1024,
                 retries: int = 3, max_redirects: int = 5,
                 policy: Optional[PolitenessPolicy] = None, total_timeout: Optional[float] = None,
                 url_guard: Optional[UrlGuard] = None,
                 local_mirrors: Optional[dict[str, Path]] = None,
                 network_policy: Optional[NetworkPolicy] = None):
        """``network_policy`` says which addresses may be connected to; None reads it from the
        environment (MSEARCH_ALLOW_HOSTS, MSEARCH_ALLOW_PRIVATE_NETWORKS), which by default
        allows public addresses only. Raises ValueError for a malformed environment setting."""
        import urllib3

        from .ssrf import guarded_pool_manager

        self.user_agent = user_agent
        self.max_bytes = max_bytes
        self.retries = retries
        self.max_redirects = max_redirects
        self.policy = policy or PolitenessPolicy()
        self.limiter = HostLimiter(self.policy)
        self.total_timeout = total_timeout if total_timeout is not None else max(60.0, 4 * timeout)
        self.url_guard = url_guard
        self.network_policy = network_policy if network_policy is not None else NetworkPolicy.from_env(environment())
        self.local_mirrors = {prefix: Path(folder) for prefix, folder in (local_mirrors or {}).items()}
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        # Per-request headers replace a PoolManager's defaults, so ours are merged in get().
        self._base_headers = {"User-Agent": user_agent, "Accept-Encoding": "gzip, deflate"}
        self._pool = guarded_pool_manager(self.network_policy, num_pools=64, maxsize=self.policy.max_per_host,
                                          block=False)
        self._stats_lock = threading.Lock()
        self.stats: Counter = Counter()  # "requests", "bytes", "status:200", "retries" ...

    # -- public --------------------------------------------------------------------------------

    def get(self, source: str, *, expect: Optional[str] = None, etag: Optional[str] = None,
            last_modified: Optional[str] = None, headers: Optional[dict] = None) -> FetchResult:
        """Fetch ``source`` (URL or local path) and return its body.

        ``expect`` is "json", "image" or None: the Accept header and a content-type check follow
        from it. ``etag``/``last_modified`` make the request conditional; an unchanged resource
        comes back with ``status`` 304 and an empty body.

        Raises FetchError with a readable reason: HTTP errors after retries, timeouts, too-large
        bodies, redirect loops, refused URLs, wrong content types, unreadable files.
        """
        if is_local_source(source):
            return self._read_file(source)
        mirrored = self._mirror_path(source)
        if mirrored is not None:
            return self._read_file(str(mirrored), url=source)
        request_headers = {**self._base_headers, "Accept": ACCEPT.get(expect or "", "*/*")}
        if etag:
            request_headers["If-None-Match"] = etag
        if last_modified:
            request_headers["If-Modified-Since"] = last_modified
        request_headers.update(headers or {})

        url, seen = source, [source]
        for _hop in range(self.max_redirects + 1):
            result = self._get_following_retries(url, request_headers)
            if result.status in REDIRECT_STATUSES:
                location = result.headers.get("location")
                if not location:
                    raise FetchError(source, f"HTTP {result.status} redirect without a Location", result.status)
                url = urljoin(url, location.strip())
                if url in seen:
                    raise FetchError(source, "redirect loop: " + " -> ".join([*seen, url]), result.status)
                seen.append(url)
                continue
            result = FetchResult(url=url, status=result.status, body=result.body, headers=result.headers)
            if result.status == 304:
                return result
            if result.status >= 400:
                raise FetchError(source, f"HTTP {result.status}{_status_text(result)}", result.status)
            if not 200 <= result.status < 300:
                raise FetchError(source, f"unexpected HTTP status {result.status}", result.status)
            self._check_content_type(source, result, expect)
            return result
        raise FetchError(source, f"more than {self.max_redirects} redirects: " + " -> ".join(seen))

    def close(self) -> None:
        self._pool.clear()

    # -- one URL, with retries ------------------------------------------------------------------

    def _get_following_retries(self, url: str, headers: dict) -> FetchResult:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https"):
            raise FetchError(url, f"unsupported URL scheme {parts.scheme!r}")
        if not parts.hostname:
            raise FetchError(url, "URL has no host")
        if self.url_guard is not None:
            try:
                self.url_guard(url)
            except FetchError:
                raise
            except ValueError as exc:
                raise FetchError(url, f"refused: {exc}") from None
        host = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
        last: Optional[_Retry] = None
        for attempt in range(self.retries + 1):
            if attempt:
                self._count("retries")
                wait = last.wait if last and last.wait is not None else backoff_delay(
                    attempt - 1, self.policy.backoff_base, self.policy.backoff_max)
                if last and last.wait is not None:
                    self.limiter.defer(host, wait)  # the server asked every client to hold off
                else:
                    time.sleep(wait)
            lease: Optional[Lease] = None
            try:
                with self.limiter.slot(host) as lease:
                    return self._attempt(url, headers, lease)
            except HostDown as down:
                self._count("deferred")
                raise HostDownError(url, str(down), host) from None
            except AddressRefusedError as refused:  # never retried: the answer will not change
                self._count("refused")
                raise FetchError(url, f"refused: {refused}") from None
            except _Retry as retry:
                last = retry
                if retry.unreachable and lease is not None and lease.probe:
                    raise HostDownError(url, f"host down: {host} did not answer a probe ({retry.reason}); "
                                             "deferred to a later run", host) from None
                if retry.wait is not None and retry.wait > self.policy.max_retry_after:
                    self.limiter.defer(host, self.policy.max_retry_after)
                    raise FetchError(url, f"{retry.reason}; server asked to retry after {retry.wait:.0f} s, "
                                          f"longer than the {self.policy.max_retry_after:.0f} s we wait",
                                     retry.status) from None
        assert last is not None
        if last.unreachable and self.limiter.is_down(host):
            # Its attempts are among those that showed the host down: deferred like the rest.
            raise HostDownError(url, f"host down: {host} ({last.reason}); deferred to a later run", host)
        tries = self.retries + 1
        raise FetchError(url, f"{last.reason} (gave up after {tries} attempt{'s' if tries > 1 else ''})",
                         last.status)

    def _attempt(self, url: str, headers: dict, lease: Lease) -> FetchResult:
        import urllib3

        started = time.monotonic()
        self._count("requests")
        try:
            response = self._pool.urlopen("GET", url, headers=headers, timeout=self._timeout,
                                          retries=False, redirect=False, preload_content=False,
                                          assert_same_host=False)
        except urllib3.exceptions.HTTPError as exc:
            # Refused, unreachable, timed out, reset before a status line: the host did not answer.
            # (A TLS or URL problem is an answer of sorts: the host is there.)
            unreachable = isinstance(exc, (urllib3.exceptions.TimeoutError, urllib3.exceptions.NewConnectionError,
                                           urllib3.exceptions.ProtocolError))
            lease.answered = not unreachable
            raise _Retry(_reason(exc), unreachable=unreachable) from None
        lease.answered = True
        complete = False  # a connection with unread bytes on it must never go back to the pool
        try:
            status = response.status
            self._count(f"status:{status}")
            response_headers = {k.lower(): v for k, v in response.headers.items()}
            if status in RETRY_STATUSES or status in REDIRECT_STATUSES or status == 304:
                complete = _discard_small_body(response, response_headers)
                if status in RETRY_STATUSES:
                    wait = parse_retry_after(response_headers.get("retry-after")) if status in (429, 503) else None
                    raise _Retry(f"HTTP {status}", status, wait)
                return FetchResult(url, status, b"", response_headers)
            declared = response_headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise FetchError(url, f"response of {declared} bytes exceeds the {self.max_bytes}-byte limit", status)
            chunks, size = [], 0
            # read1 returns what has arrived, so a server dripping bytes meets the deadline check.
            while chunk := response.read1(64 * 1024):
                size += len(chunk)
                if size > self.max_bytes:
                    raise FetchError(url, f"response exceeds the {self.max_bytes}-byte limit", status)
                if time.monotonic() - started > self.total_timeout:
                    raise FetchError(url, f"response took longer than {self.total_timeout:.0f} s", status)
                chunks.append(chunk)
            self._count("bytes", size)
            complete = True
            return FetchResult(url, status, b"".join(chunks), response_headers)
        except urllib3.exceptions.HTTPError as exc:
            raise _Retry(f"connection failed while reading: {_reason(exc)}") from None
        finally:
            if not complete:
                response.close()
            response.release_conn()

    # -- checks and local files ----------------------------------------------------------------

    def _check_content_type(self, source: str, result: FetchResult, expect: Optional[str]) -> None:
        media_type = result.content_type.split(";")[0].strip().lower()
        if not media_type or expect is None:
            return
        if expect == "json":
            looks_like_json = result.body.lstrip()[:1] in (b"{", b"[")
            wrong = media_type.startswith(_NOT_JSON_PREFIXES) or (
                media_type in ("text/html", "application/xhtml+xml", "text/xml", "application/xml")
                and not looks_like_json)
            if wrong:
                raise FetchError(source, f"wrong content type {media_type} (expected JSON)", result.status)
        elif expect == "image":
            if media_type.startswith("text/") or "json" in media_type or "html" in media_type:
                raise FetchError(source, f"wrong content type {media_type} (expected an image)", result.status)

    def _mirror_path(self, url: str) -> Optional[Path]:
        for prefix, folder in self.local_mirrors.items():
            if url.startswith(prefix):
                relative = unquote(urlsplit(url[len(prefix):]).path).lstrip("/")
                path = (folder / relative).resolve()
                if folder.resolve() not in path.parents and path != folder.resolve():
                    raise FetchError(url, "path escapes the mirrored folder")
                return path
        return None

    def _read_file(self, source: str, url: Optional[str] = None) -> FetchResult:
        path = local_path(source)
        shown = url or str(path)
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise FetchError(shown, f"file of {size} bytes exceeds the {self.max_bytes}-byte limit")
            return FetchResult(url=url or str(path.resolve()), status=200, body=path.read_bytes())
        except FileNotFoundError:
            raise FetchError(shown, "no such file", 404 if url else None) from None
        except IsADirectoryError:
            raise FetchError(shown, "is a directory, not a file") from None
        except PermissionError:
            raise FetchError(shown, "permission denied") from None

    def _count(self, key: str, amount: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] += amount


def _discard_small_body(response, headers: dict) -> bool:
    """Read away the (small) body of a response we do not use, so that its connection can be
    reused; returns False when the body is too big or unknown and the connection must close."""
    import urllib3

    declared = headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > 65536:
        return False
    try:
        response.drain_conn()
    except urllib3.exceptions.HTTPError:
        return False
    return True


def _status_text(result: FetchResult) -> str:
    return {404: " (not found)", 410: " (gone)", 401: " (authentication required)",
            403: " (forbidden)"}.get(result.status, "")


def _reason(exc) -> str:
    text = str(exc)
    # urllib3 wraps the useful part ("Connection refused", "Read timed out") in object reprs.
    for marker, reason in (("Connection refused", "connection refused"),
                           ("Read timed out", "read timed out"),
                           ("timed out", "timed out"),
                           ("Name or service not known", "host name not found"),
                           ("Temporary failure in name resolution", "host name not found"),
                           ("IncompleteRead", "connection closed before the whole body arrived"),
                           ("Connection reset", "connection reset"),
                           ("Connection aborted", "connection aborted"),
                           ("CERTIFICATE_VERIFY_FAILED", "TLS certificate not trusted")):
        if marker.lower() in text.lower():
            return reason
    return text[:300]
