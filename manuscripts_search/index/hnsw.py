"""The ``hnsw`` layout: hnswlib, float32 vectors in the graph, loaded whole into each process.

Exact-quality recall (the default for small spaces), ~3.3 KB per 768-d vector, and no sharing
between processes: hnswlib 0.8 has neither float16 storage nor memory mapping (the other layouts
of :mod:`.vector_index` have).

Files: ``<base>.hnsw`` (the graph and float32 vectors, hnswlib's own format) and ``<base>.json``.
Each is replaced atomically (write a temporary file, fsync, rename, fsync the directory), the
graph first, so a crash during save leaves the previous index or the new one, never a torn file.
Between the two renames a reader can see a new graph with the previous metadata: that is safe,
because hnswlib keeps deletion marks inside the graph file itself, and the metadata's deleted
labels are re-applied at load, so a deleted vector is never returned either way.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from .vector_index import (IndexParams, IndexReadError, VectorIndex, atomic_write, check_batch, check_query,
                           fsync_directory, index_basename, index_paths)

class HnswIndex(VectorIndex):
    """An hnswlib index of one space whose labels are database row ids."""

    layout = "hnsw"

    def __init__(self, space: str, dim: int, params: IndexParams = IndexParams(), capacity: int = 1024):
        import hnswlib

        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.space = space
        self.dim = int(dim)
        self.params = params
        self._index = hnswlib.Index(space="cosine", dim=self.dim)
        self._index.init_index(max_elements=max(int(capacity), 16), M=params.M,
                               ef_construction=params.ef_construction, allow_replace_deleted=False)
        self._index.set_ef(params.ef_search)
        self._deleted: set[int] = set()
        self._live_cache: Optional[np.ndarray] = None

    # -- contents ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._index.get_current_count() - len(self._deleted)

    def __contains__(self, label: int) -> bool:
        return int(label) not in self._deleted and int(label) in self._all_labels()

    @property
    def element_count(self) -> int:
        """Vectors stored, deleted ones included (they occupy memory until a rebuild)."""
        return self._index.get_current_count()

    @property
    def deleted_count(self) -> int:
        return len(self._deleted)

    def _all_labels(self) -> set[int]:
        return set(int(i) for i in self._index.get_ids_list())

    def labels(self) -> set[int]:
        """Labels that queries can return."""
        return self._all_labels() - self._deleted

    def live_label_array(self) -> np.ndarray:
        """Labels that queries can return, sorted (cached until the next add or remove)."""
        if self._live_cache is None:
            labels = np.asarray(self._index.get_ids_list(), dtype=np.int64)
            if self._deleted:
                labels = labels[~np.isin(labels, np.fromiter(self._deleted, dtype=np.int64))]
            self._live_cache = np.sort(labels)
        return self._live_cache

    def add(self, labels: Iterable[int], vectors: np.ndarray, num_threads: int = -1) -> None:
        """Add (or replace) vectors; capacity grows as needed (see :meth:`VectorIndex.add`)."""
        labels, vectors = check_batch(labels, vectors, self.dim)
        if len(labels) == 0:
            return
        needed = self._index.get_current_count() + len(labels)
        if needed > self._index.get_max_elements():
            # Grow geometrically so that incremental adds stay amortised O(1) in resizes.
            self._index.resize_index(max(needed, 2 * self._index.get_max_elements()))
        self._live_cache = None
        revived = [int(label) for label in labels if int(label) in self._deleted]
        for label in revived:
            self._index.unmark_deleted(label)
            self._deleted.discard(label)
        self._index.add_items(vectors, labels, num_threads=num_threads, replace_deleted=False)

    def remove(self, labels: Iterable[int]) -> int:
        """Mark ``labels`` deleted so that no query returns them; unknown labels are ignored.
        Returns how many were removed."""
        present = self._all_labels()
        self._live_cache = None
        removed = 0
        for label in labels:
            label = int(label)
            if label in present and label not in self._deleted:
                try:
                    self._index.mark_deleted(label)
                except RuntimeError:
                    pass  # already marked in the graph file (a save interrupted between renames)
                self._deleted.add(label)
                removed += 1
        return removed

    def query(self, vector: np.ndarray, k: int, ef: Optional[int] = None,
              allowed: Optional[np.ndarray] = None) -> list[tuple[int, float]]:
        """See :meth:`VectorIndex.query`; ``allowed`` becomes hnswlib's filter callback, which calls
        back into Python for every node the search visits (slow: :mod:`..search.knn` prefers
        other strategies)."""
        live = len(self)
        if live == 0 or k <= 0:
            return []
        k = min(int(k), live)
        vector = check_query(vector, self.dim)
        filter_fn = set(np.asarray(allowed).tolist()).__contains__ if allowed is not None else None
        ef = max(int(ef or self.params.ef_search), k)
        while True:
            self._index.set_ef(ef)
            try:
                labels, distances = self._index.knn_query(
                    vector, k=k, filter=filter_fn, num_threads=1 if filter_fn else -1)
                break
            except RuntimeError:
                # hnswlib raises when it found fewer than k (deletions, filters): ask for fewer.
                if k == 1:
                    return []
                k = max(1, k // 2)
        return [(int(label), float(1.0 - dist)) for label, dist in zip(labels[0], distances[0])]

    def stored_vectors(self, labels: np.ndarray) -> np.ndarray:
        rows = np.full((len(labels), self.dim), np.nan, dtype=np.float32)
        for row, label in enumerate(np.asarray(labels).tolist()):
            if label in self._deleted:
                continue
            try:
                rows[row] = np.asarray(self._index.get_items([int(label)]), dtype=np.float32)[0]
            except RuntimeError:  # unknown, or marked deleted in the graph although listed as live
                continue
        return rows

    def set_query_threads(self, threads: int) -> None:
        self._index.set_num_threads(int(threads))

    # -- persistence ------------------------------------------------------------------------
    def metadata(self) -> dict:
        return {**super().metadata(), "deleted": sorted(self._deleted)}

    def file_paths(self, directory: Path) -> list[Path]:
        return list(index_paths(directory, self.space))

    def save(self, directory: Path) -> Path:
        """Write the index atomically into ``directory``; returns the graph file's path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        graph_path, meta_path = index_paths(directory, self.space)
        atomic_write(graph_path, self._index.save_index)
        meta = json.dumps(self.metadata())
        atomic_write(meta_path, lambda path: Path(path).write_text(meta))
        fsync_directory(directory)
        for path in Path(directory).glob(f"{index_basename(self.space)}.g*.*"):
            path.unlink(missing_ok=True)  # files of another layout this index replaced
        return graph_path

    @classmethod
    def open(cls, directory: Path, space: str, meta: dict, params: IndexParams,
             writable: bool) -> "HnswIndex":
        """Load the graph whole (hnswlib cannot map it); ``writable`` makes no difference."""
        import hnswlib

        graph_path, _meta_path = index_paths(directory, space)
        dim = int(meta["dim"])
        try:
            deleted = [int(label) for label in meta.get("deleted", [])]
        except (TypeError, ValueError) as error:
            raise IndexReadError(f"the index metadata of {space} lists bad deleted labels ({error}); "
                                 "run `msearch index rebuild`") from error
        self = cls.__new__(cls)
        self.space, self.dim, self.params = space, dim, params
        self._index = hnswlib.Index(space="cosine", dim=dim)
        try:
            self._index.load_index(str(graph_path), allow_replace_deleted=False)
        except (RuntimeError, MemoryError, ValueError) as error:
            raise IndexReadError(f"the index file {graph_path} cannot be read ({error}); "
                                 "run `msearch index rebuild`") from error
        if self._index.dim != dim:
            raise IndexReadError(f"the index file {graph_path} holds {self._index.dim}-d vectors but its "
                                 f"metadata says {dim}; run `msearch index rebuild`")
        self._index.set_ef(params.ef_search)
        self._deleted = set()
        self._live_cache = None
        if deleted:
            # Re-apply so that a graph saved before its metadata (interrupted save) hides them too.
            self.remove(deleted)
        return self
