"""Search, canvas and browse pages and the JSON API on a real catalogue: filters and facets,
region boxes and cropped region thumbnails, image queries (upload and URL) with their limits,
"more like this" (canvas, region), manifest metadata sanitised to IIIF's HTML subset, the
OpenAPI description, and bad input answered with clear 4xx, never 500."""
from __future__ import annotations

import io
import re

import pytest

from tests.helpers.model_factory import render_shape
from tests.helpers.web_site import SCENE_REGION


def _png(colour="red", shape="circle", size=96) -> bytes:
    buffer = io.BytesIO()
    render_shape(colour, shape, size=size, seed=5).save(buffer, "PNG")
    return buffer.getvalue()


# -- search ---------------------------------------------------------------------------------------

def test_text_search_fuses_the_picture_and_the_words(client, shapes_site):
    # "red" is a word the tiny CLIP knows ("dragon" it does not: alone, it finds no picture).
    body = client.get("/api/search?q=red+dragon&k=4").get_json()
    assert set(body["signals"]) == {"visual", "fulltext"} and body["score"] == "rrf"
    by_canvas = {hit["canvas_id"]: hit for hit in body["hits"]}
    red = by_canvas[shapes_site.canvas_ids["red_circle"]]
    assert "fulltext" in red["signals"] and "Here begins the book of the red dragon" in red["snippets"]
    assert body["links"]["export_manifest"].startswith("http://msearch.test/iiif/export/manifest?q=red+dragon")


def test_region_hits_get_boxes_and_a_cropped_thumbnail(client, shapes_site):
    body = client.get("/api/search?q=a+red+circle&k=4&signal=visual").get_json()
    scene = next(h for h in body["hits"] if h["canvas_id"] == shapes_site.canvas_ids["scene"])
    assert scene["xywh"] == ",".join(map(str, SCENE_REGION))
    # Canvas 1000×1500 painted by a 500×750 image: the crop is asked in image pixels.
    assert scene["region_thumbnail"] == "http://iiif.test/iiif3/scene/250,375,250,375/!256,256/0/default.jpg"
    html = client.get("/search?q=a+red+circle&k=4&signal=visual").get_data(as_text=True)
    assert 'class="hit-box hit-box--visual hit-box--best"' in html
    assert "left: 50.0%; top: 50.0%; width: 50.0%; height: 50.0%" in html
    assert 'style="aspect-ratio: 1000 / 1500"' in html
    assert 'src="http://iiif.test/iiif3/scene/250,375,250,375/!256,256/0/default.jpg"' in html


def test_filters_narrow_and_facets_count(client, shapes_site):
    everything = client.get("/api/search?q=a+red+circle&k=10&weaker=1").get_json()
    assert everything["facets"]["manifest"] == {str(shapes_site.manifest_ids["book"]): 4}
    assert everything["facets"]["iiif_version"] == {"3": 4}
    for query in (f"collection={shapes_site.collection_id}", "provider=bibliotheque", "date_from=1400&date_to=1500",
                  "has_transcription=true"):
        body = client.get(f"/api/search?q=a+red+circle&k=10&weaker=1&{query}").get_json()
        assert body["hits"], query
        assert all(h["manifest_id"] == shapes_site.manifest_ids["book"] for h in body["hits"]), query
    assert client.get("/api/search?q=a+red+circle&date_from=1500").get_json()["hits"] == []
    transcribed = client.get("/api/search?q=a+red+circle&k=10&weaker=1&has_transcription=true").get_json()["hits"]
    assert shapes_site.canvas_ids["green_square"] not in {h["canvas_id"] for h in transcribed}
    page = client.get("/search?q=a+red+circle&provider=bibliotheque").get_data(as_text=True)
    assert 'class="chip">provider: bibliotheque</span>' in page and "clear filters" in page


