"""The rankings a query can draw on, each as canvases best first with the evidence per canvas.

- ``visual``: k-NN in a vision-language space (text tower, an image, or a stored canvas/region
  vector); canvas and region vectors share the index, and region hits are grouped per canvas;
- ``fulltext``: FTS5 / PostgreSQL full-text search over metadata, labels and transcriptions;
- ``semantic``: k-NN over MiniLM sentence vectors of the same documents.

Every ranking searches inside the filter (allowed labels or documents), so each returns as many
canvases as exist up to its depth. The database decides what is live: index labels whose row is
gone or stale are dropped here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from ..index.vector_index import VectorIndex
from ..index.sync import load_vectors
from .filters import SearchFilters
from .knn import knn
from .shard_search import ShardedIndex
from ..models import Canvas, Embedding, Region, SearchDocument, TextVector


@dataclass
class RegionMatch:
    """Evidence inside a canvas: a box (canvas coordinates) and what matched there."""

    xywh: str
    score: float
    signal: str  # visual | fulltext | semantic
    snippet: Optional[str] = None

    def as_dict(self) -> dict:
        return {"xywh": self.xywh, "score": round(self.score, 6), "signal": self.signal,
                **({"snippet": self.snippet} if self.snippet is not None else {})}


@dataclass
class CanvasEvidence:
    canvas_id: int
    score: float  # the signal's best score for this canvas
    whole_canvas: bool = False  # the canvas itself matched (not only regions or its manifest)
    regions: list[RegionMatch] = field(default_factory=list)
    snippets: list[str] = field(default_factory=list)


@dataclass
class CanvasRanking:
    name: str
    canvases: list[CanvasEvidence]  # best first
    exhausted: bool  # True when nothing more could be found at a greater depth
    strategy: Optional[str] = None  # how the k-NN ran (plain, exact, overfetch, filtered)
    floor: Optional[float] = None  # the score a hit had to beat (see .calibration)
    below_floor: bool = False  # hits were left out for scoring no better than nonsense
    unavailable: tuple[int, ...] = ()  # index shards that did not answer (the ranking is partial)

    def items(self) -> list[tuple[int, float]]:
        return [(c.canvas_id, c.score) for c in self.canvases]


def allowed_visual_labels(session: Session, space: str, canvas_filter: Optional[Select]) -> Optional[np.ndarray]:
    """Live vector labels of ``space`` on canvases the filter allows (None: no filter)."""
    if canvas_filter is None:
        return None
    labels = session.scalars(select(Embedding.id).where(
        Embedding.space == space, Embedding.stale.is_(False), Embedding.canvas_id.in_(canvas_filter)))
    return np.fromiter(labels, dtype=np.int64)


def visual_ranking(session: Session, index: VectorIndex | ShardedIndex, vector: np.ndarray, depth: int,
                   canvas_filter: Optional[Select] = None, exclude_canvas: Optional[int] = None,
                   ef: Optional[int] = None, min_score: Optional[float] = None,
                   filters: Optional[SearchFilters] = None) -> CanvasRanking:
    """Canvases nearest to ``vector`` in ``index``; a canvas's score is its best vector's (whole
    page or region); region hits are listed per canvas with their boxes. With ``min_score``,
    only vectors scoring above it count (the ranking ends where they stop). A sharded index is
    also given ``filters`` (what ``canvas_filter`` was made from, when it was) to push down."""
    sharded = isinstance(index, ShardedIndex)
    allowed = None if sharded else allowed_visual_labels(session, index.space, canvas_filter)
    label_depth = depth
    while True:
        if sharded:
            result = index.nearest(session, vector, label_depth, filters=filters, ef=ef,
                                   canvas_filter=canvas_filter)
        else:
            result = knn(index, vector, label_depth, allowed=allowed, ef=ef,
                         vectors_of=lambda labels: load_vectors(session, index.space, labels, index.dim))
        hits = result.hits if min_score is None else [hit for hit in result.hits if hit[1] > min_score]
        canvases = _group_visual_hits(session, hits, exclude_canvas)
        below_floor = len(hits) < len(result.hits)
        # Hits come best first: once one is below the floor, deeper ones are too.
        exhausted = len(result.hits) < label_depth or below_floor
        # Several labels per canvas (regions) can leave fewer canvases than asked: look deeper.
        if len(canvases) >= depth or exhausted or label_depth >= 8 * depth:
            return CanvasRanking("visual", canvases[:depth], exhausted and len(canvases) <= depth,
                                 result.strategy, min_score, below_floor, result.unavailable)
        label_depth *= 2


def _group_visual_hits(session: Session, hits: list[tuple[int, float]],
                       exclude_canvas: Optional[int]) -> list[CanvasEvidence]:
    if not hits:
        return []
    rows = session.execute(
        select(Embedding.id, Embedding.canvas_id, Region.x, Region.y, Region.w, Region.h)
        .outerjoin(Region, Region.id == Embedding.region_id)
        .where(Embedding.id.in_([label for label, _ in hits]), Embedding.stale.is_(False))).all()
    where = {row[0]: row for row in rows}
    by_canvas: dict[int, CanvasEvidence] = {}
    order: list[int] = []
    for label, score in hits:
        row = where.get(label)
        if row is None:
            continue  # deleted or stale since the index was saved: never returned
        _, canvas_id, x, y, w, h = row
        if canvas_id == exclude_canvas:
            continue
        evidence = by_canvas.get(canvas_id)
        if evidence is None:
            evidence = by_canvas[canvas_id] = CanvasEvidence(canvas_id, score)
            order.append(canvas_id)
        if x is None:
            evidence.whole_canvas = True
        else:
            evidence.regions.append(RegionMatch(f"{x},{y},{w},{h}", score, "visual"))
    return [by_canvas[canvas_id] for canvas_id in order]


def allowed_documents(canvas_filter: Optional[Select]) -> Optional[Select]:
    """Documents the filter allows: those of allowed canvases, and manifest documents of
    manifests with an allowed canvas."""
    if canvas_filter is None:
        return None
    allowed_manifests = select(Canvas.manifest_id).where(Canvas.id.in_(canvas_filter))
    return select(SearchDocument.id).where(or_(
        SearchDocument.canvas_id.in_(canvas_filter),
        and_(SearchDocument.canvas_id.is_(None), SearchDocument.manifest_id.in_(allowed_manifests))))


def documents_to_canvases(session: Session, name: str, scored_documents: list[tuple[int, float]],
                          depth: int, canvas_filter: Optional[Select], query: str,
                          exhausted: bool) -> CanvasRanking:
    """Canvas ranking from ranked documents: an annotation or canvas label ranks its canvas (an
    annotation with a box adds a region); a manifest's metadata ranks its canvases in page order
    at that point of the list (the filter still applies)."""
    from .fulltext import snippet

    if not scored_documents:
        return CanvasRanking(name, [], True)
    documents = {doc.id: doc for doc in session.scalars(
        select(SearchDocument).where(SearchDocument.id.in_([d for d, _ in scored_documents])))}
    by_canvas: dict[int, CanvasEvidence] = {}
    order: list[int] = []

    def evidence_for(canvas_id: int, score: float) -> CanvasEvidence:
        if canvas_id not in by_canvas:
            by_canvas[canvas_id] = CanvasEvidence(canvas_id, score)
            order.append(canvas_id)
        return by_canvas[canvas_id]

    for document_id, score in scored_documents:
        doc = documents.get(document_id)
        if doc is None:
            continue
        if doc.canvas_id is not None:
            evidence = evidence_for(doc.canvas_id, score)
            text = snippet(doc.text, query)
            if doc.xywh:
                evidence.regions.append(RegionMatch(doc.xywh, score, name, text))
            else:
                evidence.whole_canvas = True
            if text not in evidence.snippets and len(evidence.snippets) < 3:
                evidence.snippets.append(text)
        elif len(order) < depth:
            canvases = select(Canvas.id).where(Canvas.manifest_id == doc.manifest_id)
            if canvas_filter is not None:
                canvases = canvases.where(Canvas.id.in_(canvas_filter))
            for canvas_id in session.scalars(canvases.order_by(Canvas.position, Canvas.id).limit(depth)):
                evidence = evidence_for(canvas_id, score)
                if len(evidence.snippets) < 3:
                    evidence.snippets.append(snippet(doc.text, query))
        if len(order) >= depth:
            break
    return CanvasRanking(name, [by_canvas[c] for c in order[:depth]], exhausted and len(order) <= depth)


def fulltext_ranking(session: Session, query: str, depth: int,
                     canvas_filter: Optional[Select] = None) -> CanvasRanking:
    from .fulltext import search_fulltext

    hits = search_fulltext(session, query, depth, allowed_documents(canvas_filter))
    return documents_to_canvases(session, "fulltext", [(h.document_id, h.score) for h in hits], depth,
                                 canvas_filter, query, exhausted=len(hits) < depth)


def semantic_ranking(session: Session, text_index: VectorIndex, query_vector: np.ndarray, query: str,
                     depth: int, canvas_filter: Optional[Select] = None,
                     min_score: Optional[float] = None) -> CanvasRanking:
    """Documents nearest in sentence-vector space, mapped to canvases. Documents not above
    ``min_score`` cosine are left out: MiniLM ranks *something* first for any query, and
    unrelated text must not outvote the picture (the engine passes the calibrated floor,
    :mod:`.calibration`)."""
    documents = allowed_documents(canvas_filter)
    allowed = None
    if documents is not None:
        allowed = np.fromiter(session.scalars(select(TextVector.id).where(
            TextVector.space == text_index.space, TextVector.document_id.in_(documents))), dtype=np.int64)
    result = knn(text_index, query_vector, depth, allowed=allowed,
                 vectors_of=lambda labels: load_vectors(session, text_index.space, labels, text_index.dim))
    hits = [(label, score) for label, score in result.hits if min_score is None or score > min_score]
    label_docs = dict(session.execute(select(TextVector.id, TextVector.document_id)
                                      .where(TextVector.id.in_([label for label, _ in hits]))).all())
    scored = [(label_docs[label], score) for label, score in hits if label in label_docs]
    ranking = documents_to_canvases(session, "semantic", scored, depth, canvas_filter, query,
                                    exhausted=len(result.hits) < depth or len(hits) < len(result.hits))
    ranking.strategy, ranking.floor = result.strategy, min_score
    ranking.below_floor = len(hits) < len(result.hits)
    return ranking
