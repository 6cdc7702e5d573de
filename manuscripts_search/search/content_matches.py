"""Finding what a IIIF Content Search asks for inside one scope (a manifest, or the canvases of
an exported result set): words in transcriptions, canvas labels and manifest metadata, and —
our addition — regions that *look like* the query, from the vision-language index.

Text matching reads the scope's texts directly (a manifest holds at most some thousands of
lines), so it needs no full-text index and finds every occurrence with its surrounding words:
each query term must start a word, compared without case or accents, words split as the
full-text index splits them (search/text_folding.py: "_" separates words).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from manuscripts_search.search.fulltext import query_terms
from manuscripts_search.search.text_folding import WORD, fold, term_pattern, words
from manuscripts_search.models import Canvas, Manifest, TextAnnotation

MAX_SCOPE_TEXTS = 100_000  # annotation lines read for one search; more is not one object
CONTEXT_CHARS = 40


@dataclass(frozen=True)
class Scope:
    """A manifest (``manifest_id``) or an explicit set of canvases (``canvas_ids``)."""

    manifest_id: Optional[int] = None
    canvas_ids: tuple[int, ...] = ()

    def canvas_statement(self) -> Select:
        if self.manifest_id is not None:
            return select(Canvas.id).where(Canvas.manifest_id == self.manifest_id)
        return select(Canvas.id).where(Canvas.id.in_(self.canvas_ids))


@dataclass(frozen=True)
class TextHit:
    kind: str  # annotation | canvas-label | metadata | visual
    key: str  # unique within the scope (annotation:12, canvas:3, manifest:4, visual:3:x,y,w,h)
    canvas: Optional[Canvas]
    manifest: Manifest
    text: str
    motivation: str
    xywh: Optional[str]
    exact: Optional[str]
    prefix: str
    suffix: str
    annotation_iiif_id: Optional[str] = None
    score: Optional[float] = None
    rank: Optional[int] = None  # visual: the region's place among those its canvas shows (1: best)


def find_term(text: str, terms: list[str]) -> Optional[tuple[int, int]]:
    """(start, end) of the first term of ``terms`` starting a word in ``text``, else None."""
    folded = fold(text)
    best = None
    for term in terms:
        pattern = term_pattern(term)
        match = pattern.search(folded) if pattern else None
        if match and (best is None or match.start() < best[0]):
            end = match.end()
            while end < len(text) and WORD.match(text, end):
                end += 1  # the whole word: "bird" matches and shows "birds"
            best = (match.start(), end)
    return best


def _context(text: str, span: tuple[int, int]) -> tuple[str, str, str]:
    start, end = span
    prefix = text[max(0, start - CONTEXT_CHARS):start]
    suffix = text[end:end + CONTEXT_CHARS]
    return prefix, text[start:end], suffix


def text_hits(session: Session, scope: Scope, query: str, include_metadata: bool = True) -> list[TextHit]:
    """Every text in ``scope`` where a term of ``query`` starts a word, in canvas order
    (manifest metadata last). Raises ValueError for a query without any word."""
    terms = query_terms(query)
    if not terms:
        raise ValueError("the query has no word to search for")
    canvases = {canvas.id: canvas for canvas in session.scalars(
        select(Canvas).where(Canvas.id.in_(scope.canvas_statement())))}
    manifests = {m.id: m for m in session.scalars(select(Manifest).where(
        Manifest.id.in_({c.manifest_id for c in canvases.values()} | ({scope.manifest_id} if scope.manifest_id else set()))))}
    hits: list[TextHit] = []
    annotations = session.scalars(
        select(TextAnnotation).where(TextAnnotation.canvas_id.in_(list(canvases)))
        .order_by(TextAnnotation.canvas_id, TextAnnotation.y, TextAnnotation.x, TextAnnotation.id)
        .limit(MAX_SCOPE_TEXTS)) if canvases else []
    for annotation in annotations:
        span = find_term(annotation.text or "", terms)
        if span is None:
            continue
        canvas = canvases[annotation.canvas_id]
        prefix, exact, suffix = _context(annotation.text, span)
        hits.append(TextHit("annotation", f"annotation:{annotation.id}", canvas, manifests[canvas.manifest_id],
                            annotation.text, _motivation(annotation.motivation), annotation.xywh, exact, prefix,
                            suffix, annotation.iiif_id))
    from manuscripts_search.search.documents import language_map_texts, manifest_text

    for canvas in canvases.values():
        label = " ".join(language_map_texts(canvas.label))
        span = find_term(label, terms) if label else None
        if span is not None:
            prefix, exact, suffix = _context(label, span)
            hits.append(TextHit("canvas-label", f"canvas:{canvas.id}", canvas, manifests[canvas.manifest_id], label,
                                "describing", None, exact, prefix, suffix))
    hits.sort(key=lambda hit: (hit.canvas.position if hit.canvas else 0, hit.canvas.id if hit.canvas else 0,
                               hit.kind != "canvas-label"))
    if include_metadata:
        for manifest in manifests.values():
            for line in manifest_text(manifest).splitlines():
                span = find_term(line, terms)
                if span is not None:
                    prefix, exact, suffix = _context(line, span)
                    hits.append(TextHit("metadata", f"manifest:{manifest.id}:{len(hits)}", None, manifest, line,
                                        "describing", None, exact, prefix, suffix))
    return hits


def visual_hits(session: Session, scope: Scope, index, vector, limit: int) -> list[TextHit]:
    """The ``limit`` canvases of ``scope`` nearest to ``vector`` (a text query through the
    vision-language model), each as the regions a search hit on it shows (the best and at most
    two that do not overlap it, search/region_display.py), else as the page."""
    from manuscripts_search.search.region_display import pick_regions
    from manuscripts_search.search.signals import visual_ranking

    ranking = visual_ranking(session, index, vector, limit, scope.canvas_statement())
    ids = [evidence.canvas_id for evidence in ranking.canvases]
    canvases = {c.id: c for c in session.scalars(select(Canvas).where(Canvas.id.in_(ids)))} if ids else {}
    manifests = {m.id: m for m in session.scalars(select(Manifest).where(
        Manifest.id.in_({c.manifest_id for c in canvases.values()})))} if canvases else {}
    hits = []
    for evidence in ranking.canvases:
        canvas = canvases.get(evidence.canvas_id)
        if canvas is None:
            continue
        region = evidence.regions[0] if evidence.regions else None
        use_region = region is not None and (not evidence.whole_canvas or region.score >= evidence.score - 1e-9)
        # The engine's rule for a hit's best region (ResultHit.xywh), so the boxes are the card's.
        shown = pick_regions(evidence.regions, region.xywh if use_region else None)
        if not shown:
            xywh = f"0,0,{canvas.width},{canvas.height}" if canvas.width and canvas.height else None
            hits.append(TextHit("visual", f"visual:{canvas.id}:{xywh}", canvas, manifests[canvas.manifest_id],
                                "", "highlighting", xywh, None, "", "", None, float(evidence.score)))
        for picked in shown:
            hits.append(TextHit("visual", f"visual:{canvas.id}:{picked.xywh}", canvas, manifests[canvas.manifest_id],
                                "", "highlighting", picked.xywh, None, "", "", None, picked.score, picked.rank))
    return hits


def autocomplete_terms(session: Session, scope: Scope, prefix: str, limit: int = 20,
                       minimum: int = 1) -> list[tuple[str, int]]:
    """Words of the scope's transcriptions and labels starting with ``prefix`` (case and
    accents ignored), most frequent first, as (word, occurrences)."""
    wanted = fold(prefix.strip())
    if not wanted:
        return []
    counts: Counter = Counter()
    forms: dict[str, Counter] = {}
    texts = list(session.scalars(select(TextAnnotation.text).where(
        TextAnnotation.canvas_id.in_(scope.canvas_statement())).limit(MAX_SCOPE_TEXTS)))
    from manuscripts_search.search.documents import language_map_texts

    texts += [" ".join(language_map_texts(label)) for label in session.scalars(
        select(Canvas.label).where(Canvas.id.in_(scope.canvas_statement())))]
    for text in texts:
        for word in words(text or ""):
            folded = fold(word)
            if folded.startswith(wanted) and len(word) > 1:
                counts[folded] += 1
                forms.setdefault(folded, Counter())[word.lower()] += 1
    ranked = sorted(((forms[f].most_common(1)[0][0], n) for f, n in counts.items() if n >= minimum),
                    key=lambda pair: (-pair[1], pair[0]))
    return ranked[:limit]


def _motivation(raw: Optional[str]) -> str:
    name = (raw or "supplementing").split(":")[-1]
    return "supplementing" if name == "painting" else name


def canvas_visual_regions(session: Session, canvas: Canvas, encoder, index_space: str, query: str,
                          limit: int = 5) -> list[tuple[str, float]]:
    """The regions of ``canvas`` that look most like ``query`` (text through the model), as
    (xywh, cosine), best first. Exact: a canvas has a few dozen region vectors at most."""
    import numpy as np

    from manuscripts_search.models import Embedding, Region
    from manuscripts_search.store.vector_codec import decode_vector

    rows = session.execute(select(Embedding.vector, Region.x, Region.y, Region.w, Region.h, Embedding.dim)
                           .join(Region, Region.id == Embedding.region_id)
                           .where(Embedding.canvas_id == canvas.id, Embedding.space == index_space,
                                  Embedding.stale.is_(False))).all()
    if not rows:
        return []
    vectors = np.stack([decode_vector(row[0], row[5]) for row in rows])
    query_vector = encoder.encode_texts([query])[0]
    if query_vector.shape[0] != vectors.shape[1]:
        return []
    scores = vectors @ query_vector
    order = np.argsort(-scores)[:limit]
    return [(f"{rows[i][1]},{rows[i][2]},{rows[i][3]},{rows[i][4]}", float(scores[i])) for i in order]
