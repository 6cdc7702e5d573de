"""Browser libraries installed by npm (``make setup`` runs ``npm ci`` in web/), served from
web/node_modules so that nothing third-party is committed or fetched from a CDN: OpenSeadragon
for the canvas viewer, and three full IIIF viewers for opening manifests and exported result
sets: Mirador 4 (its self-contained build), Universal Viewer 4 (its UMD build, which loads its
chunks from beside itself) and Clover 3 (its React component bundled with React by esbuild into
web/build/clover/, by ``npm run build``, which ``make setup`` runs after ``npm ci``)."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, current_app, render_template, request, send_from_directory

from manuscripts_search.iiif.content_state import ContentStateError, parse_content_state

from .canvas_info import http_url
from .errors import AppError

bp = Blueprint("vendor", __name__)

NODE_MODULES = Path(__file__).resolve().parent / "node_modules"
DEFAULT_OPENSEADRAGON_DIR = NODE_MODULES / "openseadragon" / "build" / "openseadragon"
DEFAULT_MIRADOR_DIR = NODE_MODULES / "mirador" / "dist"
DEFAULT_UV_DIR = NODE_MODULES / "universalviewer" / "dist"
DEFAULT_CLOVER_DIR = Path(__file__).resolve().parent / "build" / "clover"
SETUP_HINT = "run `make setup` (or `npm ci` in web/) to install OpenSeadragon"


def openseadragon_installed(app: Flask) -> bool:
    return (Path(app.config["OPENSEADRAGON_DIR"]) / "openseadragon.min.js").is_file()


def mirador_installed(app: Flask) -> bool:
    return (Path(app.config["MIRADOR_DIR"]) / "mirador.min.js").is_file()


def uv_installed(app: Flask) -> bool:
    return (Path(app.config["UV_DIR"]) / "umd" / "UV.js").is_file()


def clover_installed(app: Flask) -> bool:
    return (Path(app.config["CLOVER_DIR"]) / "clover.js").is_file()


@bp.get("/vendor/openseadragon/<path:filename>")
def openseadragon(filename: str):
    # send_from_directory joins safely: "..", absolute paths and the like are 404s.
    return send_from_directory(current_app.config["OPENSEADRAGON_DIR"], filename, max_age=86400)


@bp.get("/vendor/mirador/<path:filename>")
def mirador(filename: str):
    return send_from_directory(current_app.config["MIRADOR_DIR"], filename, max_age=86400)


@bp.get("/vendor/universalviewer/<path:filename>")
def universal_viewer(filename: str):
    return send_from_directory(current_app.config["UV_DIR"], filename, max_age=86400)


@bp.get("/vendor/clover/<path:filename>")
def clover(filename: str):
    return send_from_directory(current_app.config["CLOVER_DIR"], filename, max_age=86400)


def _manifest_argument() -> str:
    manifest = http_url(request.args.get("manifest"))
    if not manifest:
        raise AppError("manifest must be the http(s) URL of a IIIF manifest.", 400)
    return manifest


@bp.get("/mirador")
def mirador_page():
    """Mirador 4 opened on ``manifest`` (an http(s) URL: a re-published manifest or an export)."""
    manifest = _manifest_argument()
    query = (request.args.get("q") or "").strip()[:200]  # opens Mirador's search panel on it
    return render_template("mirador.html", manifest=manifest, installed=mirador_installed(current_app),
                           config={"manifest": manifest, "query": query or None})


@bp.get("/uv")
def uv_page():
    """Universal Viewer 4 opened on ``manifest`` (an http(s) URL), on its first canvas."""
    manifest = _manifest_argument()
    return render_template("universal_viewer.html", manifest=manifest, installed=uv_installed(current_app),
                           config={"manifest": manifest})


@bp.get("/clover")
def clover_page():
    """Clover 3 opened on ``iiif-content``: a manifest's http(s) URL, or a IIIF Content State
    (content-state-encoded, as our share links carry it), which opens a canvas and its region."""
    content = (request.args.get("iiif-content") or request.args.get("manifest") or "").strip()
    try:
        parse_content_state(content)  # a bad value is a clear 400 here, not a viewer stuck on "Loading"
    except ContentStateError as error:
        raise AppError(f"iiif-content must be a manifest's http(s) URL or an encoded IIIF Content State: {error}.",
                       400) from None
    if content.startswith(("http://", "https://")) and not http_url(content):
        raise AppError("iiif-content must be a manifest's http(s) URL or an encoded IIIF Content State.", 400)
    return render_template("clover.html", content=content, installed=clover_installed(current_app))
