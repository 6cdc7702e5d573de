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

from .layouts import LayoutChoice, choose_layout, default_budget, layout_class, new_index, open_index
from .shards import ShardPart
from .vector_index import IndexParams, IndexReadError, VectorIndex
from ..models import Embedding, TextVector
from ..store.vector_codec import decode_vectors

TEXT_SPACE_PREFIX = "text:"
# Deleted vectors still take memory and slow the graph; past this share a sync rebuilds.
REBUILD_DELETED_FRACTION = 0.25
CHUNK = 50_000  # vectors read from the database at a time


@dataclass
class SyncReport:
    space: str
    added: int
    removed: int
    total: int
    rebuilt: bool = False
    layout: Optional[str] = None
    reason: Optional[str] = None  # why ``auto`` chose the layout

    def as_dict(self) -> dict:
        report = {"space": self.space, "added": self.added, "removed": self.removed, "total": self.total,
                  "rebuilt": self.rebuilt, "layout": self.layout}
        if self.reason:
            report["reason"] = self.reason
        return report


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


def live_labels(session: Session, space: str, part: Optional[ShardPart] = None) -> np.ndarray:
    """The ids of the space's live vectors, sorted (an array: 10M of them fit in 80 MB); with
    ``part``, only those of canvases in that shard."""
    table = _table(space)
    if part is None:
        ids = session.scalars(select(table.id).where(_live_condition(space)).order_by(table.id)
                              .execution_options(yield_per=100_000))
        return np.fromiter(ids, dtype=np.int64)
    if table is not Embedding:
        raise ValueError(f"text space {space!r} is not split into shards (one vector per document: "
                         "it stays one index)")
    labels, canvases = label_canvas_pairs(session, space)
    return labels[part.holds(canvases)]


