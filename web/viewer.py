"""The canvas page: deep zoom (OpenSeadragon) zoomed to the hit's best region, the regions its
card showed drawn and labelled, every match of the query on this canvas navigable, the
manifest's metadata (sanitised), required statement and rights, a IIIF Content State share
link, "more like this", and other digitisations. ``/view?iiif-content=…`` opens whatever a
content state points at."""
from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from sqlalchemy import or_, select

from manuscripts_search.iiif.content_state import (ContentStateError, canvas_content_state,
                                                   content_state_parameter, parse_content_state)
from manuscripts_search.iiif.language import first_value
from manuscripts_search.models import Canvas, Manifest
from manuscripts_search.search.region_display import MAX_SHOWN, pick_regions, region_label
from manuscripts_search.search.signals import RegionMatch

from .canvas_info import (http_url, image_placement, info_json_url, load_canvas, manifest_json_url,
                          neighbour_ids, overlay, parse_xywh, rights_label, tile_source)
from .database import get_session
from .duplicates import find_duplicates
from .errors import AppError
from .region_images import region_image
from .sanitise import language_values, metadata_rows, statement_row
from .vendor import openseadragon_installed

bp = Blueprint("viewer", __name__)
MAX_HIGHLIGHTS = 30


@bp.get("/canvas/<int:canvas_id>")
def canvas(canvas_id: int):
    session = get_session()
    canvas_row = load_canvas(session, canvas_id)
    region = parse_xywh(request.args.get("xywh"), canvas=canvas_row)
    query = (request.args.get("q") or "").strip()[:1000]
    manifest = canvas_row.manifest
    previous_id, next_id = neighbour_ids(session, canvas_row)
    highlights, notices = _highlights(session, canvas_row, region, query)
    source = tile_source(canvas_row)
    # Handed to static/viewer.js as JSON (the tojson filter escapes <, > and &), never as markup.
    viewer_config = None
    if source is not None:
        viewer_config = {
            "tileSource": source,
            "placement": image_placement(canvas_row),
            "overlay": overlay(canvas_row, region),
            "highlights": highlights,
            "canvasWidth": canvas_row.width,
            "canvasHeight": canvas_row.height,
            "prefixUrl": url_for("vendor.openseadragon", filename="images/"),
            "similarUrl": url_for("search.similar_region", canvas=canvas_row.id),
            "duplicatesUrl": url_for("viewer.duplicates", canvas_id=canvas_row.id),
        }
    manifest_ref = manifest_json_url(manifest) or manifest.iiif_id
    region_xywh = f"{region.x},{region.y},{region.w},{region.h}" if region else None
    state = content_state_parameter(canvas_content_state(canvas_row.iiif_id, manifest_ref, region_xywh))
    republished = url_for("iiif.manifest", manifest_id=manifest.id, _external=True)
    return render_template(
        "canvas.html",
        canvas=canvas_row,
        canvas_label=first_value(canvas_row.label),
        manifest=manifest,
        manifest_label=first_value(manifest.label),
        manifest_json_url=manifest_json_url(manifest),
        info_json_url=info_json_url(canvas_row),
        region=region,
        query=query,
        highlights=highlights,
        notices=notices,
        viewer_config=viewer_config,
        viewer_installed=openseadragon_installed(current_app),
        previous_id=previous_id,
        next_id=next_id,
        summary=[value for value in language_values(manifest.summary)],
        metadata=metadata_rows(manifest.metadata_entries),
        required_statement=statement_row(manifest.required_statement),
        rights=http_url(manifest.rights),
        rights_name=rights_label(manifest.rights),
        homepages=[h for h in (_link(item) for item in manifest.homepage or []) if h],
        providers=[v for p in manifest.providers or [] for v in language_values(
            p.get("label") if isinstance(p, dict) and "label" in p else p)[:1]],
        share_url=url_for("viewer.view", _external=True, **{"iiif-content": state}),
        content_state=state,
        republished_manifest=republished,
        mirador_url=url_for("vendor.mirador_page", manifest=republished),
    )


def _link(item) -> dict | None:
    if isinstance(item, str):
        url = http_url(item)
        return {"url": url, "label": url} if url else None
    if isinstance(item, dict):
        url = http_url(item.get("id") or item.get("@id"))
        if url:
            labels = language_values(item.get("label"))
            return {"url": url, "label": labels[0] if labels else url}
    return None


def _carried_regions(canvas: Canvas, region) -> list[str]:
    """The regions the hit link carries, in the order its card ranks them: ``xywh`` (the one
    to open on) and the others the card drew (``shown``, separated by ";"). Each is read like
    ``xywh``; a bad one is a 400."""
    carried = [f"{region.x},{region.y},{region.w},{region.h}"] if region is not None else []
    raw = (request.args.get("shown") or "").strip()
    parts = [part for part in raw.split(";") if part.strip()] if raw else []
    if len(carried) + len(parts) > MAX_SHOWN:
        raise AppError(f"xywh and shown name at most {MAX_SHOWN} regions together, "
                       f"got {len(carried) + len(parts)}.", 400)
    for part in parts:
        rect = parse_xywh(part, "shown", canvas=canvas)
        carried.append(f"{rect.x},{rect.y},{rect.w},{rect.h}")
    return list(dict.fromkeys(carried))


