"""HTML search pages: the query box (text, or an image by upload, paste, drop or URL), the result
grid with filters and facets, and "more like this" from a canvas or a drawn region."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from sqlalchemy import select

from manuscripts_search.iiif.language import first_value
from manuscripts_search.models import Collection

from .canvas_info import load_canvas, parse_xywh
from .database import get_session
from .engine import describe_setup, execute, image_model_missing, prepare_search
from .errors import AppError
from .facet_views import century_name, date_bounds, decade_name, facet_labels
from .hit_views import hit_views
from .query_image import read_query_image
from .query_image_store import EXPIRED_MESSAGE, keep_query_image, query_image_path
from .region_images import region_image
from .search_params import parse_search

bp = Blueprint("search", __name__)


@bp.get("/")
def index():
    if request.args.get("iiif-content"):
        return redirect(url_for("viewer.view", **{"iiif-content": request.args["iiif-content"]}))
    return render_template("index.html", collections=_collections())


@bp.get("/search")
def results():
    if not any(request.args.get(name) for name in ("q", "like", "like_region", "image")):
        if "q" in request.args:
            parse_search(request.args, 1, 1)  # an empty q: the 400 that says so
        return redirect(url_for("search.index"))
    parsed = parse_search(request.args, current_app.config["SEARCH_DEFAULT_K"], current_app.config["SEARCH_MAX_K"],
                          default_group="auto")
    return _render_results(parsed)


@bp.post("/search")
def image_results():
    """A search with an image (and optionally words): the form posts the file or its URL. The
    image is kept under a handle and the browser sent on to ``GET /search?image=<handle>``, so
    that the results have pages, filters and exports, and can be reloaded, as a text search."""
    parsed = parse_search(request.form, current_app.config["SEARCH_DEFAULT_K"], current_app.config["SEARCH_MAX_K"],
                          require_query=False, default_group="auto")
    image = read_query_image(request.files, request.form)
    if image is None and not parsed.text and not parsed.image_handle:
        raise AppError("Give an image (upload, paste, drop or URL) or type a few words.", 400)
    if image is not None:
        parsed.image_handle = keep_query_image(image)
    return redirect(url_for("search.results") + "?" + parsed.query_string(page=None), code=303)


@bp.get("/query-images/<handle>.jpg")  # not under /search: showing it is no search to rate-limit
def query_image(handle: str):
    """The image of an image search, as kept (a JPEG this app wrote)."""
    try:
        data = query_image_path(handle).read_bytes()  # small: at most 1024 px, re-encoded
    except FileNotFoundError:
        raise AppError(EXPIRED_MESSAGE, 410) from None
    return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@bp.get("/search/similar")
def similar_region():
    """More like a region drawn on a canvas: the region's pixels become an image query."""
    canvas_id = request.args.get("canvas", "")
    if not canvas_id.isdigit():
        raise AppError("canvas must be a canvas id.", 400)
    session = get_session()
    canvas = load_canvas(session, int(canvas_id))
    rect = parse_xywh(request.args.get("xywh"), canvas=canvas)
    if rect is None:
        return redirect(url_for("search.results", like=canvas.id))
    parsed = parse_search(request.args, current_app.config["SEARCH_DEFAULT_K"], current_app.config["SEARCH_MAX_K"],
                          require_query=False, default_group="auto")
    image = region_image(canvas, rect)
    # Kept like an uploaded image, so that the pager, the filters and the exports carry it.
    parsed.image_handle = keep_query_image(image)
    return _render_results(parsed, image=image, region_source=(canvas, f"{rect.x},{rect.y},{rect.w},{rect.h}"))


def _render_results(parsed, image=None, region_source=None):
    session = get_session()
    search_request = parsed.to_request(image)
    image = search_request.image
    setup = prepare_search(session, text=bool(parsed.text), visual=parsed.reads_with_model or image is not None,
                           image_space_needed=bool(parsed.like_canvas_id or parsed.like_region_id),
                           image=image is not None)
    if image is not None and setup.context.encoder is None:
        raise AppError(image_model_missing(setup), 503)
    page = execute(setup, search_request)
    hits = page.hits if page.group == "canvas" else [hit for group in page.groups for hit in group.canvases]
    views = {view.hit.canvas_id: view for view in hit_views(session, hits, parsed.text)}
    like_canvas = load_canvas(session, parsed.like_canvas_id) if parsed.like_canvas_id else None
    return render_template(
        "results.html", parsed=parsed, query=parsed.text or "", page=page, views=views,
        notices=describe_setup(setup)["notices"], image_query=image is not None, like_canvas=like_canvas,
        query_image_url=url_for("search.query_image", handle=parsed.image_handle) if parsed.image_handle else None,
        like_canvas_label=first_value(like_canvas.label) if like_canvas else None, region_source=region_source,
        facet_labels=facet_labels(session, page.facets), century_name=century_name, decade_name=decade_name,
        date_bounds=date_bounds, export_max=current_app.config["EXPORT_MAX_K"], collections=_collections())


def _collections() -> list[tuple[int, str]]:
    rows = get_session().execute(select(Collection.id, Collection.label, Collection.iiif_id)
                                 .order_by(Collection.id).limit(500))
    return [(collection_id, first_value(label) or iiif_id) for collection_id, label, iiif_id in rows]
