"""One shared HTTP client for harvesting: retries with backoff (honouring Retry-After), timeouts,
a real User-Agent, a cap on body size and on redirects. Local files and file:// URLs are read
through the same interface so that a librarian can harvest a manifest saved on disk.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlsplit


class FetchError(RuntimeError):
    """A resource could not be fetched; ``str()`` is a readable reason, ``status`` the HTTP code."""

    def __init__(self, url: str, reason: str, status: Optional[int] = None):
        super().__init__(f"{reason} ({url})")
        self.url = url
        self.reason = reason
        self.status = status


@dataclass
class FetchResult:
    url: str  # final URL after redirects (or the file path)
    status: int
    body: bytes
    headers: dict = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def is_local_source(source: str) -> bool:
    return source.startswith("file://") or "://" not in source


def local_path(source: str) -> Path:
    if source.startswith("file://"):
        return Path(unquote(urlsplit(source).path))
    return Path(source).expanduser()


class Fetcher:
    """Fetch URLs and local files with the project's politeness and safety rules."""

    def __init__(self, user_agent: str, timeout: float = 30.0, max_bytes: int = 64 * 1024 * 1024,
                 retries: int = 3, backoff: float = 0.5, max_redirects: int = 5):
        import urllib3

        self.max_bytes = max_bytes
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self._retry = urllib3.Retry(
            total=retries, connect=retries, read=retries, redirect=max_redirects,
            status_forcelist=(429, 500, 502, 503, 504), backoff_factor=backoff,
            backoff_jitter=backoff / 2, respect_retry_after_header=True,
            allowed_methods=frozenset({"GET", "HEAD"}), raise_on_status=False,
            raise_on_redirect=True)
        self._pool = urllib3.PoolManager(num_pools=32, maxsize=8, headers={"User-Agent": user_agent})

    def get(self, source: str, headers: Optional[dict] = None) -> FetchResult:
        """Return the body of ``source`` (URL or local path); raise FetchError with a reason."""
        if is_local_source(source):
            return self._read_file(source)
        scheme = urlsplit(source).scheme.lower()
        if scheme not in ("http", "https"):
            raise FetchError(source, f"unsupported URL scheme {scheme!r}")
        import urllib3

        try:
            response = self._pool.request("GET", source, headers=headers, timeout=self._timeout,
                                          retries=self._retry, preload_content=False)
        except urllib3.exceptions.MaxRetryError as exc:
            raise FetchError(source, f"gave up after retries: {_reason(exc.reason)}") from None
        except urllib3.exceptions.HTTPError as exc:
            raise FetchError(source, f"HTTP error: {_reason(exc)}") from None
        try:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise FetchError(source, f"response of {declared} bytes exceeds the "
                                 f"{self.max_bytes}-byte limit", response.status)
            chunks, size = [], 0
            for chunk in response.stream(64 * 1024):
                size += len(chunk)
                if size > self.max_bytes:
                    raise FetchError(source, f"response exceeds the {self.max_bytes}-byte limit",
                                     response.status)
                chunks.append(chunk)
        except urllib3.exceptions.HTTPError as exc:
            raise FetchError(source, f"connection failed while reading: {_reason(exc)}") from None
        finally:
            response.release_conn()
        final_url = response.geturl() or source
        result = FetchResult(url=final_url, status=response.status, body=b"".join(chunks),
                             headers={k.lower(): v for k, v in response.headers.items()})
        if response.status == 304:
            return result
        if response.status >= 400:
            raise FetchError(source, f"HTTP {response.status}", response.status)
        return result

    def _read_file(self, source: str) -> FetchResult:
        path = local_path(source)
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise FetchError(str(path), f"file of {size} bytes exceeds the {self.max_bytes}-byte limit")
            return FetchResult(url=str(path.resolve()), status=200, body=path.read_bytes())
        except FileNotFoundError:
            raise FetchError(str(path), "no such file") from None
        except IsADirectoryError:
            raise FetchError(str(path), "is a directory, not a JSON file") from None
        except PermissionError:
            raise FetchError(str(path), "permission denied") from None

    def close(self) -> None:
        self._pool.clear()


def _reason(exc) -> str:
    text = str(exc)
    # urllib3 wraps the useful part ("Connection refused", "Read timed out") in object reprs.
    for marker in ("Connection refused", "timed out", "Name or service not known",
                   "Temporary failure in name resolution", "too many redirects"):
        if marker.lower() in text.lower():
            return marker
    return text[:300]