def test_paging_and_grouping(client, shapes_site):
    first = client.get("/api/search?q=a+red+circle&k=2&signal=visual&weaker=1").get_json()
    second = client.get(first["links"]["next"]).get_json()
    assert first["has_more"] and len(first["hits"]) == 2 and second["page"] == 2
    assert not {h["canvas_id"] for h in first["hits"]} & {h["canvas_id"] for h in second["hits"]}
    grouped = client.get("/api/search?q=a+red+circle&group=manifest").get_json()
    assert grouped["groups"][0]["manifest_id"] == shapes_site.manifest_ids["book"]
    assert grouped["groups"][0]["canvases"][0]["viewer_url"].startswith("/canvas/")
    assert "Grouped by manuscript" in client.get("/search?q=a+red+circle&group=manifest").get_data(as_text=True)
    # A metadata match ranks every page of the book: the page groups them by default, the API
    # only when asked (group=auto), so that its answers keep their shape.
    html = client.get("/search?q=shapes&k=2").get_data(as_text=True)
    assert "Grouped by manuscript: one manuscript holds most of these results." in html
    assert "4 matching pages" in html and 'href="/search?q=shapes&amp;k=2&amp;group=canvas">' in html
    assert client.get("/search?q=shapes&k=2&group=canvas").get_data(as_text=True).count('class="result-card"') == 2
    assert "hits" in client.get("/api/search?q=shapes&k=2").get_json()
    auto = client.get("/api/search?q=shapes&k=2&group=auto").get_json()
    assert auto["group"] == "manifest" and auto["grouped_automatically"] and auto["total"] == 4


def test_nonsense_finds_nothing_and_says_so_while_a_red_circle_finds_the_red_circles(client, shapes_site):
    body = client.get("/api/search?q=zzqxv").get_json()
    # Before score floors: every canvas, at the cosine the tiny CLIP gives any unknown word.
    assert body["hits"] == [] and body["total"] == 0 and body["below_floor"]
    assert 0 < body["floors"]["visual"] < 1
    html = client.get("/search?q=zzqxv").get_data(as_text=True)
    assert "0 results for <q>zzqxv</q>" in html and "Nothing matched <q>zzqxv</q>" in html
    assert 'class="result-card"' not in html
    assert 'href="/search?q=zzqxv&amp;k=24&amp;weaker=1">show these weaker matches</a>' in html
    weaker = client.get("/search?q=zzqxv&weaker=1").get_data(as_text=True)
    assert weaker.count('class="result-card"') == 4 and 'name="weaker" value="1"' in weaker
    red = client.get("/api/search?q=red+circle").get_json()
    assert [hit["canvas_id"] for hit in red["hits"]] == [shapes_site.canvas_ids["red_circle"],
                                                       shapes_site.canvas_ids["scene"]]
    assert red["hits"][1]["xywh"] == ",".join(map(str, SCENE_REGION))  # the scene's red circle
    html = client.get("/search?q=red+circle").get_data(as_text=True)
    assert "Show weaker matches</a>" in html  # the other two pages are only held back


def test_one_total_in_the_heading_the_api_the_facets_and_the_export(client, shapes_site):
    body = client.get("/api/search?q=a+red+circle&k=1").get_json()
    assert len(body["hits"]) == 1 and body["has_more"]
    assert body["total"] == 2 and body["total_exact"] and body["manuscripts"] == 1
    assert sum(body["facets"]["manifest"].values()) == sum(body["facets"]["iiif_version"].values()) == 2
    html = client.get("/search?q=a+red+circle&k=1").get_data(as_text=True)
    assert "2 results for <q>a red circle</q>" in html and "Results 1–1 of 2." in html
    assert "IIIF manifest of these 2 results</a>" in html
    export = client.get("/iiif/export/manifest?q=a+red+circle").get_json()
    assert len(export["items"]) == 2 and export["summary"]["en"] == ["2 canvases found by manuscripts-search."]


