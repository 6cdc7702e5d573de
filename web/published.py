"""Serves what ``msearch publish`` wrote: level-0 IIIF Image API 3.0 files and Presentation 3
manifests from ``<data dir>/published/``, under the URL prefix ``/published``.

Static files only, read through ``send_from_directory`` (no path can leave the folder); IIIF
media types and CORS so that any IIIF viewer can load them; an image service's base URI
redirects to its info.json as the Image API asks.
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, current_app, redirect, send_from_directory, url_for
from werkzeug.security import safe_join

bp = Blueprint("published", __name__, url_prefix="/published")

_PRESENTATION_3 = 'application/ld+json;profile="http://iiif.io/api/presentation/3/context.json"'
_IMAGE_3 = 'application/ld+json;profile="http://iiif.io/api/image/3/context.json"'


def _root() -> Path:
    return Path(current_app.config["MSEARCH_CONFIG"].data_dir) / "published"


@bp.get("/<path:subpath>")
def published_file(subpath: str):
    root = _root()
    full = safe_join(str(root), subpath)
    if full is None:
        abort(404)
    path = Path(full)
    if path.is_dir():
        if (path / "info.json").is_file():  # an image service's base URI
            return redirect(url_for(".published_file", subpath=f"{subpath.rstrip('/')}/info.json"), code=303)
        abort(404)
    if not path.is_file() or path.name == "publish-state.json":
        abort(404)
    mimetype = None
    if path.name == "info.json":
        mimetype = _IMAGE_3
    elif path.suffix == ".json":
        mimetype = _PRESENTATION_3
    response = send_from_directory(root, subpath, mimetype=mimetype, max_age=3600)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response
