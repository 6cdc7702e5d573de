"""Keep the HNSW index of a space in step with the embeddings table.

The database is the truth; the index is a derived, rebuildable cache. ``sync_index`` adds live
vectors the index lacks and removes labels whose vectors went stale or were deleted, without a
rebuild; ``rebuild_index`` starts from nothing; ``verify_index`` reports any difference.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from .index import IndexParams, VectorIndex
from .models import Embedding


@dataclass
class SyncReport:
    space: str
    added: int
    removed: int
    total: int

    def as_dict(self) -> dict:
        return {"space": self.space, "added": self.added, "removed": self.removed, "total": self.total}


def spaces(session: Session) -> list[str]:
    return list(session.scalars(select(Embedding.space).distinct().order_by(Embedding.space)))


def live_labels(session: Session, space: str) -> set[int]:
    return set(session.scalars(select(Embedding.id).where(
        Embedding.space == space, Embedding.stale.is_(False))))


def _load_vectors(session: Session, ids: list[int], dim: int) -> np.ndarray:
    vectors = np.zeros((len(ids), dim), dtype=np.float32)
    position = {label: i for i, label in enumerate(ids)}
    for chunk_start in range(0, len(ids), 5000):
        chunk = ids[chunk_start:chunk_start + 5000]
        for label, blob in session.execute(
                select(Embedding.id, Embedding.vector).where(Embedding.id.in_(chunk))):
            vectors[position[label]] = np.frombuffer(blob, dtype="<f4")
    return vectors


def _dim_of(session: Session, space: str) -> Optional[int]:
    return session.scalar(select(Embedding.dim).where(Embedding.space == space).limit(1))


def sync_index(session: Session, index_dir: Path, space: str,
               params: IndexParams = IndexParams()) -> SyncReport:
    dim = _dim_of(session, space)
    index = VectorIndex.load(index_dir, space)
    if dim is None and index is None:
        return SyncReport(space, 0, 0, 0)
    was_saved = index is not None
    if index is None:
        index = VectorIndex(space, dim, params)
    wanted = live_labels(session, space)
    have = index.labels()
    to_add = sorted(wanted - have)
    to_remove = have - wanted
    index.remove(to_remove)
    if to_add:
        index.add(to_add, _load_vectors(session, to_add, index.dim))
    if to_add or to_remove or not was_saved:
        index.save(index_dir)
    return SyncReport(space, len(to_add), len(to_remove), len(index))


def rebuild_index(session: Session, index_dir: Path, space: str,
                  params: IndexParams = IndexParams()) -> SyncReport:
    dim = _dim_of(session, space)
    if dim is None:
        raise ValueError(f"no vectors in space {space!r}; run `msearch embed` first")
    labels = sorted(live_labels(session, space))
    index = VectorIndex(space, dim, params, capacity=len(labels))
    index.add(labels, _load_vectors(session, labels, dim))
    index.save(index_dir)
    return SyncReport(space, len(labels), 0, len(index))


def verify_index(session: Session, index_dir: Path, space: str) -> dict:
    index = VectorIndex.load(index_dir, space)
    wanted = live_labels(session, space)
    have = index.labels() if index else set()
    return {"space": space, "index_present": index is not None,
            "missing_from_index": sorted(wanted - have)[:100], "missing_count": len(wanted - have),
            "extra_in_index": sorted(have - wanted)[:100], "extra_count": len(have - wanted),
            "ok": index is not None and wanted == have}
