"""Derivatives fetched by content hash from an HTTP store, for embedding workers on machines that
do not share the data directory.

The store is anything that serves the data dir's ``derivatives/`` tree over HTTP (a web server
over the folder, an object-store bucket synced from it): ``<base>/ab/cd/abcd…``. Files are named
by the SHA-256 of their bytes, so every download is verified, and a verified file is kept in the
worker's own derivative store, which the local decoding path then reads. Requests go through the
harvester's Fetcher, with the job's cluster-wide per-host limits.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from .cluster_fetch import FetcherSettings, cluster_fetcher
from .http import FetchError


@dataclass(frozen=True)
class HttpDerivatives:
    """An image source for :func:`manuscripts_search.distributed.ray_embed.embed_with_ray`."""

    base_url: str
    cache_dir: str  # this worker's derivative store (a local directory on each node)
    fetch: FetcherSettings
    limiter: Optional[Any] = None  # a ClusterHostLimiter shared by the job

    def for_cluster(self, ray) -> "HttpDerivatives":
        """This source with the job's cluster-wide host limits (started now unless given)."""
        if self.limiter is not None:
            return self
        from manuscripts_search.distributed.host_limits import ClusterHostLimiter, start_host_limits

        actor = start_host_limits(ray, self.fetch.max_per_host, self.fetch.requests_per_second,
                                  health=self.fetch.health)
        return replace(self, limiter=ClusterHostLimiter(actor))

    def url_for(self, sha256: str) -> str:
        return f"{self.base_url.rstrip('/')}/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def open(self, min_side: int):
        """A loader for the pipeline's preparation actors. It raises OSError when a derivative
        cannot be fetched and ValueError when the bytes are not what their name says."""
        from manuscripts_search.store.derivatives import DerivativeStore
        from manuscripts_search.embedding.image_loading import store_loader

        cache = DerivativeStore(Path(self.cache_dir))
        fetcher = cluster_fetcher(self.fetch, self.limiter)
        decode = store_loader(cache, min_side)

        def load(item):
            sha = item.derivative_sha256
            if not cache.has(sha):
                try:
                    body = fetcher.get(self.url_for(sha), expect="image").body
                except FetchError as error:
                    raise OSError(f"cannot fetch the derivative: {error}") from None
                if hashlib.sha256(body).hexdigest() != sha:
                    raise ValueError(f"the derivative served at {self.url_for(sha)} does not match its SHA-256")
                cache.put(body)
            return decode(item)

        return load
