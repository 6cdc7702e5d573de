"""The embedding worker: canvases whose derivative is on disk but which have no vector in the
encoder's space are decoded, encoded in batches and written back, one transaction per batch.

A batch is written in one transaction, so a killed worker leaves either the whole batch or none
of it, and a re-run picks up exactly what is missing. Decoding happens in a small thread pool
ahead of inference so that the model is not kept waiting on disk and JPEG decoding.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from sqlalchemy import and_, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from .db import session_scope
from .derivatives import DerivativeStore
from .models import Canvas, Embedding

log = logging.getLogger(__name__)


@dataclass
class EmbedReport:
    embedded: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (canvas id, reason)


def pending_canvas_ids(session: Session, space: str, limit: Optional[int] = None) -> list[int]:
    """Canvases with a derivative and no live vector in ``space``, in a stable order."""
    existing = aliased(Embedding)
    query = (select(Canvas.id)
             .outerjoin(existing, and_(existing.canvas_id == Canvas.id,
                                       existing.region_id.is_(None), existing.space == space))
             .where(Canvas.derivative_sha256.is_not(None))
             .where((existing.id.is_(None)) | (existing.stale.is_(True)))
             .order_by(Canvas.id))
    if limit:
        query = query.limit(limit)
    return list(session.scalars(query))


def embed_pending(session_factory: sessionmaker[Session], encoder, derivatives: DerivativeStore,
                  batch_size: int = 16, threads: int = 2,
                  progress: Optional[Callable[[int], None]] = None) -> EmbedReport:
    """Encode every pending canvas with ``encoder`` (a VisionLanguageEncoder-like object)."""
    from .store import record_error

    report = EmbedReport()
    with session_scope(session_factory) as session:
        todo = [(cid, sha) for cid, sha in session.execute(
            select(Canvas.id, Canvas.derivative_sha256)
            .where(Canvas.id.in_(pending_canvas_ids(session, encoder.space_id)))
            .order_by(Canvas.id))]

    def decode(item):
        canvas_id, sha = item
        try:
            return canvas_id, derivatives.open_image(sha), None
        except Exception as exc:  # any decode failure is recorded against the canvas, not fatal
            return canvas_id, None, f"cannot decode derivative {sha[:12]}: {exc}"

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for start in range(0, len(todo), batch_size):
            decoded = list(pool.map(decode, todo[start:start + batch_size]))
            ok = [(cid, img) for cid, img, err in decoded if err is None]
            vectors = encoder.encode_images([img for _, img in ok]) if ok else np.zeros((0, 0))
            with session_scope(session_factory) as session:
                for cid, _img, err in decoded:
                    if err is not None:
                        record_error(session, "embed", None, err, canvas_id=cid)
                        report.failed.append((cid, err))
                for (cid, _img), vector in zip(ok, vectors):
                    _upsert_vector(session, encoder, cid, vector)
            report.embedded += len(ok)
            if progress:
                progress(len(decoded))
    return report


def _upsert_vector(session: Session, encoder, canvas_id: int, vector: np.ndarray) -> None:
    row = session.scalar(select(Embedding).where(
        Embedding.space == encoder.space_id, Embedding.canvas_id == canvas_id,
        Embedding.region_id.is_(None)))
    data = np.asarray(vector, dtype="<f4").tobytes()
    if row is None:
        session.add(Embedding(space=encoder.space_id, model_id=encoder.model_id,
                              model_revision=encoder.revision, canvas_id=canvas_id,
                              dim=int(vector.shape[0]), vector=data, stale=False))
    else:
        # A re-embedded stale vector gets a fresh row id so the index never serves the old one.
        session.delete(row)
        session.flush()
        session.add(Embedding(space=encoder.space_id, model_id=encoder.model_id,
                              model_revision=encoder.revision, canvas_id=canvas_id,
                              dim=int(vector.shape[0]), vector=data, stale=False))


def vector_from_row(row: Embedding) -> np.ndarray:
    return np.frombuffer(row.vector, dtype="<f4")
