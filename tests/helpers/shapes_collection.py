"""A collection of IIIF manifests of coloured shapes served over HTTP by the test IIIF server:
a Presentation 3 manifest (Image API 3 services and a plain image URL), a Presentation 2 manifest
(Image API 2), and a collection listing them with a duplicate member, a cycle and a missing
manifest. The end-to-end and Ray tests harvest it through `msearch`.

A pytest plugin (listed in conftest.py's ``pytest_plugins``): the fixture is ``shapes_collection``.
"""
from __future__ import annotations

import pytest

from tests.helpers.model_factory import render_shape

# (identifier, colour, shape, how the canvas reaches its image)
CANVASES = [
    ("rc1", "red", "circle", "v3"),
    ("gs1", "green", "square", "v3"),
    ("bt1", "blue", "triangle", "v3"),
    ("yc1", "yellow", "circle", "v3"),
    ("rc2", "red", "circle", "v2"),
    ("bs1", "blue", "square", "v2"),
    ("gt1", "green", "triangle", "v2"),
    ("ys1", "yellow", "square", "raw"),
]


def _v3_manifest(base, items):
    canvases = []
    for ident, colour, shape, flavour in items:
        body = {"id": f"{base}/raw/{ident}.jpg", "type": "Image", "format": "image/jpeg",
                "width": 320, "height": 240}
        if flavour == "v3":
            body["service"] = [{"id": f"{base}/iiif3/{ident}", "type": "ImageService3", "profile": "level2"}]
        canvases.append({
            "id": f"{base}/canvas/{ident}", "type": "Canvas", "label": {"en": [f"{colour} {shape} page"]},
            "width": 640, "height": 480,
            "items": [{"id": f"{base}/page/{ident}", "type": "AnnotationPage", "items": [{
                "id": f"{base}/anno/{ident}", "type": "Annotation", "motivation": "painting",
                "target": f"{base}/canvas/{ident}", "body": body}]}]})
    return {"@context": "http://iiif.io/api/presentation/3/context.json",
            "id": f"{base}/v3/manifest.json", "type": "Manifest",
            "label": {"en": ["Shapes, version 3"]}, "items": canvases}


def _v2_manifest(base, items):
    canvases = []
    for ident, colour, shape, _flavour in items:
        canvases.append({
            "@id": f"{base}/canvas/{ident}", "@type": "sc:Canvas", "label": f"{colour} {shape} page",
            "width": 640, "height": 480,
            "images": [{"@type": "oa:Annotation", "motivation": "sc:painting", "on": f"{base}/canvas/{ident}",
                        "resource": {"@id": f"{base}/iiif2/{ident}/full/full/0/default.jpg",
                                     "@type": "dctypes:Image", "format": "image/jpeg",
                                     "service": {"@context": "http://iiif.io/api/image/2/context.json",
                                                 "@id": f"{base}/iiif2/{ident}",
                                                 "profile": "http://iiif.io/api/image/2/level2.json"}}}]})
    return {"@context": "http://iiif.io/api/presentation/2/context.json",
            "@id": f"{base}/v2/manifest.json", "@type": "sc:Manifest", "label": "Shapes, version 2",
            "sequences": [{"@type": "sc:Sequence", "canvases": canvases}]}


@pytest.fixture
def shapes_collection(iiif_server):
    """``iiif_server`` serving the shapes: returns (server, collection URL)."""
    base = iiif_server.base_url
    for index, (ident, colour, shape, _flavour) in enumerate(CANVASES):
        iiif_server.add_image(ident, render_shape(colour, shape, size=320, seed=100 + index)
                              .resize((320, 240)))
    v3_items = [c for c in CANVASES if c[3] in ("v3", "raw")]
    v2_items = [c for c in CANVASES if c[3] == "v2"]
    iiif_server.add_json("/v3/manifest.json", _v3_manifest(base, v3_items))
    iiif_server.add_json("/v2/manifest.json", _v2_manifest(base, v2_items))
    collection_url = f"{base}/collection.json"
    iiif_server.add_json("/collection.json", {
        "@context": "http://iiif.io/api/presentation/3/context.json", "id": collection_url,
        "type": "Collection", "label": {"en": ["All shapes"]},
        "items": [{"id": f"{base}/v3/manifest.json", "type": "Manifest"},
                  {"id": f"{base}/v2/manifest.json", "type": "Manifest"},
                  {"id": f"{base}/v2/manifest.json", "type": "Manifest"},  # duplicate member
                  {"id": collection_url, "type": "Collection"},  # cycle
                  {"id": f"{base}/missing/manifest.json", "type": "Manifest"}]})  # 404
    return iiif_server, collection_url
