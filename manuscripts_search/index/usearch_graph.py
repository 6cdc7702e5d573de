"""The ``hnsw-f16`` and ``hnsw-i8`` layouts: a usearch HNSW graph holding float16 or 8-bit vectors.

Half (or a third) of hnswlib's bytes per vector, and the file opens as a read-only
memory-mapped view: every web worker maps the same pages, so four workers cost about what one
does, and opening takes milliseconds instead of reading the whole graph. Writers (``msearch
index``) open it ``writable``, which loads it whole; usearch cannot add to a view (it crashes the
process), so a view refuses writes here.

usearch has no filter inside the graph search; an ``allowed`` query over-fetches, doubling the
request up to the whole index, and then scans exhaustively (``exact``), so it still finds ``k``
allowed vectors whenever they exist.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from .vector_index import (IndexParams, IndexReadError, VectorIndex, check_batch, check_query, generation_path,
                           index_paths, keep_allowed, next_generation)

SUFFIX = "usearch"


class _UsearchIndex(VectorIndex):
    dtype = ""

    def __init__(self, space: str, dim: int, params: IndexParams = IndexParams(), capacity: int = 1024):
        from usearch.index import Index

        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.space, self.dim, self.params = space, int(dim), params
        self._index = Index(ndim=self.dim, metric="cos", dtype=self.dtype, connectivity=params.M,
                            expansion_add=params.ef_construction, expansion_search=params.ef_search)
        self._writable = True
        self._live_cache: Optional[np.ndarray] = None
        self._threads = 1  # one query is one thread (a web worker answers many at once)

    # -- contents ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, label: int) -> bool:
        return int(label) >= 0 and bool(self._index.contains(int(label)))

    @property
    def element_count(self) -> int:
        return len(self._index)  # usearch frees a removed vector's slot for reuse

    @property
    def deleted_count(self) -> int:
        return 0

    def live_label_array(self) -> np.ndarray:
        if self._live_cache is None:
            self._live_cache = np.sort(np.asarray(self._index.keys, dtype=np.int64))
        return self._live_cache

    def _require_writable(self) -> None:
        if not self._writable:
            raise RuntimeError(f"the index of {self.space} is a read-only memory-mapped view; "
                               "open it with writable=True to change it")

    def add(self, labels: Iterable[int], vectors: np.ndarray) -> None:
        labels, vectors = check_batch(labels, vectors, self.dim)
        if len(labels) == 0:
            return
        self._require_writable()
        if (labels < 0).any():
            raise ValueError("labels must not be negative")
        keys = labels.astype(np.uint64)
        present = np.asarray(self._index.contains(keys), dtype=bool)
        if present.any():
            self._index.remove(keys[present])  # a replacement: the new vector wins
        self._live_cache = None
        self._index.add(keys, vectors, threads=0)  # a batch: every core

    def remove(self, labels: Iterable[int]) -> int:
        keys = np.asarray([int(label) for label in labels if int(label) >= 0], dtype=np.uint64)
        if len(keys) == 0:
            return 0
        keys = np.unique(keys)
        present = keys[np.asarray(self._index.contains(keys), dtype=bool)]
        if len(present) == 0:
            return 0
        self._require_writable()
        self._live_cache = None
        self._index.remove(present)
        return len(present)

    def query(self, vector: np.ndarray, k: int, ef: Optional[int] = None,
              allowed: Optional[np.ndarray] = None) -> list[tuple[int, float]]:
        live = len(self)
        if live == 0 or k <= 0:
            return []
        vector = check_query(vector, self.dim)[0]
        k = min(int(k), live)
        self._index.expansion_search = max(int(ef or self.params.ef_search), k)
        if allowed is None:
            # Asked for everything: a graph search need not reach every node, a scan does.
            return self._hits(self._index.search(vector, k, exact=k >= live, threads=self._threads))
        allowed = np.asarray(allowed, dtype=np.int64)
        wanted = min(k, len(allowed))
        request = min(live, max(4 * k, 64))
        while True:
            found = keep_allowed(self._hits(self._index.search(vector, request, threads=self._threads)), allowed)
            if len(found) >= wanted or request >= live:
                break
            request = min(live, request * 4)
            self._index.expansion_search = max(self._index.expansion_search, request)
        if len(found) < wanted:
            # The graph search may not reach every node; an exhaustive scan does.
            found = keep_allowed(self._hits(self._index.search(vector, live, exact=True, threads=self._threads)),
                               allowed)
        return found[:k]

    @staticmethod
    def _hits(matches) -> list[tuple[int, float]]:
        return [(int(key), float(1.0 - distance)) for key, distance in zip(matches.keys, matches.distances)]

    def stored_vectors(self, labels: np.ndarray) -> np.ndarray:
        rows = np.full((len(labels), self.dim), np.nan, dtype=np.float32)
        if len(labels) == 0:
            return rows
        found = self._index.get(np.asarray(labels, dtype=np.uint64), dtype=np.float32)
        for row, vector in enumerate(found):
            if vector is not None:
                vector = np.asarray(vector, dtype=np.float32).reshape(-1)
                # 8-bit storage scales vectors; cosine comparisons need only the direction.
                rows[row] = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return rows

    def set_query_threads(self, threads: int) -> None:
        self._threads = int(threads)

    # -- persistence ---------------------------------------------------------------------------
    def metadata(self) -> dict:
        return {**super().metadata(), "dtype": self.dtype}

    def file_paths(self, directory: Path) -> list[Path]:
        paths = [index_paths(directory, self.space)[1]]
        if getattr(self, "_generation", None):
            paths.append(generation_path(directory, self.space, self._generation, SUFFIX))
        return paths

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._require_writable()
        generation = next_generation(directory, self.space)
        path = generation_path(directory, self.space, generation, SUFFIX)
        self._index.save(str(path))
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())
        self._generation = generation
        return self._commit_generation(directory, {**self.metadata(), "generation": generation}, [SUFFIX])

    @classmethod
    def open(cls, directory: Path, space: str, meta: dict, params: IndexParams, writable: bool):
        from usearch.index import Index

        dim = int(meta["dim"])
        if meta.get("dtype", cls.dtype) != cls.dtype:
            raise IndexReadError(f"the index metadata of {space} says {meta.get('dtype')!r} vectors, "
                                 f"not {cls.dtype}; run `msearch index rebuild`")
        try:
            generation = int(meta["generation"])
        except (KeyError, TypeError, ValueError) as error:
            raise IndexReadError(f"the index metadata of {space} names no data file ({error}); "
                                 "run `msearch index rebuild`") from error
        path = generation_path(directory, space, generation, SUFFIX)
        try:
            index = Index.restore(str(path), view=not writable)
        except (RuntimeError, ValueError, OSError) as error:
            raise IndexReadError(f"the index file {path} cannot be read ({error}); "
                                 "run `msearch index rebuild`") from error
        if index is None or index.ndim != dim:
            found = "nothing" if index is None else f"{index.ndim}-d vectors"
            raise IndexReadError(f"the index file {path} holds {found} but its metadata says {dim}-d; "
                                 "run `msearch index rebuild`")
        self = cls.__new__(cls)
        self.space, self.dim, self.params = space, dim, params
        self._index = index
        self._index.expansion_search = params.ef_search
        self._writable = writable
        self._live_cache = None
        self._threads = 1  # one query is one thread (a web worker answers many at once)
        self._generation = generation
        return self


class UsearchF16Index(_UsearchIndex):
    layout = "hnsw-f16"
    dtype = "f16"


class UsearchI8Index(_UsearchIndex):
    layout = "hnsw-i8"
    verify_cosine = 0.99
    dtype = "i8"
