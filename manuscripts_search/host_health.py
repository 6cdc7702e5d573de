"""Giving up, for the rest of a run, on a host that keeps failing to answer.

A host whose requests fail to connect or time out ``down_after`` times in a row (no answer from
it in between, to any request) is *down*: its requests are not sent but deferred (recorded so
that a later run tries them again), except one probe now and then, at growing intervals
(``probe_after``, doubling up to ``probe_max``); an answer to a probe brings the host back. Any
HTTP answer, a 503 included, counts as an answer: a host that answers is slow or broken, not
down, and the retry and Retry-After rules deal with it.

:class:`HostHealth` is the bookkeeping only, without locks or a clock (callers pass the time):
the harvester's :class:`harvest.politeness.HostLimiter` (one process) and the cluster-wide
limits actor (:mod:`manuscripts_search.distributed.host_limits`, a Ray job) each keep one, so a
host is down for every thread of a run, or every task of a job, at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# What a request to a host may do now.
GO, PROBE, DOWN = "go", "probe", "down"


@dataclass(frozen=True)
class HealthPolicy:
    """``down_after`` 0 never marks a host down."""

    down_after: int = 5  # more than one request's retries (4 attempts by default) in a row
    probe_after: float = 10.0  # seconds from marking a host down to its first probe
    probe_max: float = 300.0  # the longest interval between probes

    def __post_init__(self) -> None:
        if self.down_after < 0:
            raise ValueError(f"down_after must be >= 0, got {self.down_after}")
        if self.probe_after <= 0 or self.probe_max < self.probe_after:
            raise ValueError(f"probe intervals must be positive and probe_max >= probe_after, "
                             f"got {self.probe_after} and {self.probe_max}")


class HostDown(Exception):
    """A request to a host that is down was not sent (it is deferred)."""

    def __init__(self, host: str, failures: Optional[int] = None):
        told = f"{failures} requests in a row" if failures else "several requests in a row"
        super().__init__(f"host down: {host} did not answer {told}; deferred to a later run")
        self.host = host
        self.failures = failures


@dataclass
class Lease:
    """One request's hold on a host, as a host limiter's ``slot(host)`` hands it out: whether the
    request is the probe of a host that is down, and what it learnt (``answered``: True for any
    HTTP answer, False for a connection failure or timeout, None when it says nothing of the
    host), recorded when the slot is given back."""

    host: str
    probe: bool = False
    answered: Optional[bool] = None


@dataclass
class _Health:
    failures: int = 0  # connection failures and timeouts in a row
    down_since: Optional[float] = None
    next_probe: float = 0.0
    interval: float = 0.0


class HostHealth:
    """Per-host health: :meth:`admit` before a request starts, :meth:`record` once it is known
    whether the host answered."""

    def __init__(self, policy: HealthPolicy = HealthPolicy()):
        self.policy = policy
        self._hosts: dict[str, _Health] = {}

    def blocked(self, host: str, now: float) -> bool:
        """Whether a request to ``host`` would be refused now (down, no probe due); no effect."""
        state = self._hosts.get(host)
        return state is not None and state.down_since is not None and now < state.next_probe

    def admit(self, host: str, now: float) -> str:
        """GO (up), PROBE (down, and this request is its probe: the next one is due after twice
        the interval) or DOWN (refuse the request)."""
        state = self._hosts.get(host)
        if state is None or state.down_since is None:
            return GO
        if now < state.next_probe:
            return DOWN
        state.interval = min(self.policy.probe_max, state.interval * 2)
        state.next_probe = now + state.interval
        return PROBE

    def record(self, host: str, answered: bool, now: float) -> None:
        """A request to ``host`` got an answer (any HTTP status) or failed to connect/timed out."""
        if answered:
            self._hosts.pop(host, None)  # back up, or never down: forget its failures
            return
        state = self._hosts.setdefault(host, _Health())
        state.failures += 1
        if state.down_since is None and self.policy.down_after and state.failures >= self.policy.down_after:
            state.down_since = now
            state.interval = self.policy.probe_after
            state.next_probe = now + self.policy.probe_after

    def failures(self, host: str) -> int:
        state = self._hosts.get(host)
        return state.failures if state is not None else 0

    def is_down(self, host: str) -> bool:
        state = self._hosts.get(host)
        return state is not None and state.down_since is not None

    def down_hosts(self) -> list[str]:
        return sorted(host for host, state in self._hosts.items() if state.down_since is not None)
