"""Sentence vectors of search documents (for semantic text search), kept in step with the documents.

Vectors live in ``text_vectors`` under the text encoder's space (``text:<model>@<fingerprint>``)
and are indexed by the same HNSW machinery as image vectors (:mod:`.index_sync` picks the table
by the space's prefix).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, aliased

from ..models import SearchDocument, TextVector
from ..store.vector_codec import encode_vector


@dataclass
class TextVectorReport:
    space: str
    encoded: int

    def as_dict(self) -> dict:
        return {"space": self.space, "encoded": self.encoded}


def pending_document_ids(session: Session, space: str) -> list[int]:
    """Documents with no vector in ``space``, in id order."""
    existing = aliased(TextVector)
    return list(session.scalars(
        select(SearchDocument.id)
        .outerjoin(existing, and_(existing.document_id == SearchDocument.id, existing.space == space))
        .where(existing.id.is_(None)).order_by(SearchDocument.id)))


def sync_text_vectors(session: Session, encoder, batch_size: int = 128,
                      progress: Optional[Callable[[int], None]] = None) -> TextVectorReport:
    """Encode every document that has no vector in ``encoder.space_id``; flushes per batch.

    (A changed document lost its vectors in :func:`..documents.sync_documents`, so it is here too.)
    """
    todo = pending_document_ids(session, encoder.space_id)
    for start in range(0, len(todo), batch_size):
        block = todo[start:start + batch_size]
        rows = session.execute(select(SearchDocument.id, SearchDocument.text)
                               .where(SearchDocument.id.in_(block)).order_by(SearchDocument.id)).all()
        vectors = encoder.encode([text for _, text in rows])
        for (document_id, _), vector in zip(rows, vectors):
            session.add(TextVector(document_id=document_id, space=encoder.space_id, dim=int(vector.shape[0]),
                                   vector=encode_vector(vector)))
        session.flush()
        if progress:
            progress(len(rows))
    return TextVectorReport(encoder.space_id, len(todo))
