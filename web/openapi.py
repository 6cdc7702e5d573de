"""The OpenAPI 3.1 description of the JSON API, served at /api/openapi.json, with a readable
page at /api/docs. Kept as data next to the routes; a test checks that every /api route is
described and every described path exists."""
from __future__ import annotations

from flask import Blueprint, jsonify, render_template

from manuscripts_search import __version__ as web_version
from manuscripts_search.search.signal_registry import signal_names

bp = Blueprint("openapi", __name__)

_ERROR = {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_INT_PATH = {"schema": {"type": "integer", "minimum": 1}, "required": True, "in": "path"}


def _param(name: str, description: str, schema: dict, where: str = "query", required: bool = False) -> dict:
    return {"name": name, "in": where, "description": description, "required": required, "schema": schema}


_SEARCH_PARAMETERS = [
    _param("q", "Words describing what the page shows, or words of its metadata and transcriptions (any language).",
           {"type": "string", "maxLength": 1000}),
    _param("k", "Results per page (1–100).", {"type": "integer", "minimum": 1, "maximum": 100}),
    _param("page", "Page number, from 1.", {"type": "integer", "minimum": 1}),
    _param("group", "canvas (default), manifest, or auto (by manuscript when one manuscript would fill the first "
                    "page, as the HTML pages do).", {"type": "string", "enum": ["canvas", "manifest", "auto"]}),
    _param("weaker", "1: also return hits that score no better than nonsense queries do (below the score "
                     "floors; see floors in the response).", {"type": "string", "enum": ["0", "1"]}),
    _param("like", "More like this canvas (database id).", {"type": "integer", "minimum": 1}),
    _param("like_region", "More like this region (database id).", {"type": "integer", "minimum": 1}),
    _param("image", "Like a query image posted before: the handle its POST answered (query_image.handle), "
           "kept QUERY_IMAGE_KEEP_SECONDS after its last use; 410 once expired.",
           {"type": "string", "pattern": "^[0-9a-f]{64}$"}),
    _param("signal", "Use only these rankings (repeatable).",
           {"type": "string", "enum": list(signal_names())}),
    _param("collection", "Filter: collection id or IIIF id (repeatable).", {"type": "string"}),
    _param("manifest", "Filter: manifest id, IIIF id or URL (repeatable).", {"type": "string"}),
    _param("provider", "Filter: institution name, part of it (repeatable).", {"type": "string"}),
    _param("date_from", "Filter: dated from YYYY[-MM[-DD]] (navDate, else the metadata's date).",
           {"type": "string"}),
    _param("date_to", "Filter: dated up to YYYY[-MM[-DD]] (navDate, else the metadata's date).",
           {"type": "string"}),
    _param("iiif_version", "Filter: IIIF Presentation version 1, 2 or 3.", {"type": "integer", "enum": [1, 2, 3]}),
    _param("has_transcription", "Filter: canvases with (true) or without (false) text.", {"type": "boolean"}),
    _param("label", "Filter: category label from classification (repeatable).", {"type": "string"}),
]
_SEARCH_RESPONSES = {"200": {"description": "One page of results",
                             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SearchPage"}}}},
                     "400": _ERROR, "413": _ERROR, "503": _ERROR}


def _get(summary: str, parameters=None, responses=None, tag: str = "catalogue") -> dict:
    return {"get": {"summary": summary, "tags": [tag], "parameters": parameters or [],
                    "responses": responses or {"200": {"description": "OK"}, "400": _ERROR, "404": _ERROR}}}


def _admin(method: str, summary: str, parameters=None, body: bool = False, status: str = "200") -> dict:
    operation = {"summary": summary, "tags": ["admin"], "security": [{"adminToken": []}],
                 "parameters": parameters or [],
                 "responses": {status: {"description": "Done"}, "400": _ERROR, "401": _ERROR, "403": _ERROR,
                               "404": _ERROR}}
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"url": {"type": "string", "format": "uri"},
                                             "harvest": {"type": "boolean"},
                                             "steps": {"type": "array", "items": {"type": "string",
                                                                                 "enum": ["harvest", "embed", "index"]}}}}}}}
    return {method: operation}


