"""IIIF endpoints: Content Search 2.0 and 1.0 (and their autocomplete) per manifest and per
exported result set, manifests re-published with both search services declared, and any result
set exported as a Presentation 3 Manifest or Collection.

All answers are JSON-LD with CORS open, so that any IIIF viewer can use them.
"""
from __future__ import annotations

import json
from typing import Optional
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, request, url_for
from sqlalchemy import select

from manuscripts_search.iiif.content_search import (
    ResultPage,
    SearchMatch,
    SearchServiceURLs,
    autocomplete1_response,
    autocomplete2_response,
    search1_response,
    search2_response,
    search_services,
    with_search_services,
)
from manuscripts_search.iiif.export import (ExportCanvas, ExportError, ExportImage, ExportRegion, result_collection,
                                            result_manifest)
from manuscripts_search.iiif.language import first_value
from manuscripts_search.iiif.republish import republished
from manuscripts_search.models import Canvas, Manifest

from .canvas_info import http_url, manifest_json_url
from manuscripts_search.search.content_matches import Scope, autocomplete_terms, text_hits, visual_hits
from .database import get_session
from .engine import execute, prepare_search
from .errors import AppError
from .search_params import parse_search

bp = Blueprint("iiif", __name__, url_prefix="/iiif")

PRESENTATION_3_TYPE = 'application/ld+json;profile="http://iiif.io/api/presentation/3/context.json"'
PRESENTATION_2_TYPE = 'application/ld+json;profile="http://iiif.io/api/presentation/2/context.json"'
SEARCH_PARAMETERS = {"q", "motivation", "date", "user", "page"}
MAX_SET_CANVASES = 200


def _json_ld(document: dict, media_type: str = "application/ld+json") -> Response:
    response = Response(json.dumps(document, ensure_ascii=False), mimetype=None, content_type=media_type)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _load_manifest(manifest_id: int) -> Manifest:
    manifest = get_session().get(Manifest, manifest_id) if 0 < manifest_id < 2**63 else None
    if manifest is None:
        raise AppError(f"There is no manifest with id {manifest_id}.", 404)
    return manifest


def _parse_set(ids: str) -> Scope:
    parts = ids.split(",")
    if not ids or len(parts) > MAX_SET_CANVASES or not all(p.isdigit() and 0 < len(p) <= 18 for p in parts):
        raise AppError(f"A canvas set is 1 to {MAX_SET_CANVASES} canvas ids separated by commas.", 400)
    return Scope(canvas_ids=tuple(dict.fromkeys(int(p) for p in parts)))


def _scope(kind: str, key: str) -> Scope:
    if kind == "manifest":
        if not key.isdigit() or len(key) > 18:
            raise AppError("A manifest id is a whole number.", 404)
        return Scope(manifest_id=_load_manifest(int(key)).id)
    if kind == "set":
        return _parse_set(key)
    raise AppError(f"Unknown search scope {kind!r}.", 404)


def service_urls(kind: str, key: str) -> SearchServiceURLs:
    def url(endpoint: str, version: int) -> str:
        return url_for(endpoint, version=version, kind=kind, key=key, _external=True)

    return SearchServiceURLs(search1=url("iiif.content_search", 1), autocomplete1=url("iiif.autocomplete", 1),
                             search2=url("iiif.content_search", 2), autocomplete2=url("iiif.autocomplete", 2))


# -- Content Search ------------------------------------------------------------------------------

