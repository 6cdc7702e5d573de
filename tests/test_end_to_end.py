"""The whole path through real parts: IIIF manifests and images served over HTTP on 127.0.0.1
(Image API 2 and 3 flavours and a plain image URL), harvest → embed → index → search → web page,
with a tiny CLIP trained in the test session, driven through the ``msearch`` command line."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from manuscripts_search.cli import cli
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
def shapes_site(iiif_server):
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


def run_cli(runner, env, *args):
    """``msearch ARGS`` in-process; asserts success and returns what went to stdout."""
    result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout  # progress bars and logs go to stderr


def test_harvest_embed_search_and_web(shapes_site, trained_clip_dir, msearch_env):
    server, collection_url = shapes_site
    env = {**msearch_env, "MSEARCH_MODEL": str(trained_clip_dir), "MSEARCH_IMAGE_SIZE": "128"}
    runner = CliRunner()

    report = json.loads(run_cli(runner, env, "harvest", collection_url, "--json"))
    assert report["manifests"] == 2 and report["collections"] == 1
    assert [f["url"] for f in report["failures"]] == [f"{server.base_url}/missing/manifest.json"]
    assert report["images"]["fetched"] == len(CANVASES) and not report["images"]["failures"]
    # Images came through the Image API of each flavour, and the raw URL only where no service.
    assert any(p.startswith("/iiif3/rc1/") and not p.endswith("info.json") for p in server.requests)
    assert any(p.startswith("/iiif2/rc2/") and not p.endswith("info.json") for p in server.requests)
    assert any(p.startswith("/raw/ys1") for p in server.requests)
    assert not any(p.startswith("/raw/rc1") for p in server.requests)

    manifests = [json.loads(line) for line in run_cli(runner, env, "manifests", "--json").splitlines()]
    by_id = {m["url"]: m for m in manifests}
    assert by_id[f"{server.base_url}/v3/manifest.json"]["canvas_count"] == 5
    assert by_id[f"{server.base_url}/v3/manifest.json"]["iiif_version"] == 3
    assert by_id[f"{server.base_url}/v2/manifest.json"]["image_canvas_count"] == 3
    assert by_id[f"{server.base_url}/missing/manifest.json"]["error"].startswith("fetch failed: HTTP 404")

    embed = json.loads(run_cli(runner, env, "embed", "--json"))
    assert embed["embedded"] == len(CANVASES) and embed["index"]["total"] == len(CANVASES)

    hits = [json.loads(line) for line in
            run_cli(runner, env, "search", "red circle", "--k", "3", "--json").splitlines()]
    assert len(hits) == 3
    assert {h["canvas"] for h in hits[:2]} == {f"{server.base_url}/canvas/rc1", f"{server.base_url}/canvas/rc2"}
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    hits = [json.loads(line) for line in
            run_cli(runner, env, "search", "blue triangle", "--k", "1", "--json").splitlines()]
    assert hits[0]["canvas"] == f"{server.base_url}/canvas/bt1"

    stats = json.loads(run_cli(runner, env, "stats", "--json"))
    assert stats["manifests"] == 2 and stats["canvases"] == len(CANVASES)
    assert stats["embeddings"] == len(CANVASES) and stats["errors"] >= 1

    # Nothing to do on a second run: no duplicates, no refetching.
    assert json.loads(run_cli(runner, env, "embed", "--json"))["embedded"] == 0
    assert "ok" in run_cli(runner, env, "index", "verify")

    # The web page lists the red circles with IIIF thumbnails, and the canvas opens in the viewer.
    from manuscripts_search.config import load_config
    from web import create_app

    app = create_app(config=load_config(env))
    client = app.test_client()
    page = client.get("/search?q=red+circle&k=3")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "red circle page" in html
    assert f"{server.base_url}/iiif3/rc1/full/" in html  # thumbnail through the v3 image service
    canvas_id = hits and json.loads(run_cli(runner, env, "search", "red circle", "--k", "1", "--json"))["canvas_id"]
    viewer = client.get(f"/canvas/{canvas_id}").get_data(as_text=True)
    assert "/info.json" in viewer and "openseadragon" in viewer.lower()
