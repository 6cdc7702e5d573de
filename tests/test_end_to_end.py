"""The whole path through real parts: IIIF manifests and images served over HTTP on 127.0.0.1
(Image API 2 and 3 flavours and a plain image URL), harvest → embed → index → search → web page,
with a tiny CLIP trained in the test session, driven through the ``msearch`` command line."""
from __future__ import annotations

import json

from tests.helpers.cli import run_cli
from tests.helpers.shapes_collection import CANVASES


def test_harvest_embed_search_and_web(shapes_collection, runner, trained_clip_dir, msearch_env):
    server, collection_url = shapes_collection
    env = {**msearch_env, "MSEARCH_MODEL": str(trained_clip_dir), "MSEARCH_IMAGE_SIZE": "128"}

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
    # The two red circles, and nothing else: the other pages score no better than nonsense does.
    assert {h["canvas"] for h in hits} == {f"{server.base_url}/canvas/rc1", f"{server.base_url}/canvas/rc2"}
    assert hits[0]["score"] >= hits[1]["score"]
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
