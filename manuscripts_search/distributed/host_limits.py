"""Per-host politeness for a whole Ray job: one actor keeps every host's request slots and the
time before which its next request may not start, so that the limits one harvester process keeps
with :class:`harvest.politeness.HostLimiter` hold across all the processes and machines of the
cluster (eight tasks on four nodes still send at most ``max_per_host`` requests at once, and at
most ``requests_per_second``, to one institution), and so that a host that stops answering is
down for every task at once (:mod:`manuscripts_search.host_health`: its requests are deferred,
one probe now and then finds out when it is back).

:class:`ClusterHostLimiter` is the client. It has HostLimiter's interface (``slot(host)``,
``defer(host, seconds)``, ``is_down(host)``), so a harvester ``Fetcher`` uses it unchanged once it
is its ``limiter``. A slot is a lease: a process that dies while holding one loses it after
``lease_seconds``, so a crashed task can slow a host down for a while but never block it.
"""
from __future__ import annotations

import itertools
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Optional

from manuscripts_search.host_health import DOWN, GO, PROBE, HealthPolicy, HostDown, HostHealth, Lease

# How long a client waits before asking again when every slot of a host is taken.
FULL_POLL_SECONDS = 0.02
MAX_POLL_SECONDS = 0.25
DEFAULT_LEASE_SECONDS = 600.0  # longer than any request the Fetcher lets run (its total timeout)


@dataclass
class _Host:
    leases: dict[int, float] = field(default_factory=dict)  # slot token -> monotonic expiry
    next_start: float = 0.0  # monotonic time before which no request may start
    granted: int = 0
    clients: set = field(default_factory=set)  # processes that were granted a slot


class HostLimits:
    """The state behind the limits; runs as one Ray actor (:func:`start_host_limits`).

    Raises ValueError for a slot count below 1, a negative rate or a non-positive lease.
    """

    def __init__(self, max_per_host: int, requests_per_second: float = 0.0,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS, health: HealthPolicy = HealthPolicy()):
        if max_per_host < 1:
            raise ValueError(f"max_per_host must be at least 1, got {max_per_host}")
        if requests_per_second < 0:
            raise ValueError(f"requests_per_second must be >= 0, got {requests_per_second}")
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        self.max_per_host = max_per_host
        self.interval = 1.0 / requests_per_second if requests_per_second else 0.0
        self.lease_seconds = lease_seconds
        self._hosts: dict[str, _Host] = {}
        self._tokens = itertools.count(1)
        self._health = HostHealth(health)

    def reserve(self, host: str, client: str = "") -> tuple[int, float, str]:
        """``(token, 0.0, GO or PROBE)`` when a request to ``host`` may start now (hand the token
        back with :meth:`release`; PROBE: the host is down and this request is its probe);
        ``(0, seconds, GO)`` to wait before asking again; ``(0, 0.0, DOWN)`` when the host is down
        and the request must not be sent. ``client`` names the asking process (for :meth:`stats`)."""
        now = time.monotonic()
        state = self._hosts.setdefault(host, _Host())
        for token in [token for token, expiry in state.leases.items() if expiry <= now]:
            del state.leases[token]  # its holder died (or hung past any timeout)
        if self._health.blocked(host, now):
            return 0, 0.0, DOWN
        if len(state.leases) >= self.max_per_host:
            return 0, FULL_POLL_SECONDS, GO
        if state.next_start > now:
            return 0, state.next_start - now, GO
        admission = self._health.admit(host, now)  # not blocked: GO, or PROBE when one is due
        token = next(self._tokens)
        state.leases[token] = now + self.lease_seconds
        state.next_start = now + self.interval
        state.granted += 1
        state.clients.add(client)
        return token, 0.0, admission

    def release(self, host: str, token: int, answered: Optional[bool] = None) -> None:
        """Give the slot back; ``answered`` says whether the host answered (any HTTP status: True)
        or failed to connect or timed out (False), None when the request says nothing of it."""
        state = self._hosts.get(host)
        if state is not None:
            state.leases.pop(token, None)
        if answered is not None:
            self._health.record(host, answered, time.monotonic())

    def is_down(self, host: str) -> bool:
        return self._health.is_down(host)

    def failures(self, host: str) -> int:
        return self._health.failures(host)

    def down_hosts(self) -> list[str]:
        return self._health.down_hosts()

    def defer(self, host: str, seconds: float) -> None:
        """Start no request to ``host`` for ``seconds`` (a server's Retry-After)."""
        state = self._hosts.setdefault(host, _Host())
        state.next_start = max(state.next_start, time.monotonic() + max(0.0, seconds))

    def stats(self) -> dict[str, dict[str, int]]:
        """Per host: requests granted so far, slots held now, processes that were granted one."""
        return {host: {"granted": state.granted, "in_flight": len(state.leases), "clients": len(state.clients)}
                for host, state in sorted(self._hosts.items())}


def start_host_limits(ray, max_per_host: int, requests_per_second: float = 0.0,
                      lease_seconds: float = DEFAULT_LEASE_SECONDS, health: HealthPolicy = HealthPolicy()):
    """Start the limits actor of one job; returns its handle. It takes no CPU (it only keeps
    counters), and is restarted if its node dies (limits, and hosts' health, then start afresh)."""
    HostLimits(max_per_host, requests_per_second, lease_seconds, health)  # check the values here, not in the actor
    actor_class = ray.remote(HostLimits)
    return actor_class.options(num_cpus=0, max_restarts=-1, max_task_retries=-1).remote(
        max_per_host, requests_per_second, lease_seconds, health)


class ClusterHostLimiter:
    """HostLimiter's interface over a :class:`HostLimits` actor; picklable, so every task of a
    job gets the same limits."""

    def __init__(self, actor):
        self.actor = actor

    @staticmethod
    def _client() -> str:
        import os
        import socket

        return f"{socket.gethostname()}:{os.getpid()}"

    @contextmanager
    def slot(self, host: str) -> Iterator[Lease]:
        """Hold one of ``host``'s cluster-wide slots while the block runs, starting no earlier
        than the host's rate and any Retry-After allow; the block sets the lease's ``answered``
        (see :class:`~manuscripts_search.host_health.Lease`). Raises HostDown when the host is down for the job."""
        import ray

        client = self._client()
        while True:
            token, wait, admission = ray.get(self.actor.reserve.remote(host, client))
            if token:
                break
            if admission == DOWN:
                raise HostDown(host, ray.get(self.actor.failures.remote(host)))
            time.sleep(min(max(wait, 0.001), MAX_POLL_SECONDS))
        lease = Lease(host, probe=admission == PROBE)
        try:
            yield lease
        finally:
            # No need to wait: calls from one caller stay in order.
            self.actor.release.remote(host, token, lease.answered)

    def defer(self, host: str, seconds: float) -> None:
        self.actor.defer.remote(host, seconds)

    def is_down(self, host: str) -> bool:
        import ray

        return ray.get(self.actor.is_down.remote(host))

    def down_hosts(self) -> list[str]:
        import ray

        return ray.get(self.actor.down_hosts.remote())

    def stats(self) -> dict[str, dict[str, int]]:
        import ray

        return ray.get(self.actor.stats.remote())
