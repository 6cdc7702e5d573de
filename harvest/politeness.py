"""Being a good guest on other people's servers: per-host concurrency and request rate, backoff
with jitter between retries, ``Retry-After`` (which then holds back every request to that host,
not only the one that was told to wait), and no more requests to a host that has stopped
answering, but a probe now and then (:mod:`manuscripts_search.host_health`).
"""
from __future__ import annotations

import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Iterator, Optional

from manuscripts_search.host_health import DOWN, PROBE, HealthPolicy, HostDown, HostHealth, Lease


@dataclass(frozen=True)
class PolitenessPolicy:
    """How hard the harvester may hit one host. ``requests_per_second`` 0 means no rate limit."""

    max_per_host: int = 8
    requests_per_second: float = 0.0
    backoff_base: float = 0.5  # seconds before the first retry; doubles per attempt
    backoff_max: float = 30.0
    max_retry_after: float = 120.0  # a longer Retry-After is not waited for: the request fails
    health: HealthPolicy = HealthPolicy()  # when a host that does not answer counts as down

    def __post_init__(self) -> None:
        if self.max_per_host < 1:
            raise ValueError(f"max_per_host must be at least 1, got {self.max_per_host}")
        if self.requests_per_second < 0:
            raise ValueError(f"requests_per_second must be >= 0, got {self.requests_per_second}")


def backoff_delay(attempt: int, base: float, maximum: float, rng: random.Random = random) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): exponential, capped, with "full
    jitter" so that many clients failing together do not retry in lockstep."""
    ceiling = min(maximum, base * (2 ** attempt))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent
    or unreadable. A date in the past means 0."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


class _HostState:
    def __init__(self, max_concurrent: int):
        self.slots = threading.BoundedSemaphore(max_concurrent)
        self.next_start = 0.0  # monotonic time before which no request may start


class HostLimiter:
    """Per-host slots (concurrency), spacing (rate) and health, shared by every thread of a
    harvest."""

    def __init__(self, policy: PolitenessPolicy):
        self.policy = policy
        self._interval = 1.0 / policy.requests_per_second if policy.requests_per_second else 0.0
        self._lock = threading.Lock()
        self._hosts: dict[str, _HostState] = {}
        self._health = HostHealth(policy.health)

    def _state(self, host: str) -> _HostState:
        with self._lock:
            state = self._hosts.get(host)
            if state is None:
                state = self._hosts[host] = _HostState(self.policy.max_per_host)
            return state

    @contextmanager
    def slot(self, host: str) -> Iterator[Lease]:
        """Hold one of ``host``'s slots for the duration of a request, starting it no earlier than
        the rate limit and any Retry-After allow; the block sets the lease's ``answered``.
        Raises HostDown, without waiting for a slot, when the host is down and no probe is due."""
        state = self._state(host)
        self._refuse_if_down(host)
        state.slots.acquire()
        lease = Lease(host)
        try:
            while True:
                with self._lock:
                    now = time.monotonic()
                    wait = state.next_start - now
                    if wait <= 0:
                        # Checked again here: the requests holding the slots may have found it down.
                        admission = self._health.admit(host, now)
                        if admission == DOWN:
                            raise HostDown(host, self._health.failures(host))
                        lease.probe = admission == PROBE
                        state.next_start = now + self._interval
                        break
                time.sleep(min(wait, 1.0))  # re-check: a Retry-After may have pushed it further
            yield lease
        finally:
            if lease.answered is not None:
                with self._lock:
                    self._health.record(host, lease.answered, time.monotonic())
            state.slots.release()

    def _refuse_if_down(self, host: str) -> None:
        with self._lock:
            if self._health.blocked(host, time.monotonic()):
                raise HostDown(host, self._health.failures(host))

    def is_down(self, host: str) -> bool:
        with self._lock:
            return self._health.is_down(host)

    def defer(self, host: str, seconds: float) -> None:
        """Start no request to ``host`` for ``seconds`` (the server asked us to wait)."""
        state = self._state(host)
        with self._lock:
            state.next_start = max(state.next_start, time.monotonic() + seconds)