def test_facets_count_collection_institution_date_and_transcription_with_working_links(client, shapes_site):
    body = client.get("/api/search?q=a+red+circle&weaker=1").get_json()
    facets = body["facets"]
    assert facets["collection"] == {str(shapes_site.collection_id): 4}
    assert body["facet_labels"]["collection"] == {str(shapes_site.collection_id): "All shapes"}
    assert facets["provider"] == {"Bibliothèque des formes": 4}
    assert facets["century"] == {"1400-1499": 4} and facets["decade"] == {"1450-1459": 4}  # navDate 1450
    assert facets["transcription"] == {"true": 3, "false": 1}  # the green square has no text
    html = client.get("/search?q=a+red+circle&weaker=1").get_data(as_text=True)
    for heading in ("Collections", "Institutions", "Date", "Transcription"):
        assert f'<h2 class="sidebar-heading">{heading}</h2>' in html
    assert f"collection={shapes_site.collection_id}\">All shapes</a> <span class=\"count\">4</span>" in html
    assert "date_from=1400&amp;date_to=1499\">15th century</a>" in html
    assert "has_transcription=false\">Without</a> <span class=\"count\">1</span>" in html
    # Each facet's link narrows the results to exactly what it counted.
    for query, count in ((f"collection={shapes_site.collection_id}", 4), ("provider=Biblioth%C3%A8que+des+formes", 4),
                         ("date_from=1400&date_to=1499", 4), ("has_transcription=false", 1),
                         ("has_transcription=true", 3)):
        assert client.get(f"/api/search?q=a+red+circle&weaker=1&{query}").get_json()["total"] == count, query


def test_image_upload_finds_the_same_picture(client, shapes_site):
    response = client.post("/api/search", data={"image": (io.BytesIO(_png("blue", "triangle")), "q.png"), "k": "2"},
                           content_type="multipart/form-data")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["hits"][0]["canvas_id"] == shapes_site.canvas_ids["blue_triangle"]
    page = client.post("/search", data={"image": (io.BytesIO(_png("green", "square")), "g.png")},
                       content_type="multipart/form-data", follow_redirects=True)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "for your image" in html
    assert re.findall(r'href="/canvas/(\d+)', html)[0] == str(shapes_site.canvas_ids["green_square"])


def _handle(response) -> str:
    match = re.fullmatch(r"/search\?(.*&)?image=([0-9a-f]{64})(&.*)?", response.headers.get("Location", ""))
    assert response.status_code == 303 and match, (response.status_code, response.headers.get("Location"))
    return match.group(2)


