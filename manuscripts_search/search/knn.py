"""Filtered k-NN that returns ``k`` results whenever ``k`` allowed vectors exist.

"Filter after top-k" starves: ask HNSW for 10 neighbours, keep the ones in the chosen manuscript,
and a selective filter leaves nothing. Three strategies, picked per query from how many vectors
the filter allows (bench/search.py measures each at 100k and 1M vectors):

- ``exact``: few allowed vectors → score all of them (exact; at 1M, 5,000 allowed: 2.6 ms);
- ``overfetch``: otherwise → ask the graph for ``3 k / fraction`` neighbours without a filter and
  keep the allowed ones, doubling the request until ``k`` are left (1M, 5% allowed: 4.8 ms,
  recall@10 0.989);
- ``filtered``: when over-fetching would need an ``ef`` beyond ``MAX_OVERFETCH`` → the layout's own
  filtered search (hnswlib's filter callback, faiss's ID selector inside the probed lists, usearch's
  widening over-fetch), widening ``ef`` until ``k`` are found. hnswlib calls back into Python for
  every node it visits, so it is the slowest (1M, 0.5% allowed: 139 ms) and only used where the
  others cannot go. Exact scoring is the last resort, so ``k`` is guaranteed on every layout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..index.vector_index import VectorIndex, in_sorted, keep_allowed

# Up to this many allowed vectors exact scoring is used. Measured from memory it wins up to
# ~20,000 at 1M; the search engine reads them from the database, which costs more per vector.
EXACT_LIMIT = 5000
# Over-fetch this many times k / fraction: the expected number of allowed items in the
# unfiltered top list is then 3k, which keeps recall near the unfiltered recall.
OVERFETCH_FACTOR = 3.0
# The largest unfiltered request (and ef) an over-fetch may make before giving up on it.
MAX_OVERFETCH = 16384
MAX_EF = 8192

VectorsOf = Callable[[np.ndarray], np.ndarray]  # labels -> (len, dim) float32, rows in that order


@dataclass
class KnnResult:
    hits: list[tuple[int, float]]  # (label, cosine similarity), best first
    strategy: str  # plain | exact | overfetch | filtered (sharded: each shard's, joined by "+")
    ef: Optional[int] = None
    unavailable: tuple[int, ...] = ()  # shards (1-based) that did not answer: the hits are partial
    shard_ms: tuple[float, ...] = ()  # time each answering shard spent on it (transport excluded)


def knn(index: VectorIndex, vector: np.ndarray, k: int, allowed: Optional[np.ndarray] = None,
        vectors_of: Optional[VectorsOf] = None, ef: Optional[int] = None,
        exact_limit: int = EXACT_LIMIT, strategy: Optional[str] = None) -> KnnResult:
    """The ``k`` nearest labels to ``vector`` among ``allowed`` (all when None).

    ``vectors_of`` fetches stored vectors by label for exact scoring; without it the exact
    strategy is unavailable and the graph search keeps widening instead. ``strategy`` forces one
    (for measurements). Ties are broken by label so that equal scores keep a stable order.
    """
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    if norm == 0 or not math.isfinite(norm):
        raise ValueError("the query vector is zero or not finite")
    vector = vector / norm
    ef = int(ef or index.params.ef_search)
    if allowed is None:
        return KnnResult(_stable(index.query(vector, k, ef=ef)), "plain", max(ef, k))
    allowed = np.asarray(allowed, dtype=np.int64)
    if len(allowed) > 1 and not bool(np.all(allowed[1:] > allowed[:-1])):
        allowed = np.unique(allowed)  # membership tests below need sorted, unique labels
    live = len(index)
    if len(allowed) == 0 or live == 0 or k <= 0:
        return KnnResult([], "exact")
    if strategy is None:
        request = min(k, len(allowed)) / min(1.0, len(allowed) / live) * OVERFETCH_FACTOR
        if vectors_of is not None and len(allowed) <= exact_limit:
            strategy = "exact"  # from the stored vectors: also finds ones not indexed yet
        elif request <= MAX_OVERFETCH:
            strategy = "overfetch"
        elif vectors_of is not None and len(allowed) <= 4 * exact_limit:
            strategy = "exact"  # still cheaper than a filter callback visiting most of the graph
        else:
            strategy = "filtered"
    if strategy == "filtered":
        # The graph can only find what it holds: allowed labels not (or no longer) in the index
        # would make the search widen in vain. (Over-fetching needs no such care, and skipping
        # it saves tens of milliseconds for filters allowing hundreds of thousands of labels.)
        allowed = allowed[in_sorted(allowed, index.live_label_array())]
        if len(allowed) == 0:
            return KnnResult([], "filtered")
    fraction = min(1.0, len(allowed) / live)
    if strategy == "exact":
        if vectors_of is None:
            raise ValueError("the exact strategy needs vectors_of")
        return KnnResult(_exact(vector, allowed, k, vectors_of), "exact")
    wanted = min(k, len(allowed))
    if strategy == "overfetch":
        request = max(wanted, math.ceil(wanted / fraction * OVERFETCH_FACTOR))
        while True:
            candidates = index.query(vector, request, ef=max(ef, request))
            found = keep_allowed(candidates, allowed)
            if len(found) >= wanted or len(candidates) < request or request >= live:
                break
            request = min(live, request * 2)
            if request > MAX_OVERFETCH:
                return _filtered(index, vector, k, wanted, allowed, vectors_of, ef)
        if len(found) >= wanted:
            return KnnResult(_stable(found)[:k], "overfetch", max(ef, request))
        if vectors_of is None:
            # Even the whole unfiltered list held too few (a graph search need not reach every
            # node): the layout's own filtered search is exhaustive when it has to be.
            return _filtered(index, vector, k, wanted, allowed, vectors_of, ef)
        return KnnResult(_exact(vector, allowed, k, vectors_of), "exact")
    if strategy != "filtered":
        raise ValueError(f"unknown strategy {strategy!r}")
    return _filtered(index, vector, k, wanted, allowed, vectors_of, ef)


def _filtered(index, vector, k, wanted, allowed, vectors_of, ef) -> KnnResult:
    ef = max(ef, wanted)
    while True:
        found = index.query(vector, wanted, ef=ef, allowed=allowed)
        if len(found) >= wanted:
            return KnnResult(_stable(found)[:k], "filtered", ef)
        if ef >= MAX_EF:
            break
        ef = min(MAX_EF, ef * 4)
    if vectors_of is not None:
        # The allowed vectors are scattered over parts of the graph the filter cut off.
        return KnnResult(_exact(vector, allowed, k, vectors_of), "exact")
    return KnnResult(_stable(found)[:k], "filtered", ef)


def _exact(vector: np.ndarray, allowed: np.ndarray, k: int, vectors_of: VectorsOf) -> list[tuple[int, float]]:
    scores = np.empty(len(allowed), dtype=np.float32)
    chunk = 50_000
    for start in range(0, len(allowed), chunk):
        block = np.asarray(vectors_of(allowed[start:start + chunk]), dtype=np.float32)
        # einsum, not BLAS: a BLAS call wakes its thread pool, which costs milliseconds on a busy host.
        scores[start:start + len(block)] = np.einsum("ij,j->i", block, vector)
    k = min(k, len(allowed))
    top = np.argpartition(-scores, k - 1)[:k] if k < len(allowed) else np.arange(len(allowed))
    order = sorted(top.tolist(), key=lambda i: (-float(scores[i]), int(allowed[i])))
    return [(int(allowed[i]), float(scores[i])) for i in order]


def _stable(hits: list[tuple[int, float]]) -> list[tuple[int, float]]:
    # Scores are rounded so that float noise between runs does not reorder equal vectors.
    return sorted(hits, key=lambda hit: (-round(hit[1], 6), hit[0]))
