"""Browser libraries installed by npm (``make setup`` runs ``npm ci`` in web/), served from
web/node_modules so that nothing third-party is committed or fetched from a CDN: OpenSeadragon
for the canvas viewer, and Mirador 4 (its self-contained build) for opening manifests and
exported result sets in a full IIIF viewer."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, current_app, render_template, request, send_from_directory

from .canvas_info import http_url
from .errors import AppError

bp = Blueprint("vendor", __name__)

NODE_MODULES = Path(__file__).resolve().parent / "node_modules"
DEFAULT_OPENSEADRAGON_DIR = NODE_MODULES / "openseadragon" / "build" / "openseadragon"
DEFAULT_MIRADOR_DIR = NODE_MODULES / "mirador" / "dist"
SETUP_HINT = "run `make setup` (or `npm ci` in web/) to install OpenSeadragon"


def openseadragon_installed(app: Flask) -> bool:
    return (Path(app.config["OPENSEADRAGON_DIR"]) / "openseadragon.min.js").is_file()


def mirador_installed(app: Flask) -> bool:
    return (Path(app.config["MIRADOR_DIR"]) / "mirador.min.js").is_file()


@bp.get("/vendor/openseadragon/<path:filename>")
def openseadragon(filename: str):
    # send_from_directory joins safely: "..", absolute paths and the like are 404s.
    return send_from_directory(current_app.config["OPENSEADRAGON_DIR"], filename, max_age=86400)


@bp.get("/vendor/mirador/<path:filename>")
def mirador(filename: str):
    return send_from_directory(current_app.config["MIRADOR_DIR"], filename, max_age=86400)


@bp.get("/mirador")
def mirador_page():
    """Mirador 4 opened on ``manifest`` (an http(s) URL: a re-published manifest or an export)."""
    manifest = http_url(request.args.get("manifest"))
    if not manifest:
        raise AppError("manifest must be the http(s) URL of a IIIF manifest.", 400)
    query = (request.args.get("q") or "").strip()[:200]  # opens Mirador's search panel on it
    return render_template("mirador.html", manifest=manifest, installed=mirador_installed(current_app),
                           config={"manifest": manifest, "query": query or None})