@bp.get("/search/<int:version>/<kind>/<key>")
def content_search(version: int, kind: str, key: str):
    if version not in (1, 2):
        raise AppError("Content Search versions 1 and 2 are served.", 404)
    scope = _scope(kind, key)
    query = (request.args.get("q") or "").strip()[:1000]
    page_size = current_app.config["CONTENT_SEARCH_PAGE_SIZE"]
    page_number = _page_number()
    ignored = tuple(sorted(name for name in ("motivation", "date", "user") if name in request.args))
    matches = _matches(scope, query, version) if query else []
    total = len(matches)
    last = max(1, -(-total // page_size))
    if page_number > last:
        raise AppError(f"page must be between 1 and {last} for this query.", 400)
    base = url_for("iiif.content_search", version=version, kind=kind, key=key, _external=True)

    def page_url(number: int) -> str:
        return f"{base}?{urlencode({'q': query, 'page': number})}"

    result_page = ResultPage(
        page_url=page_url(page_number), collection_url=f"{base}?{urlencode({'q': query})}", total=total,
        start_index=(page_number - 1) * page_size, first_url=page_url(1), last_url=page_url(last),
        next_url=page_url(page_number + 1) if page_number < last else None,
        prev_url=page_url(page_number - 1) if page_number > 1 else None, ignored=ignored)
    window = matches[(page_number - 1) * page_size:page_number * page_size]
    if version == 2:
        return _json_ld(search2_response(window, result_page))
    return _json_ld(search1_response(window, result_page))


def _page_number() -> int:
    raw = (request.args.get("page") or "1").strip()
    if not (raw.isdigit() and len(raw) <= 6 and int(raw) >= 1):
        raise AppError(f"page must be a whole number from 1, got {raw[:20]!r}.", 400)
    return int(raw)


def _matches(scope: Scope, query: str, version: int) -> list[SearchMatch]:
    """Text matches in canvas order, then visual matches of the query (best first); Search 1
    leaves out matches on the manifest itself (its viewers jump to canvases)."""
    session = get_session()
    root = request.url_root.rstrip("/")
    try:
        hits = text_hits(session, scope, query, include_metadata=version == 2)
    except ValueError:
        hits = []
    setup = prepare_search(session, text=False, visual=True)
    context = setup.context
    if context.encoder is not None and context.index is not None and context.encoder.supports_text:
        vector = context.encoder.encode_texts([query])[0]
        if vector.shape[0] == context.index.dim:
            hits += visual_hits(session, scope, context.index, vector, current_app.config["CONTENT_SEARCH_VISUAL_MATCHES"])
    spans_manifests = scope.manifest_id is None
    matches = []
    for hit in hits:
        part_of = None
        if spans_manifests:
            part_of = {"id": manifest_json_url(hit.manifest) or hit.manifest.iiif_id, "type": "Manifest",
                       "label": hit.manifest.label or {"none": [hit.manifest.iiif_id]}}
        if hit.kind == "metadata":
            matches.append(SearchMatch(
                annotation_id=f"{root}/iiif/match/metadata/{hit.key.replace(':', '/')}",
                target_id=manifest_json_url(hit.manifest) or hit.manifest.iiif_id, target_type="Manifest",
                text=hit.text, motivation="describing", exact=hit.exact, prefix=hit.prefix, suffix=hit.suffix,
                label={"en": ["Manifest metadata"]}))
            continue
        canvas = hit.canvas
        label = canvas.label or None
        if hit.kind == "visual":
            shown = f"region {hit.rank} of the page, " if hit.rank else ""
            text = f"Looks like “{query}” ({shown}similarity {hit.score:.3f})"
            annotation_id = f"{root}/iiif/match/visual/{canvas.id}/{hit.xywh or 'page'}?{urlencode({'q': query})}"
        else:
            text = hit.text
            annotation_id = http_url(hit.annotation_iiif_id) or f"{root}/iiif/match/{hit.key.replace(':', '/')}"
        matches.append(SearchMatch(
            annotation_id=annotation_id, target_id=canvas.iiif_id, text=text, motivation=hit.motivation,
            xywh=hit.xywh, exact=hit.exact, prefix=hit.prefix, suffix=hit.suffix, label=label, part_of=part_of,
            extent=_canvas_extent(canvas)))
    return matches


def _canvas_extent(canvas: Canvas) -> Optional[tuple[int, int]]:
    """The canvas's coordinate space: its declared size, else its image's (which then defines it)."""
    if canvas.width and canvas.height:
        return canvas.width, canvas.height
    if canvas.image_width and canvas.image_height and not canvas.target_xywh:
        return canvas.image_width, canvas.image_height
    return None


@bp.get("/autocomplete/<int:version>/<kind>/<key>")
def autocomplete(version: int, kind: str, key: str):
    if version not in (1, 2):
        raise AppError("Content Search versions 1 and 2 are served.", 404)
    scope = _scope(kind, key)
    prefix = (request.args.get("q") or "").strip()[:100]
    if not prefix:
        raise AppError("q is required: the first letters of a word.", 400)
    minimum = request.args.get("min", "1")
    minimum = int(minimum) if minimum.isdigit() and len(minimum) < 7 else 1
    ignored = tuple(sorted(name for name in ("motivation", "date", "user") if name in request.args))
    terms = autocomplete_terms(get_session(), scope, prefix, limit=20, minimum=max(1, minimum))
    page_url = request.url
    if version == 2:
        return _json_ld(autocomplete2_response(page_url, terms, ignored))
    search_base = url_for("iiif.content_search", version=1, kind=kind, key=key, _external=True)
    return _json_ld(autocomplete1_response(page_url, terms, lambda term: f"{search_base}?{urlencode({'q': term})}",
                                           ignored))


# -- re-published manifests ------------------------------------------------------------------------

@bp.get("/manifest/<int:manifest_id>")
def manifest(manifest_id: int):
    """The harvested manifest as published, plus our Search 1 and Search 2 services."""
    row = _load_manifest(manifest_id)
    if not row.raw_json:
        raise AppError("This manifest's JSON was not kept by the harvester; open its original URL instead.", 404)
    try:
        document = json.loads(row.raw_json)
    except ValueError:
        raise AppError("This manifest's stored JSON cannot be read.", 404) from None
    if not isinstance(document, dict):
        raise AppError("This manifest's stored JSON is not an object.", 404)
    version = 3 if (row.iiif_version or 3) >= 3 else 2
    declared = document.get("id" if version == 3 else "@id")
    original = http_url(declared if isinstance(declared, str) else None) or manifest_json_url(row)
    document = republished(document, url_for("iiif.manifest", manifest_id=row.id, _external=True), original, version)
    document = with_search_services(document, service_urls("manifest", str(row.id)), version)
    return _json_ld(document, PRESENTATION_3_TYPE if version == 3 else PRESENTATION_2_TYPE)


# -- export ----------------------------------------------------------------------------------------

def _export_hits():
    parsed = parse_search(request.args, current_app.config["EXPORT_DEFAULT_K"], current_app.config["EXPORT_MAX_K"])
    session = get_session()
    setup = prepare_search(session, text=bool(parsed.text), visual=parsed.reads_with_model,
                           image_space_needed=bool(parsed.like_canvas_id or parsed.like_region_id),
                           image=bool(parsed.image_handle))
    parsed.group = "canvas"
    page = execute(setup, parsed.to_request())  # the kept query image, when it names one
    return parsed, page.hits


def _result_label(parsed) -> dict:
    if parsed.text:
        return {"en": [f"Search results for “{parsed.text}”"]}
    if parsed.image_handle:
        return {"en": ["Canvases like the query image"]}
    return {"en": [f"Canvases like canvas {parsed.like_canvas_id or parsed.like_region_id}"]}


@bp.get("/export/manifest")
def export_manifest():
    """The hits of a search (same parameters as /api/search) as one Presentation 3 Manifest."""
    parsed, hits = _export_hits()
    session = get_session()
    canvases = {c.id: c for c in session.scalars(select(Canvas).where(Canvas.id.in_([h.canvas_id for h in hits])))}
    export_canvases = []
    for hit in hits:
        canvas = canvases.get(hit.canvas_id)
        if canvas is None:
            continue
        source = canvas.manifest
        regions = []
        for region in hit.shown_regions:  # the boxes its result card draws
            text = region.label if region.label != "picture" else (
                f"Looks like “{parsed.text}”" if parsed.text else "Looks alike")
            regions.append(ExportRegion(region.xywh, f"{region.rank}. {text} ({region.signal} {region.score:.3f})"))
        export_canvases.append(ExportCanvas(
            canvas_id=canvas.iiif_id, label=canvas.label or {}, width=canvas.width, height=canvas.height,
            image=ExportImage(canvas.service_id, canvas.service_api_version, canvas.service_level, canvas.image_url,
                              canvas.image_format, canvas.image_width, canvas.image_height),
            manifest_id=manifest_json_url(source) or source.iiif_id, manifest_label=source.label or {},
            target_xywh=canvas.target_xywh, homepage=tuple(_homepage_urls(source)),
            required_statement=source.required_statement if isinstance(source.required_statement, dict) else None,
            rights=source.rights, regions=tuple(regions), score=hit.score))
    ids = ",".join(str(c) for c in dict.fromkeys(h.canvas_id for h in hits)) or "0"
    urls = service_urls("set", ids) if hits else None
    services = search_services(urls, 3) if urls else None
    query_string = parsed.query_string()
    try:
        exported = result_manifest(request.url, _result_label(parsed), export_canvases,
                                   summary={"en": [f"{len(export_canvases)} canvases found by manuscripts-search."]},
                                   homepage_url=url_for("search.results", _external=True) + "?" + query_string,
                                   services=services)
    except ExportError as error:
        raise AppError(str(error), 500) from None
    document = exported.json
    if services:
        document["@context"] = ["http://iiif.io/api/search/2/context.json", document["@context"]] \
            if isinstance(document.get("@context"), str) else document["@context"]
    response = _json_ld(document, PRESENTATION_3_TYPE)
    if exported.skipped:
        response.headers["X-Skipped-Canvases"] = str(len(exported.skipped))
    return response


def _homepage_urls(manifest: Manifest) -> list[str]:
    urls = []
    for item in manifest.homepage or []:
        url = http_url(item if isinstance(item, str) else (item.get("id") or item.get("@id"))
                       if isinstance(item, dict) else None)
        if url:
            urls.append(url)
    return urls


@bp.get("/export/collection")
def export_collection():
    """The manifests holding the hits of a search, as one Presentation 3 Collection."""
    parsed, hits = _export_hits()
    session = get_session()
    manifests = {m.id: m for m in session.scalars(select(Manifest).where(
        Manifest.id.in_({h.manifest_id for h in hits})))}
    items: list[tuple[str, dict]] = []
    for hit in hits:
        manifest_row: Optional[Manifest] = manifests.get(hit.manifest_id)
        if manifest_row is not None:
            items.append((manifest_json_url(manifest_row) or manifest_row.iiif_id,
                          manifest_row.label or {"none": [first_value(manifest_row.label) or manifest_row.iiif_id]}))
    try:
        document = result_collection(request.url, _result_label(parsed), items,
                                     homepage_url=url_for("search.results", _external=True) + "?" + parsed.query_string())
    except ExportError as error:
        raise AppError(str(error), 500) from None
    return _json_ld(document, PRESENTATION_3_TYPE)


@bp.after_request
def _cors(response):
    response.headers.setdefault("Access-Control-Allow-Origin", "*")
    return response