def test_image_search_is_a_url_with_pages_filters_export_and_its_image(client, shapes_site):
    """Issue 16, point 4: the posted image is kept under a handle and the browser sent on to
    GET /search?image=<handle>; pages, filters, the export and Mirador all carry it, the image
    is shown, and the notice does not speak of metadata on an image search."""
    posted = client.post("/search", data={"image": (io.BytesIO(_png("blue", "triangle")), "q.png"), "k": "2"},
                         content_type="multipart/form-data")
    handle = _handle(posted)
    assert "k=2" in posted.headers["Location"]
    first = client.get(posted.headers["Location"])
    html = first.get_data(as_text=True)
    assert first.status_code == 200 and "for your image" in html
    assert re.findall(r'href="/canvas/(\d+)', html)[0] == str(shapes_site.canvas_ids["blue_triangle"])
    assert f'<img src="/query-images/{handle}.jpg" alt="The image you searched with">' in html
    assert "metadata and transcriptions only" not in html
    # The pager: page 2 holds other canvases (4 canvases, 2 a page: none unreachable).
    next_link = re.search(r'<a rel="next" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert f"image={handle}" in next_link and "page=2" in next_link
    second = client.get(next_link).get_data(as_text=True)
    seen = set(re.findall(r'class="result-link" href="/canvas/(\d+)', html))
    assert seen and seen.isdisjoint(re.findall(r'class="result-link" href="/canvas/(\d+)', second))
    # "Apply" on the filters keeps the image; so do the export and Mirador links.
    assert f'<input type="hidden" name="image" value="{handle}">' in html
    filtered = client.get(f"/search?image={handle}&k=2&has_transcription=true").get_data(as_text=True)
    assert "for your image" in filtered and "has transcription: true" in filtered
    export = re.search(r'href="(/iiif/export/manifest\?[^"]+)"', html).group(1).replace("&amp;", "&")
    assert f"image={handle}" in export and "Open in Mirador" in html
    manifest = client.get(export).get_json()
    assert manifest["label"] == {"en": ["Canvases like the query image"]}
    assert len(manifest["items"]) == 4  # every canvas, ranked by the image (the export drops k)
    # The image itself, as the app re-encoded it: a JPEG, never the upload's bytes.
    shown = client.get(f"/query-images/{handle}.jpg")
    assert shown.status_code == 200 and shown.mimetype == "image/jpeg" and shown.data.startswith(b"\xff\xd8")
    assert shown.headers["X-Content-Type-Options"] == "nosniff"
    # The API's POST gives the handle and links that repeat the search.
    api = client.post("/api/search", data={"image": (io.BytesIO(_png("blue", "triangle")), "q.png"), "k": "2"},
                      content_type="multipart/form-data").get_json()
    assert api["query_image"]["handle"] == handle and f"image={handle}" in api["links"]["next"]
    assert client.get(api["links"]["next"]).get_json()["page"] == 2


def test_query_image_handles_are_bounded_expire_and_refuse_hostile_input(make_app, site, tmp_path):
    """Handles are 64 hex digits or a 400 (no path reaches the disk otherwise); an upload that
    hides HTML after its image is kept as a clean JPEG; a handle unused for longer than
    QUERY_IMAGE_KEEP_SECONDS is gone (410, saying what to do); beyond QUERY_IMAGE_STORE_MAX
    images, the least recently used go first."""
    import os
    import time

    app = make_app(site.config, QUERY_IMAGE_STORE_MAX=3, QUERY_IMAGE_KEEP_SECONDS=600)
    client = app.test_client()
    for bad in ("../../msearch.sqlite3", "..%2f..%2fmsearch", "g" * 64, "0" * 63, "0" * 64 + "/x"):
        response = client.get(f"/query-images/{bad}.jpg")
        assert response.status_code in (400, 404), (bad, response.status_code)
        assert client.get("/search", query_string={"image": bad}).status_code == 400
    hostile = _png("red", "circle") + b"<html><script>alert(1)</script></html>"
    handles = []
    for number, (colour, shape) in enumerate([("red", "circle"), ("blue", "triangle"), ("green", "square"),
                                              ("yellow", "square")]):
        data = hostile if number == 0 else _png(colour, shape)
        handles.append(_handle(client.post("/search", data={"image": (io.BytesIO(data), "q.png")},
                                           content_type="multipart/form-data")))
        time.sleep(0.02)
    folder = site.config.data_dir / "query-images"
    kept = sorted(path.name for path in folder.iterdir())
    assert len(kept) == 3 and f"{handles[0]}.jpg" not in kept  # the least recently used went first
    for path in folder.iterdir():
        assert path.read_bytes().startswith(b"\xff\xd8") and b"<script" not in path.read_bytes()
    gone = client.get(f"/search?image={handles[0]}")
    assert gone.status_code == 410 and "search with the image again" in gone.get_data(as_text=True)
    old = folder / f"{handles[1]}.jpg"
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert client.get(f"/search?image={handles[1]}").status_code == 410
    assert client.get(f"/search?image={handles[3]}").status_code == 200


def test_image_by_url_is_fetched_from_a_real_server(app, shapes_site, iiif_server):
    urls = iiif_server.add_image("query", render_shape("blue", "triangle", size=96, seed=9))
    client = app.test_client()
    refused = client.post("/api/search", data={"image_url": urls["raw"]})
    assert refused.status_code == 400 and "not a public address" in refused.get_json()["error"]["message"]
    app.config["QUERY_IMAGE_ALLOW_PRIVATE_URLS"] = True
    try:
        body = client.post("/api/search", data={"image_url": urls["raw"], "k": "1"}).get_json()
        assert body["hits"][0]["canvas_id"] == shapes_site.canvas_ids["blue_triangle"]
        missing = client.post("/api/search", data={"image_url": f"{iiif_server.base_url}/raw/none.jpg"})
        assert missing.status_code == 400 and "could not be fetched" in missing.get_json()["error"]["message"]
    finally:
        app.config["QUERY_IMAGE_ALLOW_PRIVATE_URLS"] = False


@pytest.mark.parametrize("data, status, message", [
    ({"image": (io.BytesIO(b"just text"), "a.txt")}, 400, "is not an image"),
    ({"image": (io.BytesIO(b""), "")}, 400, "Give an image"),
    ({"image_url": "file:///etc/passwd"}, 400, "must be an http(s) URL"),
    ({"image_url": "ftp://example.org/a.png"}, 400, "must be an http(s) URL"),
    ({"image": (io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40), "bad.png")}, 400, "image"),
])
def test_bad_image_queries_are_400s(client, data, status, message):
    response = client.post("/api/search", data=data, content_type="multipart/form-data")
    assert response.status_code == status and message in response.get_json()["error"]["message"]


