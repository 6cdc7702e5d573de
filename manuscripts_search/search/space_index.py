"""The index a search reads for a space: one index, or its shards (searched in this process or on
Ray Serve), whichever the saved shard plan and ``MSEARCH_SEARCH_BACKEND`` say, followed as they
change: a re-shard is picked up by running readers within a check interval, like a new save."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Optional, Union

from ..index.live import LiveIndex
from ..index.shards import plan_signature, shard_count
from ..index.vector_index import VectorIndex
from .shard_search import DEFAULT_DEADLINE_S, LocalShards, ShardedIndex

SpaceIndex = Union[VectorIndex, ShardedIndex]
BACKENDS = ("local", "ray")


def open_space_index(directory: Path, space: str, backend: str = "local", ray_address: Optional[str] = None,
                     deadline_s: float = DEFAULT_DEADLINE_S) -> Optional[SpaceIndex]:
    """The index of ``space`` as it is saved now (None when there is none). Raises IndexReadError
    for files that cannot be read, RayUnavailableError when the Ray backend cannot be reached."""
    return LiveSpaceIndex(directory, space, backend=backend, ray_address=ray_address, deadline_s=deadline_s).get()


class LiveSpaceIndex:
    """A reader's handle on a space's index (see the module doc); ``get()`` is cheap when nothing
    changed: one ``stat`` of the plan per ``check_interval``, and the single index's or each
    shard's own check."""

    def __init__(self, directory: Path, space: str, check_interval: float = 1.0, backend: str = "local",
                 ray_address: Optional[str] = None, deadline_s: float = DEFAULT_DEADLINE_S,
                 ef_search: Optional[int] = None):
        if backend not in BACKENDS:
            raise ValueError(f"the search backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.directory = Path(directory)
        self.space = space
        self.check_interval = check_interval
        self.backend = backend
        self.ray_address = ray_address
        self.deadline_s = deadline_s
        self.ef_search = ef_search
        self._lock = threading.Lock()
        self._plan: Optional[tuple] = ("unread",)
        self._checked_at = -float("inf")
        self._single: Optional[LiveIndex] = None
        self._sharded: Optional[ShardedIndex] = None
        self.reshards = 0

    def get(self) -> Optional[SpaceIndex]:
        if self.backend == "ray":
            return self._ray_index()
        now = time.monotonic()
        with self._lock:
            if now - self._checked_at >= self.check_interval:
                self._checked_at = now
                signature = plan_signature(self.directory, self.space)
                if signature != self._plan:
                    self._follow_plan(signature)
            single, sharded = self._single, self._sharded
        return sharded if sharded is not None else single.get()

    def _follow_plan(self, signature: Optional[tuple]) -> None:
        count = shard_count(self.directory, self.space)
        if self._plan != ("unread",):
            self.reshards += 1
        self._plan = signature
        if count == 1:
            self._sharded = None
            if self._single is None:
                self._single = LiveIndex(self.directory, self.space, self.check_interval, self.ef_search)
        elif self._sharded is None or self._sharded.shards != count:
            # Opened before it is put in service: queries keep the old set until the new one is read.
            sharded = ShardedIndex(self.space, LocalShards(self.directory, self.space, count, self.check_interval,
                                                           self.ef_search), self.check_interval)
            sharded.shard_stats()
            self._sharded, self._single = sharded, None

    def _ray_index(self) -> ShardedIndex:
        with self._lock:
            if self._sharded is None:
                from ..distributed.ray_search import RayShards

                self._sharded = ShardedIndex(self.space, RayShards(self.space, self.ray_address, self.deadline_s),
                                             self.check_interval)
            return self._sharded

    @property
    def current(self) -> Optional[SpaceIndex]:
        """The index in service now, without checking the files (None before the first load)."""
        if self._sharded is not None:
            return self._sharded
        return self._single.current if self._single is not None else None

    @property
    def reloads(self) -> int:
        return self.reshards + (self._single.reloads if self._single is not None else 0) + (
            sum(live.reloads for live in self._sharded.backend.live)
            if self._sharded is not None and hasattr(self._sharded.backend, "live") else 0)