def label_canvas_pairs(session: Session, space: str, canvas_filter=None) -> tuple[np.ndarray, np.ndarray]:
    """(labels, their canvas ids), sorted by label, of the image space's live vectors; with
    ``canvas_filter`` (a statement selecting canvas ids), only those on its canvases."""
    statement = select(Embedding.id, Embedding.canvas_id).where(_live_condition(space))
    if canvas_filter is not None:
        statement = statement.where(Embedding.canvas_id.in_(canvas_filter))
    rows = session.execute(statement.order_by(Embedding.id).execution_options(yield_per=100_000))
    pairs = np.fromiter((value for row in rows for value in row), dtype=np.int64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def load_vectors(session: Session, space: str, ids: list[int], dim: int) -> np.ndarray:
    """Stored vectors of ``ids`` (rows in that order) from the space's table, as float32 (rows
    are float16, or float32 in a database not yet through migration 0006: store/vector_codec).

    Raises ValueError when a row is not ``dim``-dimensional."""
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


def _load_or_none(index_dir: Path, name: str) -> Optional[VectorIndex]:
    try:
        return open_index(index_dir, name, writable=True)
    except IndexReadError:
        return None  # unreadable: the caller rebuilds it


def target_layout(layout: Optional[str], vectors: int, dim: int, budget_bytes: Optional[int],
                  M: int = 32) -> tuple[str, Optional[LayoutChoice]]:
    """(layout name, the choice with its reason when ``layout`` is ``auto`` or None) for a space of
    ``vectors`` ``dim``-d vectors. Raises ValueError for an unknown layout name."""
    if layout not in (None, "auto"):
        layout_class(layout)  # unknown names fail here, before any work
        return layout, None
    choice = choose_layout(vectors, dim, budget_bytes or default_budget(), M)
    return choice.layout, choice


def sync_index(session: Session, index_dir: Path, space: str, params: Optional[IndexParams] = None,
               layout: Optional[str] = None, budget_bytes: Optional[int] = None,
               show_progress: bool = False, part: Optional[ShardPart] = None) -> SyncReport:
    """Bring the saved index of ``space`` (or of its shard ``part``) in step with the database;
    saves only when it changed.

    ``params`` apply to a new or rebuilt index; an existing index keeps the parameters it was
    built with. ``layout`` (a name or ``auto``) converts an existing index of another layout;
    None keeps the layout an index has, and gives a new one the ``auto`` choice for
    ``budget_bytes`` (default: half this machine's memory). An unreadable index file is rebuilt.
    """
    dim = dim_of(session, space)
    index = _load_or_none(index_dir, part.index_name(space) if part else space)
    if dim is None and index is None:
        return SyncReport(space, 0, 0, 0)
    wanted = live_labels(session, space, part)
    if index is None or (dim is not None and index.dim != dim) or (layout is not None and (
            target_layout(layout, len(wanted), dim or index.dim, budget_bytes)[0] != index.layout)):
        return rebuild_index(session, index_dir, space, params or (index.params if index else None),
                             layout=layout, budget_bytes=budget_bytes, show_progress=show_progress,
                             part=part)
    have = index.live_label_array()
    to_add = np.setdiff1d(wanted, have, assume_unique=True)
    to_remove = np.setdiff1d(have, wanted, assume_unique=True)
    deleted_after = index.deleted_count + len(to_remove)
    if deleted_after > REBUILD_DELETED_FRACTION * (index.element_count + len(to_add)) and deleted_after > 100:
        report = rebuild_index(session, index_dir, space, params or index.params, layout=index.layout,
                               show_progress=show_progress, part=part)
        report.added, report.removed = len(to_add), len(to_remove)
        return report
    index.remove(to_remove)
    _add_in_chunks(session, space, index, to_add, show_progress, "adding")
    if len(to_add) or len(to_remove):
        index.save(index_dir)
    return SyncReport(space, len(to_add), len(to_remove), len(index), layout=index.layout)


def _add_in_chunks(session: Session, space: str, index: VectorIndex, labels: np.ndarray,
                   show_progress: bool, what: str) -> None:
    # Vectors stream from the database in chunks: never the whole space in memory at once.
    from tqdm import tqdm

    with tqdm(total=len(labels), unit="vec", desc=f"{what} {index.layout}", disable=not show_progress
              or len(labels) < 10 * CHUNK, leave=False) as bar:
        for start in range(0, len(labels), CHUNK):
            block = labels[start:start + CHUNK]
            index.add(block, load_vectors(session, space, block.tolist(), index.dim))
            bar.update(len(block))


def rebuild_index(session: Session, index_dir: Path, space: str, params: Optional[IndexParams] = None,
                  layout: Optional[str] = "hnsw", budget_bytes: Optional[int] = None,
                  show_progress: bool = False, part: Optional[ShardPart] = None) -> SyncReport:
    """Build the index of ``space`` (or of its shard ``part``) from scratch and save it (replacing
    the old one atomically). ``layout``: a name, or ``auto``/None for the choice that fits
    ``budget_bytes`` (with ``part``: the budget of the shard's node).

    Raises ValueError when the space has no vectors, or for an unknown layout.
    """
    dim = dim_of(session, space)
    if dim is None:
        raise ValueError(f"no vectors in space {space!r}; run `msearch embed` first")
    params = params or IndexParams()
    labels = live_labels(session, space, part)
    name, choice = target_layout(layout, len(labels), dim, budget_bytes, params.M)
    index = new_index(part.index_name(space) if part else space, dim, params, capacity=len(labels), layout=name)
    if not index.is_trained and len(labels):
        from .ivf import TRAINING_SAMPLE

        sample = labels if len(labels) <= TRAINING_SAMPLE else np.sort(
            np.random.default_rng(0).choice(labels, TRAINING_SAMPLE, replace=False))
        index.train(load_vectors(session, space, sample.tolist(), dim))
    _add_in_chunks(session, space, index, labels, show_progress, "building")
    index.save(index_dir)
    return SyncReport(space, len(labels), 0, len(index), rebuilt=True, layout=name,
                      reason=choice.reason if choice else None)


def verify_index(session: Session, index_dir: Path, space: str, deep: bool = False,
                 part: Optional[ShardPart] = None) -> dict:
    """Compare the saved index of ``space`` (or of its shard ``part``) with the database.

    Always: the index's live labels equal the database's live vectors. With ``deep``: every live
    label's vector in the index agrees with the stored one (cosine at least the layout's
    ``verify_cosine``: 0.9999 for float vectors, less for 8-bit ones) and is reachable.
    ``ok`` is True only when everything matches.
    """
    problems: list[str] = []
    try:
        index = open_index(index_dir, part.index_name(space) if part else space)
    except IndexReadError as error:
        index = None
        problems.append(str(error))
    wanted = live_labels(session, space, part)
    have = index.live_label_array() if index else np.zeros(0, dtype=np.int64)
    missing = np.setdiff1d(wanted, have, assume_unique=True)
    extra = np.setdiff1d(have, wanted, assume_unique=True)
    result = {"space": space, **({"shard": part.describe()} if part else {}), "index_present": index is not None, "layout": index.layout if index else None,
              "missing_from_index": missing[:100].tolist(), "missing_count": len(missing),
              "extra_in_index": extra[:100].tolist(), "extra_count": len(extra),
              "deleted_in_index": index.deleted_count if index else 0}
    mismatched: list[int] = []
    if deep and index is not None:
        common = np.intersect1d(wanted, have, assume_unique=True)
        for start in range(0, len(common), 2000):
            block = common[start:start + 2000]
            stored = load_vectors(session, space, block.tolist(), index.dim)
            stored /= np.maximum(np.linalg.norm(stored, axis=1, keepdims=True), 1e-12)
            held = index.stored_vectors(block)
            agreement = np.einsum("ij,ij->i", np.nan_to_num(held, nan=0.0), stored)
            bad = np.isnan(held).any(axis=1) | (agreement < index.verify_cosine)
            mismatched.extend(int(label) for label in block[bad])
        result["vectors_checked"] = len(common)
    result["mismatched_vectors"] = mismatched[:100]
    result["mismatched_count"] = len(mismatched)
    result["problems"] = problems
    result["ok"] = (index is not None and not len(missing) and not len(extra) and not mismatched)
    return result
