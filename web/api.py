"""JSON API: search (text, image, more-like-this, filters, facets, paging), canvases, manifests,
sources, collections, harvest status, near-duplicates, and admin actions (bearer token).
Described by the OpenAPI document at /api/openapi.json (:mod:`web.openapi`)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, url_for
from sqlalchemy import func, select

from manuscripts_search.iiif.content_state import canvas_content_state, content_state_parameter
from manuscripts_search.models import Canvas, Collection, Embedding, HarvestError, Manifest, Region
from manuscripts_search.store.error_summary import error_groups, manifest_counts

from . import auth, catalogue
from .admin_actions import add_source, delete_manifest, delete_source, load_job, load_source, start_harvest
from .canvas_info import canvas_summary, load_canvas, manifest_json_url, parse_xywh
from .database import get_session
from .duplicates import find_duplicates
from .engine import describe_setup, execute, image_model_missing, prepare_search
from .errors import AppError
from .facet_views import facet_labels
from .harvest_jobs import list_jobs
from .hit_views import hit_views
from .query_image import read_query_image
from .query_image_store import keep_query_image
from .thumbnails import canvas_thumbnails
from .region_images import region_image
from .resources import saved_indexes
from .search_params import parse_search

bp = Blueprint("api", __name__, url_prefix="/api")


def _search_response(parsed, image=None):
    session = get_session()
    search_request = parsed.to_request(image)
    image = search_request.image
    setup = prepare_search(session, text=bool(parsed.text), visual=parsed.reads_with_model or image is not None,
                           image_space_needed=bool(parsed.like_canvas_id or parsed.like_region_id),
                           image=image is not None)
    if image is not None and setup.context.encoder is None:
        raise AppError(image_model_missing(setup), 503)
    page = execute(setup, search_request)
    body = {"query": parsed.text, "k": parsed.k, "page": parsed.page, "group": page.group,
            "grouped_automatically": page.grouped_automatically,
            "total": page.total, "total_exact": page.total_exact, "manuscripts": page.manuscripts,
            "has_more": page.has_more, "candidates": page.candidates, "signals": page.signals,
            "score": page.score, "floors": page.floors, "below_floor": page.below_floor,
            # Index shards that did not answer in time: the hits are the others' (total a lower bound).
            "partial": page.partial, "unavailable_shards": page.unavailable_shards,
            "facets": page.facets, "facet_labels": facet_labels(session, page.facets),
            "filters": parsed.filters.as_dict(), **describe_setup(setup)}
    if page.group == "canvas":
        body["hits"] = [view.as_dict() for view in hit_views(session, page.hits, parsed.text)]
    else:
        body["groups"] = []
        for group in page.groups:
            data = group.as_dict()
            data["canvases"] = [view.as_dict() for view in hit_views(session, group.canvases, parsed.text)]
            body["groups"].append(data)
    if parsed.image_handle:
        body["query_image"] = {"handle": parsed.image_handle,
                               "url": url_for("search.query_image", handle=parsed.image_handle, _external=True)}
    if image is None or parsed.image_handle:  # a query that a URL can repeat
        query_string = parsed.query_string()
        body["links"] = {
            "html": url_for("search.results") + "?" + parsed.query_string(group=parsed.group),
            "export_manifest": url_for("iiif.export_manifest", _external=True) + "?" + query_string,
            "export_collection": url_for("iiif.export_collection", _external=True) + "?" + query_string,
        }
        if page.has_more:
            body["links"]["next"] = url_for("api.search") + "?" + parsed.query_string(page=parsed.page + 1)
    return jsonify(body)


@bp.get("/search")
def search():
    parsed = parse_search(request.args, current_app.config["API_DEFAULT_K"], current_app.config["SEARCH_MAX_K"])
    return _search_response(parsed)


@bp.post("/search")
def search_with_image():
    """multipart/form-data: ``image`` (a file) or ``image_url``, and optionally ``q`` and filters."""
    form = request.form
    parsed = parse_search(form, current_app.config["API_DEFAULT_K"], current_app.config["SEARCH_MAX_K"],
                          require_query=False)
    image = read_query_image(request.files, form)
    if image is None and not parsed.text and not parsed.like_canvas_id and not parsed.image_handle:
        raise AppError("Give an image (field image or image_url) or a query (q).", 400)
    if image is not None:  # kept, so that the next page and the exports can name it
        parsed.image_handle = keep_query_image(image)
    return _search_response(parsed, image)


@bp.get("/canvas/<int:canvas_id>")
def canvas(canvas_id: int):
    session = get_session()
    canvas_row = load_canvas(session, canvas_id)
    summary = canvas_summary(canvas_row, canvas_thumbnails(session, [canvas_row])[canvas_row.id])
    summary["viewer_url"] = url_for("viewer.canvas", canvas_id=canvas_id)
    manifest_ref = manifest_json_url(canvas_row.manifest) or canvas_row.manifest.iiif_id
    summary["content_state"] = content_state_parameter(canvas_content_state(canvas_row.iiif_id, manifest_ref))
    return jsonify(summary)


@bp.get("/canvas/<int:canvas_id>/similar")
def similar(canvas_id: int):
    """More like this canvas, or like a region of it (``xywh``)."""
    session = get_session()
    canvas_row = load_canvas(session, canvas_id)
    rect = parse_xywh(request.args.get("xywh"), canvas=canvas_row)
    args = request.args.copy()
    args.pop("xywh", None)
    if rect is None:
        args["like"] = str(canvas_row.id)
        return _search_response(parse_search(args, current_app.config["API_DEFAULT_K"],
                                             current_app.config["SEARCH_MAX_K"]))
    parsed = parse_search(args, current_app.config["API_DEFAULT_K"], current_app.config["SEARCH_MAX_K"],
                          require_query=False)
    return _search_response(parsed, region_image(canvas_row, rect))


@bp.get("/canvas/<int:canvas_id>/duplicates")
def duplicates(canvas_id: int):
    session = get_session()
    canvas_row = load_canvas(session, canvas_id)
    rect = parse_xywh(request.args.get("xywh"), canvas=canvas_row)
    result = find_duplicates(session, canvas_row, region_image(canvas_row, rect) if rect else None)
    if result.message and not result.canvases:
        status = 503 if "not available" in result.message else 404
        raise AppError(result.message, status)
    return jsonify({"canvas_id": canvas_row.id, "duplicates": [
        {**hit.as_dict(), "iiif_id": found.iiif_id, "viewer_url": url_for("viewer.canvas", canvas_id=found.id)}
        for found, hit in result.canvases]})


@bp.get("/manifests")
def manifests():
    raw = request.args.get("page", "1")
    if not (raw.isdigit() and len(raw) <= 6 and int(raw) >= 1):
        raise AppError(f"page must be a whole number from 1, got {raw[:20]!r}.", 400)
    rows, has_more = catalogue.manifests(get_session(), int(raw), errors_only=request.args.get("errors") == "1")
    return jsonify({"page": int(raw), "has_more": has_more, "manifests": rows})


@bp.get("/manifests/<int:manifest_id>")
def manifest(manifest_id: int):
    session = get_session()
    row = catalogue.load_manifest(session, manifest_id)
    detail = catalogue.manifest_detail(session, row)
    detail["canvases"] = [{"id": c.id, "iiif_id": c.iiif_id, "position": c.position, "width": c.width,
                           "height": c.height} for c in catalogue.manifest_canvases(session, row)]
    detail["iiif"] = {
        "manifest": url_for("iiif.manifest", manifest_id=row.id, _external=True),
        "search2": url_for("iiif.content_search", version=2, kind="manifest", key=row.id, _external=True),
        "search1": url_for("iiif.content_search", version=1, kind="manifest", key=row.id, _external=True),
    }
    return jsonify(detail)


@bp.get("/sources")
def sources():
    return jsonify({"sources": catalogue.sources(get_session())})


@bp.get("/collections")
def collections():
    return jsonify({"collections": catalogue.collections(get_session())})


@bp.get("/harvest")
def harvest():
    return jsonify(catalogue.harvest_status(get_session()))


@bp.get("/stats")
def stats():
    session = get_session()

    def count(model, *conditions) -> int:
        return session.scalar(select(func.count()).select_from(model).where(*conditions))

    groups = error_groups(session)
    return jsonify({
        "manifests": count(Manifest, Manifest.error.is_(None)),
        **manifest_counts(session),
        "collections": count(Collection),
        "canvases": count(Canvas),
        "canvases_with_images": count(Canvas, Canvas.service_id.is_not(None) | Canvas.image_url.is_not(None)),
        "regions": count(Region),
        "embeddings": count(Embedding, Embedding.stale.is_(False)),
        "stale_embeddings": count(Embedding, Embedding.stale.is_(True)),
        "errors": groups["total"],
        "errors_resolved": count(HarvestError, HarvestError.resolved.is_(True)),
        "error_groups": groups["groups"], "error_group_count": groups["group_count"],
        "indexes": saved_indexes(current_app),
    })


# -- admin (Authorization: Bearer <MSEARCH_ADMIN_TOKEN>) -------------------------------------------

def _json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise AppError("Send a JSON object (Content-Type: application/json).", 400)
    return body


def _steps(body: dict) -> tuple[str, ...]:
    steps = body.get("steps", ["harvest"])
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise AppError("steps must be a list such as [\"harvest\", \"embed\", \"index\"].", 400)
    unknown = [s for s in steps if s not in ("harvest", "embed", "index")]
    if unknown:
        raise AppError(f"Unknown step {unknown[0][:20]!r}: harvest, embed or index.", 400)
    return tuple(steps)


@bp.post("/admin/sources")
@auth.require_admin
def admin_add_source():
    body = _json_body()
    url = body.get("url")
    if not isinstance(url, str):
        raise AppError("url must be a string.", 400)
    session = get_session()
    source = add_source(session, url)
    result = {"source": {"id": source.id, "url": source.url, "status": source.status}}
    if body.get("harvest"):
        result["job"] = start_harvest(session, source, _steps(body))
    return jsonify(result), 201


@bp.post("/admin/sources/<int:source_id>/harvest")
@auth.require_admin
def admin_harvest(source_id: int):
    body = request.get_json(silent=True) or {}
    session = get_session()
    job = start_harvest(session, load_source(session, source_id), _steps(body) if isinstance(body, dict) else ("harvest",))
    return jsonify({"job": job}), 202


@bp.delete("/admin/sources/<int:source_id>")
@auth.require_admin
def admin_delete_source(source_id: int):
    session = get_session()
    removed = delete_source(session, load_source(session, source_id))
    return jsonify({"deleted": "source", "id": source_id, "manifests_deleted": removed})


@bp.delete("/admin/manifests/<int:manifest_id>")
@auth.require_admin
def admin_delete_manifest(manifest_id: int):
    delete_manifest(get_session(), manifest_id)
    return jsonify({"deleted": "manifest", "id": manifest_id})


@bp.get("/admin/jobs")
@auth.require_admin
def admin_jobs():
    return jsonify({"jobs": list_jobs(current_app.config["MSEARCH_CONFIG"].data_dir)})


@bp.get("/admin/jobs/<job_id>")
@auth.require_admin
def admin_job(job_id: str):
    return jsonify(load_job(job_id))
