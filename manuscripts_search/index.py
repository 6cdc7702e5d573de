"""Persistent HNSW index (hnswlib) of one embedding space.

Labels are ``embeddings.id``, so the index can always be checked against the database. Canvases
and regions of one model share one index: a text query should find whichever is closer, and the
database says which a label is. Vectors are L2-normalised, so hnswlib's ``cosine`` space ranks by
cosine similarity; we report ``1 - distance`` as the score.

Saving is atomic (write to a temporary file, fsync, rename) so a crash during save never leaves
a broken index: the previous one stays in place.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np


@dataclass(frozen=True)
class IndexParams:
    M: int = 32
    ef_construction: int = 200
    ef_search: int = 128


def index_basename(space: str) -> str:
    """A file-system-safe, stable name for a space such as ``org/model@abc123``."""
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in space)[:80]
    return f"{readable}-{hashlib.sha256(space.encode()).hexdigest()[:12]}"


class VectorIndex:
    def __init__(self, space: str, dim: int, params: IndexParams = IndexParams(),
                 capacity: int = 1024):
        import hnswlib

        self.space = space
        self.dim = dim
        self.params = params
        self._index = hnswlib.Index(space="cosine", dim=dim)
        self._index.init_index(max_elements=max(capacity, 16), M=params.M,
                               ef_construction=params.ef_construction, allow_replace_deleted=False)
        self._index.set_ef(params.ef_search)
        self._deleted: set[int] = set()

    # -- contents ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._index.get_current_count() - len(self._deleted)

    def labels(self) -> set[int]:
        return set(int(i) for i in self._index.get_ids_list()) - self._deleted

    def add(self, labels: Iterable[int], vectors: np.ndarray) -> None:
        labels = np.asarray(list(labels), dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(labels) == 0:
            return
        if vectors.shape != (len(labels), self.dim):
            raise ValueError(f"expected vectors of shape ({len(labels)}, {self.dim}), got {vectors.shape}")
        needed = self._index.get_current_count() + len(labels)
        if needed > self._index.get_max_elements():
            # Grow geometrically so that incremental adds stay amortised O(1) in resizes.
            self._index.resize_index(max(needed, 2 * self._index.get_max_elements()))
        revived = [int(label) for label in labels if int(label) in self._deleted]
        for label in revived:
            self._index.unmark_deleted(label)
            self._deleted.discard(label)
        self._index.add_items(vectors, labels, replace_deleted=False)

    def remove(self, labels: Iterable[int]) -> None:
        present = set(int(i) for i in self._index.get_ids_list())
        for label in labels:
            label = int(label)
            if label in present and label not in self._deleted:
                self._index.mark_deleted(label)
                self._deleted.add(label)

    def query(self, vector: np.ndarray, k: int, ef: Optional[int] = None,
              filter_fn=None) -> list[tuple[int, float]]:
        """Nearest ``k`` labels to ``vector`` as (label, cosine similarity), best first."""
        live = len(self)
        if live == 0 or k <= 0:
            return []
        k = min(k, live)
        self._index.set_ef(max(ef or self.params.ef_search, k))
        labels, distances = self._index.knn_query(
            np.asarray(vector, dtype=np.float32).reshape(1, -1), k=k, filter=filter_fn)
        return [(int(label), float(1.0 - dist)) for label, dist in zip(labels[0], distances[0])]

    # -- persistence ------------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        base = directory / index_basename(self.space)
        _atomic_write(base.with_suffix(".hnsw"), self._index.save_index)
        meta = {"space": self.space, "dim": self.dim, "M": self.params.M,
                "ef_construction": self.params.ef_construction, "ef_search": self.params.ef_search,
                "count": len(self), "deleted": sorted(self._deleted)}
        _atomic_write(base.with_suffix(".json"),
                      lambda path: Path(path).write_text(json.dumps(meta)))
        return base.with_suffix(".hnsw")

    @classmethod
    def load(cls, directory: Path, space: str) -> Optional["VectorIndex"]:
        """Load the saved index of ``space`` from ``directory``; None when there is none."""
        import hnswlib

        base = Path(directory) / index_basename(space)
        meta_path, index_path = base.with_suffix(".json"), base.with_suffix(".hnsw")
        if not (meta_path.exists() and index_path.exists()):
            return None
        meta = json.loads(meta_path.read_text())
        params = IndexParams(meta["M"], meta["ef_construction"], meta["ef_search"])
        self = cls.__new__(cls)
        self.space, self.dim, self.params = space, int(meta["dim"]), params
        self._index = hnswlib.Index(space="cosine", dim=self.dim)
        self._index.load_index(str(index_path), allow_replace_deleted=False)
        self._index.set_ef(params.ef_search)
        self._deleted = set(int(i) for i in meta.get("deleted", []))
        return self


def _atomic_write(final: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.tmp-")
    os.close(fd)
    try:
        write(str(tmp))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
