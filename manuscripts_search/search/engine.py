"""Search: queries in, ranked canvases out, with everything the web page and the CLI show.

:func:`run_search` is the engine. A :class:`SearchRequest` may carry text (searched by the
  vision-language text tower, full-text and MiniLM semantic search), an image, or "more like" an
  existing canvas or region; filters; grouping by canvas (region hits grouped under their canvas)
  or by manifest (``auto``: by manifest when one manuscript's metadata match would fill the first
  page with its pages); pagination.
  Text queries through a k-NN signal only return hits above the signal's calibrated floor
  (:mod:`.calibration`), so a query that matches nothing finds nothing.

The page says how many canvases matched (``total``): exact when every signal ran out of hits
inside the window, else a lower bound (``total_exact`` False). Facets count the same set. Rankings are fused by weighted reciprocal rank fusion
  (:mod:`.fusion` says why) and every hit explains which signal put it there.

Pagination is stable: the pages of a query are slices of one ordering, computed over a fixed
candidate window per signal (``SearchRequest.window``, 500 canvases by default; deeper pages
widen it in whole windows), with ties broken by canvas id.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from .calibration import parse_score_floors
from .facets import result_facets
from .filters import SearchFilters, canvas_filter_statement
from .fusion import RRF_K, RankedSignal, reciprocal_rank_fusion
from ..iiif.language import first_value
from ..index.vector_index import IndexReadError, VectorIndex
from ..models import CanvasLabel, Canvas, Category, Manifest
from .errors import SearchError
from .signal_registry import BY_NAME, SIGNALS as SIGNAL_TABLE, signal_names
from .region_display import ShownRegion, pick_regions
from .signals import CanvasEvidence, CanvasRanking, RegionMatch
from .space_index import SpaceIndex, open_space_index
from .thumbnails import level0_infos, thumbnail_url

log = logging.getLogger(__name__)


def load_index(index_dir: Path, space: str, backend: str = "local", ray_address: Optional[str] = None,
               deadline_s: float = 2.0) -> SpaceIndex:
    """The saved index of ``space`` (one index, or its shards searched through ``backend``);
    raises SearchError when there is none, it is unreadable, or its shards cannot be reached."""
    from ..distributed.runtime import RayUnavailableError

    try:
        index = open_space_index(index_dir, space, backend, ray_address, deadline_s)
    except (IndexReadError, RayUnavailableError) as error:
        raise SearchError(str(error)) from None
    if index is None:
        raise SearchError(f"no index for model space {space!r}: run `msearch embed` "
                          "and `msearch index` first")
    return index


# -- the full engine -----------------------------------------------------------------------------

SIGNALS = signal_names()  # every signal, in the order they run
GROUPS = ("canvas", "manifest", "auto")
MAX_LIMIT = 500  # one candidate window: an export may hold a whole result set
DEFAULT_WINDOW = 500


@dataclass
class SearchRequest:
    """What to search for, where, and which page.

    At least one of ``text``, ``image`` (a PIL image), ``like_canvas_id`` or ``like_region_id``.
    ``signals`` restricts the rankings used (default: every one available for the query);
    ``weights`` scale each signal's share in the fusion. ``weaker``: keep hits below the signals'
    score floors too.
    """

    text: Optional[str] = None
    image: Any = None
    like_canvas_id: Optional[int] = None
    like_region_id: Optional[int] = None
    filters: SearchFilters = field(default_factory=SearchFilters)
    group: str = "canvas"
    offset: int = 0
    limit: int = 20
    signals: Optional[tuple[str, ...]] = None
    weights: dict = field(default_factory=lambda: {name: 1.0 for name in signal_names()})
    window: int = DEFAULT_WINDOW
    ef: Optional[int] = None
    weaker: bool = False

    def validate(self) -> None:
        """Raises SearchError naming what is wrong."""
        if self.text is not None:
            self.text = self.text.strip()
            if len(self.text) > 1000:
                raise SearchError("the query is longer than 1000 characters")
        if not (self.text or self.image is not None or self.like_canvas_id or self.like_region_id):
            raise SearchError("nothing to search for: give a text, an image or a canvas to match")
        if self.like_canvas_id and self.like_region_id:
            raise SearchError("give either a canvas or a region to match, not both")
        if self.group not in GROUPS:
            raise SearchError(f"group must be one of {', '.join(GROUPS)}, got {self.group!r}")
        if self.offset < 0:
            raise SearchError("the offset must not be negative")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise SearchError(f"the page size must be between 1 and {MAX_LIMIT}")
        if not 10 <= self.window <= 10_000:
            raise SearchError("the candidate window must be between 10 and 10000")
        unknown = set(self.signals or ()) - set(SIGNALS)
        if unknown:
            raise SearchError(f"unknown signal {sorted(unknown)[0]!r}; known: {', '.join(SIGNALS)}")
        if any(weight < 0 for weight in self.weights.values()):
            raise SearchError("signal weights must not be negative")


@dataclass
class SearchContext:
    """What the engine may use. Anything None is simply not available (its signal is skipped,
    or the query is refused when it needs it)."""

    session: Session
    index: Optional[SpaceIndex] = None  # the vision-language space's index (maybe sharded)
    encoder: Any = None  # VisionLanguageEncoder: encodes text and image queries
    text_index: Optional[VectorIndex] = None  # the sentence-vector space's index
    text_encoder: Any = None  # TextEncoder
    # signal -> "auto" (calibrated), None (no floor) or a fixed score (MSEARCH_SCORE_FLOORS)
    score_floors: dict = field(default_factory=lambda: parse_score_floors(None))


@dataclass
class ResultHit:
    """One canvas in the results, with the evidence: matching regions, text snippets, and per
    signal its rank, own score and share of the fused score."""

    rank: int
    score: float
    canvas_id: int
    canvas: str
    canvas_label: Optional[str]
    manifest: str
    manifest_id: int
    manifest_label: Optional[str]
    xywh: Optional[str]  # the best visual region when a region, not the page, matched best
    regions: list[RegionMatch]
    snippets: list[str]
    signals: dict[str, dict]
    labels: list[str]
    service_id: Optional[str]
    service_api_version: Optional[int]
    image_url: Optional[str]
    thumbnail: Optional[str]

    @property
    def shown_regions(self) -> list[ShownRegion]:
        """The regions every view draws: the best and at most two that do not overlap it
        (``regions`` stays the full evidence)."""
        return pick_regions(self.regions, self.xywh)

    @property
    def focus_xywh(self) -> Optional[str]:
        """Where a view of the canvas opens: the best visual region when a region beat the page;
        for a hit whose picture did not match (found by its words), its first shown box; None
        when the page itself looked most like the query (its boxes are still drawn)."""
        if self.xywh or "visual" in self.signals:
            return self.xywh
        shown = self.shown_regions
        return shown[0].xywh if shown else None

    def as_dict(self) -> dict:
        data = asdict(self)
        data["regions"] = [region.as_dict() for region in self.regions]
        data["shown_regions"] = [region.as_dict() for region in self.shown_regions]
        return data


@dataclass
class ManifestGroup:
    rank: int
    score: float
    manifest_id: int
    manifest: str
    manifest_label: Optional[str]
    matching_canvases: int  # within the candidate window
    canvases: list[ResultHit]

    def as_dict(self) -> dict:
        data = {key: value for key, value in asdict(self).items() if key != "canvases"}
        data["canvases"] = [hit.as_dict() for hit in self.canvases]
        return data


@dataclass
class SearchPage:
    group: str
    offset: int
    limit: int
    hits: list[ResultHit]  # group "canvas"
    groups: list[ManifestGroup]  # group "manifest"
    has_more: bool
    candidates: int  # canvases (or manifests) ranked within the window
    signals: list[str]  # the signals that ran
    score: str  # what ``score`` means: "rrf" when fused, else the one signal's own score
    facets: dict[str, dict[str, int]]
    strategies: dict[str, Optional[str]]
    total: int = 0  # canvases matched (what the facets count)
    total_exact: bool = True  # False: every signal had more past the window, total is a lower bound
    manuscripts: int = 0  # manifests those canvases belong to
    floors: dict[str, Optional[float]] = field(default_factory=dict)  # signal -> floor applied
    below_floor: bool = False  # weaker matches were left out (ask with ``weaker``)
    grouped_automatically: bool = False  # group "auto" chose "manifest"
    # Index shards that did not answer in time: the hits are what the others found (``partial``),
    # and ``total`` is a lower bound.
    unavailable_shards: list[int] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return bool(self.unavailable_shards)

    def as_dict(self) -> dict:
        return {"group": self.group, "offset": self.offset, "limit": self.limit,
                "total": self.total, "total_exact": self.total_exact, "manuscripts": self.manuscripts,
                "has_more": self.has_more, "candidates": self.candidates, "signals": self.signals,
                "score": self.score, "facets": self.facets, "strategies": self.strategies,
                "floors": self.floors, "below_floor": self.below_floor,
                "grouped_automatically": self.grouped_automatically,
                "partial": self.partial, "unavailable_shards": self.unavailable_shards,
                "hits": [hit.as_dict() for hit in self.hits],
                "groups": [group.as_dict() for group in self.groups]}


def _wanted_signals(request: SearchRequest, context: SearchContext) -> list[str]:
    requested = set(request.signals or SIGNALS)
    wanted = [signal.name for signal in SIGNAL_TABLE if signal.name in requested and signal.wanted(request, context)]
    if not wanted:
        raise SearchError("no search signal can answer this query (no index for images, "
                          "and no text to search)")
    return wanted


def run_search(context: SearchContext, request: SearchRequest) -> SearchPage:
    """Answer ``request``; raises SearchError for a request that cannot be answered (the message
    says why: empty, unknown canvas, no index, bad page...)."""
    request.validate()
    session = context.session
    wanted = _wanted_signals(request, context)
    filters = request.filters
    if filters.labels and filters.label_space is None and context.index is not None:
        filters = request.filters = SearchFilters(**{**filters.__dict__, "label_space": context.index.space})
    canvas_filter = canvas_filter_statement(session, filters) if filters.active else None
    # Every page inside the same window is a slice of one ranking; deeper pages widen the window
    # in whole steps, so neighbouring pages still share their candidates.
    depth = request.window * -(-(request.offset + request.limit + 1) // request.window)
    rankings: list[CanvasRanking] = [
        ranking for name in wanted
        if (ranking := BY_NAME[name].rank(request, context, depth, canvas_filter)) is not None]
    floors = {r.name: r.floor for r in rankings if r.floor is not None}
    below_floor = any(r.below_floor for r in rankings)
    unavailable = sorted({shard for r in rankings for shard in r.unavailable})
    if unavailable:
        log.warning("index shards %s did not answer; the results are partial", unavailable)
    # A signal that found nothing takes no part (and a lone remaining signal keeps its own score).
    rankings = [r for r in rankings if r.canvases] or rankings[:1]
    evidence: dict[str, dict[int, CanvasEvidence]] = {
        r.name: {c.canvas_id: c for c in r.canvases} for r in rankings}
    fused = reciprocal_rank_fusion(
        [RankedSignal(r.name, r.items(), request.weights.get(r.name, 1.0)) for r in rankings], k=RRF_K)
    single = len(rankings) == 1
    # One signal: its own score (a cosine means more to a reader than 1/(60+rank)); same order.
    ordered = [(item.key, item.contributions[rankings[0].name].score if single else item.score, item)
               for item in fused]
    page_hits, groups, has_more, candidates = [], [], False, len(ordered)
    facets, manuscripts = result_facets(session, [canvas_id for canvas_id, _, _ in ordered],
                                        context.index.space if context.index is not None else None)
    group = request.group
    if group == "auto":
        group = "manifest" if _one_manuscript_floods(session, ordered, evidence, request.limit,
                                                     facets["manifest"]) else "canvas"
    if group == "canvas":
        window = ordered[request.offset:request.offset + request.limit]
        has_more = len(ordered) > request.offset + request.limit
        page_hits = _resolve_canvases(session, window, evidence, request.offset, context)
    else:
        groups, has_more, candidates = _manifest_groups(session, ordered, evidence, request, context)
    return SearchPage(group=group, offset=request.offset, limit=request.limit, hits=page_hits,
                      groups=groups, has_more=has_more, candidates=candidates,
                      signals=[r.name for r in rankings],
                      score="rrf" if not single else BY_NAME[rankings[0].name].score,
                      facets=facets, strategies={r.name: r.strategy for r in rankings},
                      total=len(ordered), total_exact=all(r.exhausted for r in rankings) and not unavailable,
                      unavailable_shards=unavailable,
                      manuscripts=manuscripts,
                      floors=floors, below_floor=below_floor,
                      grouped_automatically=request.group == "auto" and group == "manifest")


def _one_manuscript_floods(session: Session, ordered: list, evidence: dict, limit: int,
                           per_manifest: dict[str, int]) -> bool:
    """Whether the first page would be one manuscript's pages, there only because its metadata
    matched (a manifest-level document ranks every canvas of its manuscript: hundreds of identical
    cards), with more of them than a page shows. Pages that matched themselves (the picture, their
    label, a transcription) are never grouped away. Decided on the whole ranking, so every page of
    a query agrees."""
    if len(ordered) <= limit:
        return False
    first_page = [canvas_id for canvas_id, _, _ in ordered[:limit]]

    def matched_itself(canvas_id: int) -> bool:
        return any((found := by_canvas.get(canvas_id)) is not None and (found.whole_canvas or found.regions)
                   for by_canvas in evidence.values())

    metadata_only = [canvas_id for canvas_id in first_page if not matched_itself(canvas_id)]
    if len(metadata_only) * 2 <= limit:
        return False
    manifest_of = dict(session.execute(select(Canvas.id, Canvas.manifest_id).where(Canvas.id.in_(metadata_only))).all())
    counts: dict[int, int] = {}
    for canvas_id in metadata_only:
        if canvas_id in manifest_of:
            counts[manifest_of[canvas_id]] = counts.get(manifest_of[canvas_id], 0) + 1
    if not counts:
        return False
    manifest_id, on_first_page = max(counts.items(), key=lambda kv: kv[1])
    return on_first_page * 2 > limit and per_manifest.get(str(manifest_id), 0) > limit


def _resolve_canvases(session: Session, window: list, evidence: dict, first_rank: int,
                      context: SearchContext) -> list[ResultHit]:
    if not window:
        return []
    canvas_ids = [canvas_id for canvas_id, _, _ in window]
    rows = {canvas.id: (canvas, manifest) for canvas, manifest in session.execute(
        select(Canvas, Manifest).join(Manifest, Manifest.id == Canvas.manifest_id)
        .where(Canvas.id.in_(canvas_ids)))}
    labels = _canvas_labels(session, canvas_ids, context)
    infos = level0_infos(session, [canvas for canvas, _ in rows.values()])
    hits = []
    for position, (canvas_id, score, item) in enumerate(window):
        if canvas_id not in rows:
            continue  # deleted between ranking and resolving
        canvas, manifest = rows[canvas_id]
        regions: list[RegionMatch] = []
        snippets: list[str] = []
        for name in item.contributions:
            found = evidence[name].get(canvas_id)
            if found is not None:
                regions += found.regions
                snippets += [s for s in found.snippets if s not in snippets]
        regions.sort(key=lambda region: -region.score)
        visual = evidence.get("visual", {}).get(canvas_id)
        best_region = None
        if visual is not None and visual.regions and (not visual.whole_canvas
                                                      or visual.regions[0].score > visual.score - 1e-9):
            best_region = visual.regions[0].xywh
        hits.append(ResultHit(
            rank=first_rank + position + 1, score=round(float(score), 6), canvas_id=canvas.id,
            canvas=canvas.iiif_id, canvas_label=first_value(canvas.label), manifest=manifest.iiif_id,
            manifest_id=manifest.id, manifest_label=first_value(manifest.label), xywh=best_region,
            regions=regions, snippets=snippets[:3],
            signals={name: c.as_dict() for name, c in item.contributions.items()},
            labels=labels.get(canvas.id, []), service_id=canvas.service_id,
            service_api_version=canvas.service_api_version, image_url=canvas.image_url,
            thumbnail=thumbnail_url(canvas, infos=infos)))
    return hits


def _manifest_groups(session: Session, ordered: list, evidence: dict, request: SearchRequest,
                     context: SearchContext, canvases_per_group: int = 3):
    manifest_of = dict(session.execute(select(Canvas.id, Canvas.manifest_id).where(
        Canvas.id.in_([canvas_id for canvas_id, _, _ in ordered]))).all()) if ordered else {}
    grouped: dict[int, list] = {}
    order: list[int] = []
    for entry in ordered:
        manifest_id = manifest_of.get(entry[0])
        if manifest_id is None:
            continue
        if manifest_id not in grouped:
            grouped[manifest_id] = []
            order.append(manifest_id)
        grouped[manifest_id].append(entry)
    page = order[request.offset:request.offset + request.limit]
    manifests = {m.id: m for m in session.scalars(select(Manifest).where(Manifest.id.in_(page)))} if page else {}
    groups = []
    for position, manifest_id in enumerate(page):
        entries = grouped[manifest_id]
        manifest = manifests[manifest_id]
        groups.append(ManifestGroup(
            rank=request.offset + position + 1, score=round(float(entries[0][1]), 6), manifest_id=manifest_id,
            manifest=manifest.iiif_id, manifest_label=first_value(manifest.label),
            matching_canvases=len(entries),
            canvases=_resolve_canvases(session, entries[:canvases_per_group], evidence, 0, context)))
    return groups, len(order) > request.offset + request.limit, len(order)


def _canvas_labels(session: Session, canvas_ids: list[int], context: SearchContext) -> dict[int, list[str]]:
    if not canvas_ids:
        return {}
    statement = (select(CanvasLabel.canvas_id, Category.name).join(Category, Category.id == CanvasLabel.category_id)
                 .where(CanvasLabel.canvas_id.in_(canvas_ids)).order_by(Category.name))
    if context.index is not None:
        statement = statement.where(CanvasLabel.space == context.index.space)
    labels: dict[int, list[str]] = {}
    for canvas_id, name in session.execute(statement):
        labels.setdefault(canvas_id, []).append(name)
    return labels
