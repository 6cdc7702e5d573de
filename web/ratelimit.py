"""Request-rate limit on public search: a token bucket per client IP, in this process.

Searching costs a model forward pass and an index query; a single client looping over
``/api/search`` must not starve everyone else. Each client IP has a bucket of ``burst`` tokens
refilled at ``rate`` per second; a search takes one, and an empty bucket answers 429 with a
``Retry-After`` header (JSON under /api and /iiif, a page elsewhere).

The buckets live in the worker process: with N gunicorn workers a client gets up to N times the
rate, depending on which worker its connections land on. That is the intended trade (no shared
store to run); set the rate per worker accordingly, or put the limit in the reverse proxy for a
hard global one.

Settings (Flask config, else the environment):

- ``RATELIMIT_SEARCH`` / MSEARCH_SEARCH_RATE_LIMIT: ``"<n>/second|minute|hour"``, default
  ``60/minute``; ``0`` or ``off`` disables it. Off by default under ``TESTING`` unless set.
- ``RATELIMIT_BURST`` / MSEARCH_SEARCH_RATE_BURST: bucket size, default 20.
- ``RATELIMIT_TRUSTED_PROXIES`` / MSEARCH_TRUSTED_PROXIES: how many reverse proxies in front add
  ``X-Forwarded-For`` (default 0: the socket's peer address is the client).
- ``RATELIMIT_PATHS``: path prefixes that count as search (plus paths ending in /similar or
  /duplicates).
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

from flask import Flask, current_app, make_response, request

_EXTENSION = "msearch.ratelimit"
DEFAULT_RATE = "60/minute"
DEFAULT_BURST = 20
DEFAULT_PATHS = ("/search", "/api/search", "/iiif/search/", "/iiif/autocomplete/")
SEARCH_SUFFIXES = ("/similar", "/duplicates")  # "more like this" runs a k-NN query too
MAX_CLIENTS = 100_000  # buckets kept; the least recently seen are dropped first
_PERIODS = {"second": 1.0, "sec": 1.0, "s": 1.0, "minute": 60.0, "min": 60.0, "m": 60.0, "hour": 3600.0, "h": 3600.0}


def parse_rate(text: str) -> Optional[float]:
    """Requests per second from ``"<n>/<period>"``; None for ``0`` / ``off`` (no limit).
    Raises ValueError for anything else."""
    text = (text or "").strip().lower()
    if text in ("0", "off", "none", "false", ""):
        return None
    count, _, period = text.partition("/")
    try:
        amount = float(count)
    except ValueError:
        raise ValueError(f"search rate limit must look like 60/minute, not {text!r}") from None
    if period not in _PERIODS or not math.isfinite(amount) or amount <= 0:
        raise ValueError(f"search rate limit must look like 60/minute, not {text!r}")
    return amount / _PERIODS[period]


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """Token buckets by key, thread-safe, holding at most ``max_keys`` buckets."""

    def __init__(self, rate: float, burst: int, max_keys: int = MAX_CLIENTS, clock=time.monotonic):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take a token for ``key``: 0.0 when granted, else the seconds until one is available."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.pop(key, None)
            if bucket is None:
                bucket = _Bucket(float(self.burst), now)
            else:
                bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
                bucket.updated = now
            self._buckets[key] = bucket  # most recently used last
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate


def init_app(app: Flask) -> None:
    """Limit the search endpoints of ``app`` (see the module doc). Raises ValueError for a
    malformed setting."""
    settings = app.config.get("MSEARCH_CONFIG")
    rate_text = app.config.get("RATELIMIT_SEARCH")
    if rate_text is None:
        rate_text = getattr(settings, "search_rate_limit", None) or ("off" if app.testing else DEFAULT_RATE)
    rate = parse_rate(str(rate_text))
    burst = int(app.config.get("RATELIMIT_BURST") or getattr(settings, "search_rate_burst", None) or DEFAULT_BURST)
    proxies = int(app.config.get("RATELIMIT_TRUSTED_PROXIES") or getattr(settings, "trusted_proxies", None) or 0)
    if proxies < 0:
        raise ValueError("MSEARCH_TRUSTED_PROXIES must be 0 or more")
    app.config.setdefault("RATELIMIT_PATHS", DEFAULT_PATHS)
    first_time = _EXTENSION not in app.extensions
    app.extensions[_EXTENSION] = {"buckets": TokenBuckets(rate, burst) if rate else None, "proxies": proxies}
    if first_time:  # calling again re-reads the settings without counting requests twice
        app.before_request(_check_rate)


def client_address(trusted_proxies: int) -> str:
    """The client's IP: the socket peer, or with ``trusted_proxies`` proxies in front, the address
    the outermost trusted proxy saw (entries further left are the client's to forge)."""
    if trusted_proxies:
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        if len(hops) >= trusted_proxies:
            return hops[-trusted_proxies]
    return request.remote_addr or "-"


def _check_rate():
    state = current_app.extensions[_EXTENSION]
    buckets: Optional[TokenBuckets] = state["buckets"]
    path = request.path
    if buckets is None or not (path.startswith(tuple(current_app.config["RATELIMIT_PATHS"]))
                               or path.endswith(SEARCH_SUFFIXES)):
        return None
    wait = buckets.take(client_address(state["proxies"]))
    if not wait:
        return None
    from .errors import render_error

    seconds = max(1, math.ceil(wait))
    per_minute = buckets.rate * 60
    response = make_response(render_error(
        f"Too many searches from your address: at most {per_minute:g} per minute (bursts of {buckets.burst}). "
        f"Try again in {seconds} s.", 429, "Too many requests"))
    response.headers["Retry-After"] = str(seconds)
    return response
