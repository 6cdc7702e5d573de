"""A harvester ``Fetcher`` for tasks of a Ray job: built in the task's own process from plain,
picklable settings, with per-host limits kept cluster-wide by the job's limits actor
(:mod:`manuscripts_search.distributed.host_limits`) instead of per process."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from manuscripts_search.host_health import HealthPolicy
from manuscripts_search.netguard import NetworkPolicy

from .http import Fetcher
from .politeness import PolitenessPolicy


@dataclass(frozen=True)
class FetcherSettings:
    """Everything a task needs to build its Fetcher; the limits hold for the whole cluster."""

    user_agent: str
    timeout: float = 30.0
    max_bytes: int = 64 * 1024 * 1024
    retries: int = 3
    max_per_host: int = 8  # requests in flight to one host, over every process of the job
    requests_per_second: float = 0.0  # per host, over every process of the job (0: no limit)
    network_policy: Optional[NetworkPolicy] = None  # None: from the task's environment
    health: HealthPolicy = HealthPolicy()  # when a host counts as down, for the whole job

    @classmethod
    def from_config(cls, config, **knobs) -> "FetcherSettings":
        """Settings from a :class:`manuscripts_search.config.Config`, with the command's knobs
        (any field, ``timeout`` included) taking precedence."""
        values = {"user_agent": config.user_agent, "timeout": config.http_timeout,
                  "max_bytes": config.max_response_bytes, "network_policy": config.network_policy}
        return cls(**{**values, **knobs})

    def policy(self) -> PolitenessPolicy:
        return PolitenessPolicy(max_per_host=self.max_per_host, requests_per_second=self.requests_per_second,
                                health=self.health)


def cluster_fetcher(settings: FetcherSettings, limiter: Optional[Any] = None) -> Fetcher:
    """A Fetcher following ``settings``; with ``limiter`` (a ClusterHostLimiter) its per-host
    slots and rates are the cluster's, not this process's."""
    fetcher = Fetcher(settings.user_agent, timeout=settings.timeout, max_bytes=settings.max_bytes,
                      retries=settings.retries, policy=settings.policy(), network_policy=settings.network_policy)
    if limiter is not None:
        fetcher.limiter = limiter  # the Fetcher only calls slot(host), defer(host, seconds) and is_down(host)
    return fetcher
