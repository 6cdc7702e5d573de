"""The manuscripts-search web app: search pages, a deep-zoom canvas viewer and a JSON API.

Nothing heavy happens at import time or in :func:`create_app`: the database engine connects on
first use, and the model and index load on the first search (see :mod:`web.resources`).
"""
from __future__ import annotations

from typing import Optional

from flask import Flask

from manuscripts_search.config import Config, load_config
from manuscripts_search.image_decoding import MAX_QUERY_IMAGE_PIXELS

DEFAULT_SETTINGS = {
    "SEARCH_DEFAULT_K": 24,  # results on the HTML page when ``k`` is not given
    "API_DEFAULT_K": 10,
    "SEARCH_MAX_K": 100,
    # Canvases in an exported result manifest: the whole result set as the page counts it (the
    # engine ranks 500 canvases per window), so the export holds what the page says it found.
    "EXPORT_DEFAULT_K": 500,
    "EXPORT_MAX_K": 500,
    "CONTENT_SEARCH_PAGE_SIZE": 50,  # annotations per IIIF Content Search page
    "CONTENT_SEARCH_VISUAL_MATCHES": 5,  # "looks like the query" regions added to a Content Search
    "SEND_FILE_MAX_AGE_DEFAULT": 3600,
    "INDEX_CHECK_INTERVAL": 1.0,  # seconds between looks at the index files for a newer save
    "MODEL_RETRY_INTERVAL": 60.0,  # seconds before the model is tried again (in the background) on the fallback
    "MAX_CONTENT_LENGTH": 20 * 1024 * 1024,  # a larger request body is a 413 before it is read
    "MAX_FORM_MEMORY_SIZE": 1024 * 1024,
    "QUERY_IMAGE_MAX_BYTES": 16 * 1024 * 1024,
    "QUERY_IMAGE_MAX_PIXELS": MAX_QUERY_IMAGE_PIXELS,
    "QUERY_IMAGE_ALLOW_PRIVATE_URLS": False,  # let image_url reach private addresses (tests, intranets)
    "QUERY_IMAGE_KEEP_SECONDS": 24 * 3600,  # an image search's handle lasts this long after its last use
    "QUERY_IMAGE_STORE_MAX": 500,  # query images kept at most (least recently used go first)
}


def create_app(config: Optional[Config] = None, test_config: Optional[dict] = None) -> Flask:
    """Build the Flask app for ``config`` (default: :func:`load_config` from the environment).

    ``test_config`` is a mapping of Flask settings applied last, after the defaults. Besides
    Flask's own (``TESTING`` ...) it may hold:

    - ``MSEARCH_CONFIG``: a :class:`Config` that replaces ``config`` (data dir, database, model);
    - ``OPENSEADRAGON_DIR``: the directory served under /vendor/openseadragon/ (default: the npm
      build in web/node_modules);
    - ``SEARCH_DEFAULT_K``, ``API_DEFAULT_K``, ``SEARCH_MAX_K``: result counts;
    - ``INDEX_CHECK_INTERVAL``: seconds between checks for a newly saved index (0: every search);
    - ``ADMIN_TOKEN``: the admin token (default: the MSEARCH_ADMIN_TOKEN environment variable);
    - ``MIRADOR_DIR``, ``UV_DIR``, ``CLOVER_DIR``: the directories served under /vendor/mirador/,
      /vendor/universalviewer/ and /vendor/clover/ (default: their npm builds in web/node_modules);
    - the limits above (``MAX_CONTENT_LENGTH``, ``QUERY_IMAGE_*``, ``CONTENT_SEARCH_*``, ``EXPORT_*``);
      ``QUERY_IMAGE_KEEP_SECONDS`` and ``QUERY_IMAGE_STORE_MAX`` bound the query images kept so
      that an image search has pages and exports (:mod:`web.query_image_store`).

    The database is not migrated here; ``msearch serve`` and the tests do that first.
    Raises ConfigError when no config is given and the environment holds a bad setting.
    """
    from . import (admin, api, auth, browse, database, errors, iiif, openapi, published, resources, search,
                   thumbnails, vendor, viewer)
    from .canvas_info import http_url
    from .sanitise import iiif_html

    app = Flask(__name__)
    app.config.from_mapping(DEFAULT_SETTINGS, OPENSEADRAGON_DIR=str(vendor.DEFAULT_OPENSEADRAGON_DIR),
                            MIRADOR_DIR=str(vendor.DEFAULT_MIRADOR_DIR), UV_DIR=str(vendor.DEFAULT_UV_DIR),
                            CLOVER_DIR=str(vendor.DEFAULT_CLOVER_DIR))
    if test_config:
        app.config.from_mapping(test_config)
    msearch_config = app.config.get("MSEARCH_CONFIG") or config or load_config()
    app.config["MSEARCH_CONFIG"] = msearch_config
    app.json.sort_keys = False

    database.init_app(app, msearch_config)
    resources.init_app(app, model=msearch_config.model, device=msearch_config.device,
                       index_dir=msearch_config.index_dir,
                       index_check_interval=app.config["INDEX_CHECK_INTERVAL"],
                       model_retry_interval=float(app.config["MODEL_RETRY_INTERVAL"]),
                       search_backend=msearch_config.search_backend, ray_address=msearch_config.ray_address,
                       shard_deadline=msearch_config.shard_deadline)
    errors.init_app(app)
    from . import health, logging_setup, ratelimit

    logging_setup.init_app(app)  # first, so a 429 still gets a request id and an access record
    ratelimit.init_app(app)
    app.register_blueprint(health.bp)  # GET /healthz
    auth.init_app(app)
    for module in (search, viewer, browse, admin, api, openapi, iiif, vendor, published, thumbnails):
        app.register_blueprint(module.bp)
    app.add_template_filter(http_url, "http_url")
    app.add_template_filter(iiif_html, "iiif_html")
    app.after_request(_security_headers)
    return app


def _security_headers(response):
    # Labels and URLs come from thousands of institutions' manifests; should escaping ever miss,
    # the policy still refuses inline scripts. Images and info.json come from any IIIF server.
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src * data: blob:; connect-src *; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'self'; form-action 'self'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    return response