def test_oversized_uploads_are_refused_before_reading(app):
    app.config["MAX_CONTENT_LENGTH"] = 50_000
    try:
        client = app.test_client()
        big = {"image": (io.BytesIO(b"\xff" * 60_000), "big.jpg")}
        api = client.post("/api/search", data=big, content_type="multipart/form-data")
        assert api.status_code == 413 and "too large" in api.get_json()["error"]["message"]
        page = client.post("/search", data={"image": (io.BytesIO(b"\xff" * 60_000), "big.jpg")},
                           content_type="multipart/form-data")
        assert page.status_code == 413 and "too large" in page.get_data(as_text=True)
    finally:
        app.config["MAX_CONTENT_LENGTH"] = 20 * 1024 * 1024


def test_decompression_bombs_are_refused(app):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buffer, "PNG")  # 144 megapixels in a few kilobytes
    response = app.test_client().post("/api/search", data={"image": (io.BytesIO(buffer.getvalue()), "b.png")})
    assert response.status_code == 400 and "megapixels" in response.get_json()["error"]["message"]


def test_more_like_this_canvas_and_region(client, shapes_site):
    like = client.get(f"/api/canvas/{shapes_site.canvas_ids['red_circle']}/similar?k=3").get_json()
    assert shapes_site.canvas_ids["red_circle"] not in [h["canvas_id"] for h in like["hits"]]
    # The scene's red circle region looks most like the red circle page.
    assert like["hits"][0]["canvas_id"] == shapes_site.canvas_ids["scene"]
    page = client.get(f"/search?like={shapes_site.canvas_ids['red_circle']}").get_data(as_text=True)
    assert "pages like" in page
    missing = client.get("/api/canvas/999999/similar")
    assert missing.status_code == 404


def test_more_like_a_drawn_region_crops_the_image_from_its_server(app, shapes_site):
    # The canvas's image lives at iiif.test (unreachable): without a stored derivative the crop
    # must be fetched, which fails with a clear 503; percent regions are understood.
    response = app.test_client().get(
        f"/api/canvas/{shapes_site.canvas_ids['scene']}/similar?xywh=percent:50,50,50,50")
    assert response.status_code == 503 and "could not be fetched" in response.get_json()["error"]["message"]


