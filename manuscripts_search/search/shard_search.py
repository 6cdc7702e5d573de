"""k-NN over a space split into shards: every shard answers its own top k, the answers are merged
exactly by score, and shards that do not answer in time are named, so the page can say it is partial.

One path whatever serves the shards. :func:`search_shard` is what a shard runs — in this process
(:class:`LocalShards`) or in a Ray Serve replica (:mod:`..distributed.ray_search`) — and
:func:`merge_answers` what the caller does with the answers. A filter is pushed down: a shard in
another process receives the filter itself and reads its allowed labels from the database (a
million ids never travel); in this process the allowed labels are read once and split by shard.

The merge is exact: the global top k is inside the union of each shard's top k (a canvas's
vectors all live in one shard), and ties are broken by label as in one index, so exact layouts
give the single index's top k, label for label.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Protocol

import numpy as np
from sqlalchemy import Select
from sqlalchemy.orm import Session

from ..index.live import LiveIndex
from ..index.shards import ShardPart, all_parts, shard_numbers
from ..index.sync import label_canvas_pairs, load_vectors
from ..index.vector_index import IndexParams, IndexReadError, VectorIndex
from .filters import SearchFilters, canvas_filter_statement
from .knn import KnnResult, knn

log = logging.getLogger(__name__)

DEFAULT_DEADLINE_S = 2.0  # a shard that has not answered by then is left out, and the page says so


@dataclass(frozen=True)
class ShardRequest:
    """What each shard is asked (picklable: it travels to Ray replicas)."""

    vector: np.ndarray
    k: int
    ef: Optional[int] = None
    filters: Optional[SearchFilters] = None  # pushed down: the shard reads its allowed labels
    strategy: Optional[str] = None
    # This shard's allowed labels, for a scope no filter can express (a Content Search canvas set);
    # such scopes are small, so the ids travel.
    allowed: Optional[np.ndarray] = None


@dataclass
class ShardAnswer:
    shard: int  # 1-based
    hits: list[tuple[int, float]] = field(default_factory=list)
    strategy: Optional[str] = None
    ef: Optional[int] = None
    error: Optional[str] = None  # set when the shard could not answer
    took_ms: Optional[float] = None  # time spent in the shard (the rest of a call is transport)


@dataclass(frozen=True)
class ShardStats:
    vectors: int
    elements: int
    dim: int
    params: IndexParams
    layout: str


def allowed_with_canvases(session: Session, space: str, filters: Optional[SearchFilters] = None,
                          canvas_filter: Optional[Select] = None) -> tuple[np.ndarray, np.ndarray]:
    """(labels, their canvas ids) of live vectors of ``space`` on canvases ``canvas_filter`` (or
    else ``filters``) allows."""
    if canvas_filter is None:
        canvas_filter = canvas_filter_statement(session, filters)
    return label_canvas_pairs(session, space, canvas_filter)


def search_shard(session: Session, index: Optional[VectorIndex], space: str, part: ShardPart,
                 request: ShardRequest) -> ShardAnswer:
    """One shard's top ``request.k``: among ``request.allowed`` when the caller read them,
    otherwise a request with filters reads its allowed labels from ``session``."""
    started = time.perf_counter()
    if index is None:
        return ShardAnswer(part.number + 1, error="no index saved for this shard")
    allowed = request.allowed
    if request.filters is not None and request.filters.active and allowed is None:
        labels, canvases = allowed_with_canvases(session, space, request.filters)
        allowed = labels[part.holds(canvases)]
    if len(index) == 0 and (allowed is None or len(allowed) == 0):
        return ShardAnswer(part.number + 1, [], "plain")
    result = knn(index, request.vector, request.k, allowed=allowed, ef=request.ef, strategy=request.strategy,
                 vectors_of=lambda labels: load_vectors(session, space, labels, index.dim))
    return ShardAnswer(part.number + 1, result.hits, result.strategy, result.ef,
                       took_ms=(time.perf_counter() - started) * 1000)


def merge_answers(answers: list[ShardAnswer], k: int) -> KnnResult:
    """The top ``k`` of the shards' answers by score (ties by label, as :mod:`.knn` orders them);
    shards with an error are listed as unavailable."""
    hits = [hit for answer in answers if answer.error is None for hit in answer.hits]
    hits.sort(key=lambda hit: (-round(hit[1], 6), hit[0]))
    strategies = sorted({answer.strategy for answer in answers if answer.error is None and answer.strategy})
    efs = [answer.ef for answer in answers if answer.ef is not None]
    return KnnResult(hits[:k], "+".join(strategies) or "plain", max(efs) if efs else None,
                     unavailable=tuple(sorted(answer.shard for answer in answers if answer.error is not None)),
                     shard_ms=tuple(answer.took_ms for answer in answers if answer.took_ms is not None))


def split_allowed(session: Session, space: str, count: int, filters: Optional[SearchFilters] = None,
                  canvas_filter: Optional[Select] = None) -> list[np.ndarray]:
    """The allowed labels of each of ``count`` shards (read once, split by canvas)."""
    labels, canvases = allowed_with_canvases(session, space, filters, canvas_filter)
    owners = shard_numbers(canvases, count)
    return [labels[owners == number] for number in range(count)]


class ShardBackend(Protocol):
    count: int

    def search(self, request: ShardRequest, session: Optional[Session],
               canvas_filter: Optional[Select] = None) -> list[ShardAnswer]: ...

    def stats(self) -> list[Optional[ShardStats]]: ...


class LocalShards:
    """The shards of a space read from ``directory`` in this process, each reloaded on change."""

    def __init__(self, directory: Path, space: str, count: int, check_interval: float = 1.0,
                 ef_search: Optional[int] = None):
        self.space = space
        self.count = count
        self.parts = all_parts(count)
        self.live = [LiveIndex(directory, part.index_name(space), check_interval, ef_search) for part in self.parts]

    def _indexes(self) -> list[tuple[Optional[VectorIndex], Optional[str]]]:
        opened = []
        for live in self.live:
            try:
                opened.append((live.get(), None))
            except IndexReadError as error:
                opened.append((None, str(error)))
        return opened

    def search(self, request: ShardRequest, session: Optional[Session],
               canvas_filter: Optional[Select] = None) -> list[ShardAnswer]:
        indexes = self._indexes()
        split = None
        if canvas_filter is not None or (request.filters is not None and request.filters.active):
            split = split_allowed(session, self.space, self.count, request.filters, canvas_filter)
        answers = []
        for part, (index, error) in zip(self.parts, indexes):
            if error is not None:
                answers.append(ShardAnswer(part.number + 1, error=error))
                continue
            answers.append(search_shard(session, index, self.space, part,
                                        request if split is None else replace(request, allowed=split[part.number])))
        return answers

    def stats(self) -> list[Optional[ShardStats]]:
        return [None if index is None else ShardStats(len(index), index.element_count, index.dim, index.params,
                                                      index.layout)
                for index, _ in self._indexes()]


class ShardedIndex:
    """A space's shards seen as one index by the search engine: what :mod:`.signals` and
    :mod:`.calibration` read of an index (space, dimension, size, plain queries), and
    :meth:`nearest`, the filtered k-NN with exact merge and the unavailable shards."""

    layout = "sharded"

    def __init__(self, space: str, backend: ShardBackend, stats_interval: float = 1.0):
        self.space = space
        self.backend = backend  # it waits for the shards (RayShards holds the deadline)
        self.stats_interval = stats_interval
        self._stats: list[Optional[ShardStats]] = []
        self._stats_at = -float("inf")
        self._lock = threading.Lock()

    @property
    def shards(self) -> int:
        return self.backend.count

    def shard_stats(self) -> list[Optional[ShardStats]]:
        now = time.monotonic()
        with self._lock:
            if now - self._stats_at >= self.stats_interval or not any(self._stats):
                self._stats, self._stats_at = self.backend.stats(), now
            return self._stats

    def _first(self) -> ShardStats:
        known = [stats for stats in self.shard_stats() if stats is not None]
        if not known:
            raise IndexReadError(f"no shard of {self.space} can be read; run `msearch index`")
        return known[0]

    @property
    def dim(self) -> int:
        return self._first().dim

    @property
    def params(self) -> IndexParams:
        return self._first().params

    def __len__(self) -> int:
        return sum(stats.vectors for stats in self.shard_stats() if stats is not None)

    @property
    def known_vectors(self) -> int:
        """Vectors as last counted, asking no shard (for health probes)."""
        return sum(stats.vectors for stats in self._stats if stats is not None)

    @property
    def element_count(self) -> int:
        return sum(stats.elements for stats in self.shard_stats() if stats is not None)

    def query(self, vector: np.ndarray, k: int, ef: Optional[int] = None,
              allowed: Optional[np.ndarray] = None) -> list[tuple[int, float]]:
        """Unfiltered top ``k`` over every shard that answers (``allowed`` is not supported here:
        filters go through :meth:`nearest`)."""
        if allowed is not None:
            raise ValueError("a sharded index is filtered through nearest(), not query(allowed=...)")
        return self.nearest(None, vector, k, ef=ef).hits

    def nearest(self, session: Optional[Session], vector: np.ndarray, k: int,
                filters: Optional[SearchFilters] = None, ef: Optional[int] = None,
                strategy: Optional[str] = None, canvas_filter: Optional[Select] = None) -> KnnResult:
        """The ``k`` nearest labels among those ``filters`` allow, merged over the shards. A
        ``canvas_filter`` no :class:`SearchFilters` expresses (a canvas set) is read here and its
        labels sent to each shard; given both, ``filters`` are pushed down and ``canvas_filter``
        (made from them) is not used by shards in other processes."""
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        filters = filters if filters is not None and filters.active else None
        request = ShardRequest(vector, int(k), ef, filters, strategy)
        answers = self.backend.search(request, session, None if filters is not None else canvas_filter)
        result = merge_answers(answers, k)
        if result.unavailable:
            log.debug("shards %s of %s did not answer; the results are partial", list(result.unavailable),
                      self.space)
        return result