def _highlights(session, canvas: Canvas, region, query: str) -> tuple[list[dict], list[str]]:
    """Every match of ``query`` on the page, listed and navigable, the drawn ones first.

    Drawn (labelled, ``rank`` set) are the regions the hit link carried, which are the boxes of
    its card; opened without them, the page's own matches picked as a card picks them
    (search/region_display.py). The rest are outlined only when stepped to."""
    from manuscripts_search.search.content_matches import Scope, canvas_visual_regions, text_hits

    matches: list[RegionMatch] = []
    listed: dict[str, tuple[str, str]] = {}  # xywh -> (label in the list, kind), first match wins
    notices: list[str] = []
    if query:
        try:
            for hit in text_hits(session, Scope(canvas_ids=(canvas.id,)), query, include_metadata=False):
                if hit.xywh:
                    matches.append(RegionMatch(hit.xywh, 0.0, "fulltext", hit.text))
                    listed.setdefault(hit.xywh, (f"“{hit.exact}” in {hit.text[:80]}", "text"))
        except ValueError:
            pass
        from .engine import prepare_search

        setup = prepare_search(session, text=False, visual=True)
        if setup.context.encoder is not None and setup.context.index is not None \
                and setup.context.encoder.supports_text:
            for xywh, score in canvas_visual_regions(session, canvas, setup.context.encoder,
                                                     setup.context.index.space, query, limit=3):
                matches.append(RegionMatch(xywh, score, "visual"))
                listed.setdefault(xywh, (f"Looks like “{query[:40]}” ({score:.3f})", "visual"))
        notices += [n for n in setup.notices if "image model" in n]
    carried = _carried_regions(canvas, region)
    if carried:
        by_xywh: dict[str, RegionMatch] = {}
        for match in matches:
            by_xywh.setdefault(match.xywh, match)
        # A carried box the page's own matches do not name was a region the picture search found.
        unnamed = "picture" if query else "search hit"
        drawn = [(xywh, region_label(by_xywh[xywh]) if xywh in by_xywh else unnamed,
                  "hit" if region is not None and position == 0 else listed.get(xywh, ("", "visual"))[1])
                 for position, xywh in enumerate(carried)]
    else:
        drawn = [(shown.xywh, shown.label, listed[shown.xywh][1]) for shown in pick_regions(matches)]
    named = f"Looks like “{query[:40]}”" if query else "Search hit"
    found = [(xywh, listed.get(xywh, (named, kind))[0], kind, rank, f"{rank} · {label}")
             for rank, (xywh, label, kind) in enumerate(drawn, 1)]
    found += [(xywh, label, kind, None, None) for xywh, (label, kind) in listed.items()]
    highlights, seen = [], set()
    for xywh, label, kind, rank, caption in found:
        if xywh in seen or len(highlights) >= MAX_HIGHLIGHTS:
            continue
        seen.add(xywh)
        try:
            rect = parse_xywh(xywh)
        except AppError:
            continue
        box = overlay(canvas, rect)
        if box:
            highlights.append({"xywh": xywh, "label": label, "kind": kind, "rank": rank, "caption": caption, **box})
    return highlights, notices


@bp.get("/canvas/<int:canvas_id>/duplicates")
def duplicates(canvas_id: int):
    """Other digitisations of this page (or of a drawn region, ``xywh``)."""
    session = get_session()
    canvas_row = load_canvas(session, canvas_id)
    rect = parse_xywh(request.args.get("xywh"), canvas=canvas_row)
    image = region_image(canvas_row, rect) if rect else None
    result = find_duplicates(session, canvas_row, image)
    return render_template("duplicates.html", canvas=canvas_row, canvas_label=first_value(canvas_row.label),
                           manifest_label=first_value(canvas_row.manifest.label), region=rect, result=result)


@bp.get("/view")
def view():
    """Open a IIIF Content State (``iiif-content``): a canvas (and region) or a manifest we hold."""
    raw = request.args.get("iiif-content", "")
    try:
        target = parse_content_state(raw)
    except ContentStateError as error:
        raise AppError(f"The iiif-content parameter cannot be read: {error}.", 400) from None
    session = get_session()
    manifest_ids = None
    if target.manifest_id:
        manifest_ids = list(session.scalars(select(Manifest.id).where(or_(
            Manifest.iiif_id == target.manifest_id, Manifest.url == target.manifest_id,
            Manifest.fetched_from == target.manifest_id))))
    if target.resource_type in ("Canvas", "Unknown"):
        statement = select(Canvas.id).where(Canvas.iiif_id == target.resource_id)
        if manifest_ids:
            statement = statement.where(Canvas.manifest_id.in_(manifest_ids))
        canvas_id = session.scalar(statement.order_by(Canvas.id).limit(1))
        if canvas_id is not None:
            xywh = ",".join(str(v) for v in target.xywh) if target.xywh else None
            return redirect(url_for("viewer.canvas", canvas_id=canvas_id, xywh=xywh))
    if target.resource_type in ("Manifest", "Unknown"):
        manifest_id = session.scalar(select(Manifest.id).where(or_(
            Manifest.iiif_id == target.resource_id, Manifest.url == target.resource_id)).limit(1))
        if manifest_id is not None:
            return redirect(url_for("browse.manifest", manifest_id=manifest_id))
    raise AppError("The content state points at a resource this site has not harvested "
                   f"({target.resource_id[:200]}).", 404)