def openapi_document() -> dict:
    canvas_id = {**_INT_PATH, "name": "canvas_id"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "manuscripts-search API", "version": web_version,
                 "description": "Search harvested IIIF canvases by what they show, their metadata and "
                                "transcriptions. Errors are {\"error\": {\"status\", \"message\"}}. IIIF endpoints "
                                "(Content Search 1/2, exports, re-published manifests) live under /iiif."},
        "paths": {
            "/api/search": {
                **_get("Search by text, more-like-this and filters", _SEARCH_PARAMETERS, _SEARCH_RESPONSES, "search"),
                "post": {"summary": "Search by image (upload or URL), optionally with words and filters",
                         "tags": ["search"], "parameters": [],
                         "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                             "type": "object", "properties": {
                                 "image": {"type": "string", "format": "binary"},
                                 "image_url": {"type": "string", "format": "uri"},
                                 "q": {"type": "string"}, "k": {"type": "integer"}}}}}},
                         "responses": _SEARCH_RESPONSES},
            },
            "/api/canvas/{canvas_id}": _get("One canvas: image service, size, manifest", [canvas_id]),
            "/api/canvas/{canvas_id}/similar": _get(
                "More like this canvas, or like a region of it", [canvas_id, _param(
                    "xywh", "Region x,y,w,h (or percent:x,y,w,h) in canvas coordinates", {"type": "string"}),
                    *_SEARCH_PARAMETERS[1:3]], _SEARCH_RESPONSES, "search"),
            "/api/canvas/{canvas_id}/duplicates": _get(
                "Other digitisations of this canvas (or region) by perceptual hash",
                [canvas_id, _param("xywh", "Region in canvas coordinates", {"type": "string"})],
                {"200": {"description": "Near-duplicates"}, "404": _ERROR, "503": _ERROR}, "search"),
            "/api/manifests": _get("Harvested manifests, 50 per page", [
                _param("page", "Page number", {"type": "integer", "minimum": 1}),
                _param("errors", "1: only manifests that failed", {"type": "string", "enum": ["1"]})]),
            "/api/manifests/{manifest_id}": _get("One manifest with metadata, canvases and IIIF links",
                                                 [{**_INT_PATH, "name": "manifest_id"}]),
            "/api/sources": _get("Harvest sources"),
            "/api/collections": _get("Harvested collections"),
            "/api/harvest": _get("Harvest runs, recent errors and failed manifests"),
            "/api/stats": _get("Counts of the database and the indexes"),
            "/api/openapi.json": _get("This document", tag="meta"),
            "/api/docs": _get("This document as an HTML page", tag="meta"),
            "/api/admin/sources": _admin("post", "Add a source (optionally start harvesting it)", body=True,
                                         status="201"),
            "/api/admin/sources/{source_id}/harvest": _admin(
                "post", "Start a harvest of a source", [{**_INT_PATH, "name": "source_id"}], status="202"),
            "/api/admin/sources/{source_id}": _admin("delete", "Delete a source and its manifests",
                                                     [{**_INT_PATH, "name": "source_id"}]),
            "/api/admin/manifests/{manifest_id}": _admin("delete", "Delete a manifest",
                                                         [{**_INT_PATH, "name": "manifest_id"}]),
            "/api/admin/jobs": _admin("get", "Harvest jobs started here"),
            "/api/admin/jobs/{job_id}": _admin("get", "One harvest job with its log", [
                {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]),
        },
        "components": {
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer",
                                               "description": "The value of MSEARCH_ADMIN_TOKEN."}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["status", "message"],
                    "properties": {"status": {"type": "integer"}, "message": {"type": "string"}}}}},
                "Hit": {"type": "object", "properties": {
                    "rank": {"type": "integer"}, "score": {"type": "number"}, "canvas_id": {"type": "integer"},
                    "canvas": {"type": "string"}, "canvas_label": {"type": ["string", "null"]},
                    "manifest": {"type": "string"}, "manifest_label": {"type": ["string", "null"]},
                    "xywh": {"type": ["string", "null"]},
                    "regions": {"type": "array", "description": "All the evidence: every matching region "
                                "(visual, and transcription lines with a box), best first within each signal"},
                    "shown_regions": {"type": "array", "maxItems": 3, "description": (
                        "The regions to draw: the best and at most two that do not overlap it (non-maximum "
                        "suppression over regions); the result page, Content Search and exports show these"),
                        "items": {"type": "object", "properties": {
                            "xywh": {"type": "string"}, "rank": {"type": "integer", "minimum": 1},
                            "signal": {"type": "string"}, "score": {"type": "number"},
                            "label": {"type": "string", "description": "\"picture\", or the matched words"},
                            "caption": {"type": "string", "description": "rank · label · score"}}}},
                    "snippets": {"type": "array", "items": {"type": "string"}}, "signals": {"type": "object"},
                    "thumbnail": {"type": ["string", "null"]}, "region_thumbnail": {"type": ["string", "null"]},
                    "viewer_url": {"type": "string"}, "share_url": {"type": "string"},
                    "content_state": {"type": "string"},
                    "similar_url": {"type": ["string", "null"],
                                    "description": "More like this page; null when it has no image vector"}}},
                "SearchPage": {"type": "object", "properties": {
                    "query": {"type": ["string", "null"]}, "k": {"type": "integer"}, "page": {"type": "integer"},
                    "group": {"type": "string", "enum": ["canvas", "manifest"]},
                    "grouped_automatically": {"type": "boolean"},
                    "total": {"type": "integer", "description": "Canvases matched: what the facets count and "
                                                               "the export holds (up to its limit)"},
                    "total_exact": {"type": "boolean",
                                    "description": "false: more matched past the ranked window; total is a lower bound"},
                    "manuscripts": {"type": "integer", "description": "Manifests those canvases belong to"},
                    "has_more": {"type": "boolean"}, "signals": {"type": "array", "items": {"type": "string"}},
                    "score": {"type": "string"},
                    "floors": {"type": "object", "additionalProperties": {"type": "number"},
                               "description": "Per signal, the score a hit had to beat (calibrated on nonsense "
                                              "queries, or MSEARCH_SCORE_FLOORS)"},
                    "below_floor": {"type": "boolean", "description": "Weaker matches were left out (weaker=1 "
                                                                      "shows them)"},
                    "facets": {"type": "object", "description": "Counts of canvases over the whole result set, "
                               "per facet: label, iiif_version, manifest, collection, provider, century and "
                               "decade (keys YYYY-YYYY, usable as date_from/date_to), transcription (true/false)",
                               "additionalProperties": {"type": "object",
                                                        "additionalProperties": {"type": "integer"}}},
                    "facet_labels": {"type": "object", "description": "Names of the manifest and collection "
                                                                      "facet keys (database ids)"},
                    "notices": {"type": "array", "items": {"type": "string"}},
                    "hits": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}},
                    "groups": {"type": "array"}, "links": {"type": "object"},
                    "query_image": {"type": "object", "description": "An image search's kept image: its handle "
                                    "(for image=) and URL", "properties": {
                                        "handle": {"type": "string"}, "url": {"type": "string"}}}}},
            },
        },
    }


@bp.get("/api/openapi.json")
def openapi_json():
    return jsonify(openapi_document())


@bp.get("/api/docs")
def docs():
    return render_template("api_docs.html", document=openapi_document())