def test_other_digitisations_are_found_by_perceptual_hash(make_app, tmp_path, db_url, trained_clip_dir):
    from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
    from manuscripts_search.models import Canvas, Manifest
    from manuscripts_search.embedding.perceptual_hashes import image_hashes, store_hashes
    from tests.helpers.web_site import scene_image, site_config

    config = site_config(tmp_path / "dups", trained_clip_dir, db_url)
    engine = make_engine(config.db_url)
    upgrade_database(engine)
    page = scene_image(seed=3)
    width, height = page.size
    images = {"original": page, "other library's scan": page.resize((300, 450)),
              # a third photograph, framed a little tighter: 4% cut from every side
              "tighter crop": page.crop((int(width * .04), int(height * .04), int(width * .96), int(height * .96))),
              "unrelated": render_shape("blue", "triangle", size=400, seed=2)}
    ids = {}
    with session_scope(make_sessionmaker(engine)) as session:
        for number, (name, image) in enumerate(images.items()):
            manifest = Manifest(url=f"http://lib{number}.test/m.json", iiif_id=f"http://lib{number}.test/m.json",
                                iiif_version=3, label={"en": [name]})
            session.add(manifest)
            session.flush()
            canvas = Canvas(manifest_id=manifest.id, iiif_id=f"http://lib{number}.test/c", position=0,
                            label={"none": [name]}, width=image.width, height=image.height)
            session.add(canvas)
            session.flush()
            store_hashes(session, canvas.id, None, f"{number:064x}", image_hashes(image))
            ids[name] = canvas.id
    engine.dispose()
    client = make_app(config).test_client()
    found = client.get(f"/api/canvas/{ids['original']}/duplicates").get_json()["duplicates"]
    assert sorted(d["canvas_id"] for d in found) == sorted([ids["other library's scan"], ids["tighter crop"]])
    html = client.get(f"/canvas/{ids['original']}/duplicates").get_data(as_text=True)
    copy_id = ids["other library's scan"]
    assert f'href="/canvas/{copy_id}"' in html and "similarity" in html
    assert client.get(f"/api/canvas/{ids['unrelated']}/duplicates").get_json()["duplicates"] == []


def test_duplicates_of_a_canvas_never_hashed_say_so(client, shapes_site):
    api = client.get(f"/api/canvas/{shapes_site.canvas_ids['red_circle']}/duplicates")
    assert api.status_code == 404 and "no perceptual hashes" in api.get_json()["error"]["message"]
    page = client.get(f"/canvas/{shapes_site.canvas_ids['red_circle']}/duplicates").get_data(as_text=True)
    assert "no perceptual hashes" in page


# -- canvas page ----------------------------------------------------------------------------------

def test_canvas_page_lists_the_query_matches_as_navigable_highlights(client, shapes_site):
    import json

    html = client.get(f"/canvas/{shapes_site.canvas_ids['scene']}?xywh=500,750,500,750&q=dragon").get_data(as_text=True)
    config = json.loads(re.search(r'id="viewer-config">(.*?)</script>', html, re.S).group(1))
    kinds = [(h["kind"], h["xywh"]) for h in config["highlights"]]
    assert kinds[0] == ("hit", "500,750,500,750") and ("text", "100,100,800,60") in kinds
    assert config["highlights"][0]["x"] == 0.5 and config["highlights"][0]["y"] == 0.75
    assert 'id="highlight-next"' in html and "<kbd>n</kbd>" in html
    assert "Matches on this page for <q>dragon</q>" in html


def test_canvas_page_renders_metadata_through_the_iiif_html_subset(client, shapes_site):
    html = client.get(f"/canvas/{shapes_site.canvas_ids['red_circle']}").get_data(as_text=True)
    assert "<p>A <b>book</b> of shapes" in html  # allowed tags kept
    assert 'href="https://example.org/about" rel="noopener noreferrer nofollow"' in html
    assert "alert(" not in html and "onerror" not in html and "<iframe" not in html and "javascript:" not in html
    assert "<img src=\"x\"" not in html  # not an http(s) source
    # Not HTML (does not start with "<"): shown as text.
    assert "5 &lt; 6 and &lt;i&gt;not html either" in html and "Plain &lt;b&gt;not html&lt;/b&gt;" in html
    # requiredStatement and rights are shown.
    assert 'Provided by the <a href="https://example.org/library" rel="noopener noreferrer nofollow">Shape Library</a>' in html
    assert '<a href="http://creativecommons.org/licenses/by/4.0/" rel="license noopener noreferrer">CC BY 4.0</a>' in html
    assert "Bibliothèque des formes" in html and "https://example.org/book" in html


