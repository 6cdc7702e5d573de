"""Keep the HNSW index of a space in step with its vector table.

The database is the truth; the index is a derived, rebuildable cache. Image spaces index
``embeddings`` (live rows: not stale); text spaces (``text:...``, sentence vectors of search
documents) index ``text_vectors``. ``sync_index`` adds the live vectors the index lacks and removes
labels whose vectors went stale or were deleted, without a rebuild (and rebuilds when deleted
vectors take up too much of it); ``rebuild_index`` starts from nothing; ``verify_index`` reports any
difference, and with ``deep`` also compares every stored vector.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from .vector_index import IndexParams, IndexReadError, VectorIndex
from ..models import Embedding, TextVector

TEXT_SPACE_PREFIX = "text:"
# Deleted vectors still take memory and slow the graph; past this share a sync rebuilds.
REBUILD_DELETED_FRACTION = 0.25


@dataclass
class SyncReport:
    space: str
    added: int
    removed: int
    total: int
    rebuilt: bool = False

    def as_dict(self) -> dict:
        return {"space": self.space, "added": self.added, "removed": self.removed, "total": self.total,
                "rebuilt": self.rebuilt}


def _table(space: str):
    return TextVector if space.startswith(TEXT_SPACE_PREFIX) else Embedding


def _live_condition(space: str):
    table = _table(space)
    condition = table.space == space
    if table is Embedding:
        condition = condition & Embedding.stale.is_(False)
    return condition


def spaces(session: Session) -> list[str]:
    """Every space with vectors: image spaces first, then text spaces."""
    image = list(session.scalars(select(Embedding.space).distinct().order_by(Embedding.space)))
    text = list(session.scalars(select(TextVector.space).distinct().order_by(TextVector.space)))
    return image + text


def live_labels(session: Session, space: str) -> set[int]:
    table = _table(space)
    return set(session.scalars(select(table.id).where(_live_condition(space))))


def load_vectors(session: Session, space: str, ids: list[int], dim: int) -> np.ndarray:
    """Stored vectors of ``ids`` (rows in that order) from the space's table, as float32 (rows
    are float16, or float32 in a database not yet through migration 0006: store/vector_codec).

    Raises ValueError when a row is not ``dim``-dimensional."""
    from ..store.vector_codec import decode_vectors

    table = _table(space)
    vectors = np.zeros((len(ids), dim), dtype=np.float32)
    position = {int(label): i for i, label in enumerate(ids)}
    for chunk_start in range(0, len(ids), 5000):
        chunk = [int(i) for i in ids[chunk_start:chunk_start + 5000]]
        rows = session.execute(select(table.id, table.vector, table.dim).where(table.id.in_(chunk))).all()
        other = next((row for row in rows if row.dim != dim), None)
        if other is not None:
            raise ValueError(f"vector {other.id} of space {space!r} is {other.dim}-d, not {dim}-d")
        if rows:
            vectors[[position[row.id] for row in rows]] = decode_vectors([row.vector for row in rows], dim)
    return vectors


def dim_of(session: Session, space: str) -> Optional[int]:
    table = _table(space)
    return session.scalar(select(table.dim).where(table.space == space).limit(1))


def _load_or_none(index_dir: Path, space: str) -> Optional[VectorIndex]:
    try:
        return VectorIndex.load(index_dir, space)
    except IndexReadError:
        return None  # unreadable: the caller rebuilds it


def sync_index(session: Session, index_dir: Path, space: str,
               params: Optional[IndexParams] = None) -> SyncReport:
    """Bring the saved index of ``space`` in step with the database; saves only when it changed.

    ``params`` apply to a new or rebuilt index; an existing index keeps the parameters it was
    built with. An unreadable index file is rebuilt.
    """
    dim = dim_of(session, space)
    index = _load_or_none(index_dir, space)
    if dim is None and index is None:
        return SyncReport(space, 0, 0, 0)
    if index is None or (dim is not None and index.dim != dim):
        return rebuild_index(session, index_dir, space, params)
    wanted = live_labels(session, space)
    have = index.labels()
    to_add = sorted(wanted - have)
    to_remove = have - wanted
    deleted_after = index.deleted_count + len(to_remove)
    if deleted_after > REBUILD_DELETED_FRACTION * (index.element_count + len(to_add)) and deleted_after > 100:
        report = rebuild_index(session, index_dir, space, params or index.params)
        report.added, report.removed = len(to_add), len(to_remove)
        return report
    index.remove(to_remove)
    if to_add:
        index.add(to_add, load_vectors(session, space, to_add, index.dim))
    if to_add or to_remove:
        index.save(index_dir)
    return SyncReport(space, len(to_add), len(to_remove), len(index))


def rebuild_index(session: Session, index_dir: Path, space: str,
                  params: Optional[IndexParams] = None) -> SyncReport:
    """Build the index of ``space`` from scratch and save it (replacing the old one atomically).

    Raises ValueError when the space has no vectors.
    """
    dim = dim_of(session, space)
    if dim is None:
        raise ValueError(f"no vectors in space {space!r}; run `msearch embed` first")
    labels = sorted(live_labels(session, space))
    index = VectorIndex(space, dim, params or IndexParams(), capacity=len(labels))
    for start in range(0, len(labels), 50_000):
        block = labels[start:start + 50_000]
        index.add(block, load_vectors(session, space, block, dim))
    index.save(index_dir)
    return SyncReport(space, len(labels), 0, len(index), rebuilt=True)


def verify_index(session: Session, index_dir: Path, space: str, deep: bool = False) -> dict:
    """Compare the saved index of ``space`` with the database.

    Always: the index's live labels equal the database's live vectors. With ``deep``: every live
    label's vector in the index equals (cosine ≥ 0.9999) the stored one and is not marked deleted
    in the graph. ``ok`` is True only when everything matches.
    """
    problems: list[str] = []
    try:
        index = VectorIndex.load(index_dir, space)
    except IndexReadError as error:
        index = None
        problems.append(str(error))
    wanted = live_labels(session, space)
    have = index.labels() if index else set()
    result = {"space": space, "index_present": index is not None,
              "missing_from_index": sorted(wanted - have)[:100], "missing_count": len(wanted - have),
              "extra_in_index": sorted(have - wanted)[:100], "extra_count": len(have - wanted),
              "deleted_in_index": index.deleted_count if index else 0}
    mismatched: list[int] = []
    if deep and index is not None:
        common = sorted(wanted & have)
        for start in range(0, len(common), 2000):
            block = common[start:start + 2000]
            stored = load_vectors(session, space, block, index.dim)
            stored /= np.maximum(np.linalg.norm(stored, axis=1, keepdims=True), 1e-12)
            for label, expected in zip(block, stored):
                try:
                    actual = np.asarray(index._index.get_items([label]), dtype=np.float32)[0]
                except RuntimeError:  # marked deleted in the graph although listed as live
                    mismatched.append(label)
                    continue
                if float(actual @ expected) < 0.9999:
                    mismatched.append(label)
        result["vectors_checked"] = len(common)
    result["mismatched_vectors"] = mismatched[:100]
    result["mismatched_count"] = len(mismatched)
    result["problems"] = problems
    result["ok"] = (index is not None and wanted == have and not mismatched)
    return result
