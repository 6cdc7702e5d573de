"""Browse pages for librarians: sources, collections, manifests (with their metadata and
canvases, and a search inside each), and harvest status with every recorded error."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template, request, url_for

from manuscripts_search.iiif.language import first_value

from . import catalogue
from .canvas_info import http_url, rights_label
from .database import get_session
from .errors import AppError
from .harvest_jobs import list_jobs
from .sanitise import language_values, metadata_rows, statement_row

bp = Blueprint("browse", __name__)


def _page() -> int:
    raw = request.args.get("page", "1")
    if not (raw.isdigit() and len(raw) <= 6 and int(raw) >= 1):
        raise AppError(f"page must be a whole number from 1, got {raw[:20]!r}.", 400)
    return int(raw)


@bp.get("/sources")
def sources():
    return render_template("sources.html", sources=catalogue.sources(get_session()))


@bp.get("/collections")
def collections():
    return render_template("collections.html", collections=catalogue.collections(get_session()))


@bp.get("/manifests")
def manifests():
    page = _page()
    collection = request.args.get("collection", "")
    collection_id = int(collection) if collection.isdigit() and len(collection) < 18 else None
    errors_only = request.args.get("errors") == "1"
    rows, has_more = catalogue.manifests(get_session(), page, collection_id, errors_only)
    return render_template("manifests.html", manifests=rows, page=page, has_more=has_more,
                           collection_id=collection_id, errors_only=errors_only)


@bp.get("/manifests/<int:manifest_id>")
def manifest(manifest_id: int):
    session = get_session()
    row = catalogue.load_manifest(session, manifest_id)
    canvases = catalogue.manifest_canvases(session, row)
    from .thumbnails import canvas_thumbnails

    thumbnails = canvas_thumbnails(session, canvases, 200)
    republished = url_for("iiif.manifest", manifest_id=row.id, _external=True)
    return render_template(
        "manifest.html", manifest=row, detail=catalogue.manifest_detail(session, row),
        label=first_value(row.label), summary=language_values(row.summary), metadata=metadata_rows(row.metadata_entries),
        required_statement=statement_row(row.required_statement), rights=http_url(row.rights),
        rights_name=rights_label(row.rights),
        canvases=[(c, first_value(c.label), thumbnails[c.id]) for c in canvases],
        republished_manifest=republished, mirador_url=url_for("vendor.mirador_page", manifest=republished),
        search2_url=url_for("iiif.content_search", version=2, kind="manifest", key=row.id))


@bp.get("/harvest")
def harvest():
    status = catalogue.harvest_status(get_session())
    return render_template("harvest.html", status=status,
                           jobs=list_jobs(current_app.config["MSEARCH_CONFIG"].data_dir))