def test_hostile_manifest_page_is_inert(client, shapes_site):
    response = client.get(f"/manifests/{shapes_site.manifest_ids['hostile']}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<script>" not in html.split("</main>")[0] and "onclick" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<b>bold</b>" in html


# -- browse ---------------------------------------------------------------------------------------

def test_browse_pages(client, shapes_site):
    sources = client.get("/sources").get_data(as_text=True)
    assert "<title>Sources · Manuscripts search</title>" in sources and shapes_site.manifest_url in sources
    collections = client.get("/collections").get_data(as_text=True)
    assert "All shapes" in collections and f"/manifests?collection={shapes_site.collection_id}" in collections
    listed = client.get(f"/manifests?collection={shapes_site.collection_id}").get_data(as_text=True)
    assert "Book of shapes" in listed and "&lt;script&gt;" not in listed
    manifest = client.get(f"/manifests/{shapes_site.manifest_ids['book']}").get_data(as_text=True)
    assert "<title>Book of shapes · Manuscripts search</title>" in manifest
    assert manifest.count('href="/canvas/') == 4 and "/iiif/manifest/" in manifest and "/mirador?manifest=" in manifest
    assert "/uv?manifest=" in manifest and "/clover?iiif-content=" in manifest  # the other IIIF viewers
    harvest = client.get("/harvest").get_data(as_text=True)
    assert "Harvest status" in harvest
    assert client.get("/manifests?page=0").status_code == 400
    assert client.get("/manifests/999999").status_code == 404


def test_browse_api(client, shapes_site):
    assert client.get("/api/sources").get_json()["sources"][0]["manifests"] == 1
    assert client.get("/api/collections").get_json()["collections"][0]["manifests"] == 1
    manifests = client.get("/api/manifests").get_json()
    assert {m["id"] for m in manifests["manifests"]} == set(shapes_site.manifest_ids.values())
    detail = client.get(f"/api/manifests/{shapes_site.manifest_ids['book']}").get_json()
    assert len(detail["canvases"]) == 4 and detail["iiif"]["search2"].endswith(f"/manifest/{detail['id']}")
    assert detail["rights"] == "http://creativecommons.org/licenses/by/4.0/"
    assert set(client.get("/api/harvest").get_json()) == {
        "crawls", "error_count", "error_groups", "error_group_count", "errors", "manifests_with_errors",
        "manifests_unusable", "manifests_with_image_errors", "deferred_images", "failed_manifests"}


# -- OpenAPI --------------------------------------------------------------------------------------

def test_openapi_describes_every_api_route(app):
    document = app.test_client().get("/api/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    described = {(path, method) for path, operations in document["paths"].items() for method in operations}
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                routed.add((path, method.lower()))
    assert routed == described
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation["parameters"]:
                assert {"name", "in", "schema"} <= set(parameter)
    docs = app.test_client().get("/api/docs")
    assert docs.status_code == 200 and "/api/search" in docs.get_data(as_text=True)


@pytest.mark.parametrize("path", [
    "/api/search?q=red&k=0", "/api/search?q=red&page=0", "/api/search?q=red&group=x", "/api/search?q=red&signal=x",
    "/api/search?q=red&date_from=14", "/api/search?q=red&iiif_version=7", "/api/search?q=red&like=abc",
    "/api/search?q=red&has_transcription=maybe", "/api/search?like=999999", "/api/manifests?page=x",
    "/api/canvas/1/similar?xywh=1,2,3", "/search/similar?canvas=x", "/canvas/1?xywh=percent:1,2,3,4,5",
])
def test_bad_parameters_are_4xx_never_500(client, path):
    response = client.get(path)
    assert 400 <= response.status_code < 500, (path, response.status_code)
