"""The web app through Flask's test client, on a real migrated SQLite database, a real HNSW index
and a tiny CLIP trained in the test session: search pages, the canvas viewer page, the JSON API,
error handling, escaping of manifest text and the npm-installed viewer files."""
from __future__ import annotations

import io
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from manuscripts_search.config import Config, load_config
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
from manuscripts_search.index.layouts import new_index
from manuscripts_search.store.vector_codec import decode_vectors, encode_vector
from manuscripts_search.models import Canvas, Embedding, Manifest
from tests.helpers.browser import launch_chromium, mean_colour, serve_app, settled_box
from tests.helpers.model_factory import render_shape
from tests.helpers.web_site import site_config
from web import create_app

XSS_LABEL = "<script>alert(1)</script>"
XSS_CANVAS_LABEL = '<img src=x onerror="alert(2)">'

# (key, manifest key, colour, shape, how the image is published)
SHAPE_CANVASES = [
    ("red_circle", "book", "red", "circle", "service3"),
    ("blue_triangle", "book", "blue", "triangle", "service2"),
    ("green_square", "book", "green", "square", "image"),
    ("yellow_square", "hostile", "yellow", "square", "hostile"),
]


@dataclass
class Site:
    """A data directory with a database and an index, and what the test needs to know about it."""

    config: Config
    encoder: object
    canvas_ids: dict  # key -> database id
    manifest_ids: dict
    vectors: dict  # key -> stored canvas vector


@contextmanager
def _database(config: Config):
    """A session factory on ``config``'s database, migrated; its connections are closed on exit
    (PostgreSQL test databases are dropped after each test)."""
    engine = make_engine(config.db_url)
    try:
        upgrade_database(engine)
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()


def _migrate(config: Config) -> None:
    with _database(config):
        pass


def _add_shape_canvas(session, encoder, manifest: Manifest, position: int, colour: str, shape: str,
                      publication: str, seed: int) -> tuple[Canvas, Embedding, np.ndarray]:
    ident = f"{colour}-{shape}"
    canvas = Canvas(manifest_id=manifest.id, iiif_id=f"http://iiif.test/canvas/{ident}", position=position,
                    label={"none": [f"f. {position + 1}r {colour} {shape}"]}, width=1000, height=1500)
    if publication == "service3":
        canvas.service_id, canvas.service_api_version, canvas.service_level = (
            f"http://iiif.test/iiif3/{ident}", 3, 2)
    elif publication == "service2":
        canvas.service_id, canvas.service_api_version, canvas.service_level = (
            f"http://iiif.test/iiif2/{ident}/", 2, 1)
    elif publication == "image":
        canvas.image_url = f"http://iiif.test/raw/{ident}.jpg"
    else:  # what a hostile manifest could carry: script in labels and links
        canvas.label = {"en": [XSS_CANVAS_LABEL]}
        canvas.service_id, canvas.service_api_version, canvas.service_level = "javascript:alert(3)//", 3, 2
        canvas.image_url = f"http://iiif.test/raw/{ident}.jpg"
    session.add(canvas)
    session.flush()
    vector = encoder.encode_images([render_shape(colour, shape, size=96, seed=seed)])[0]
    embedding = Embedding(space=encoder.space_id, model_id=encoder.model_id, model_revision=encoder.revision,
                          canvas_id=canvas.id, dim=encoder.dim, vector=encode_vector(vector))
    session.add(embedding)
    session.flush()
    return canvas, embedding, vector


def _save_index(session, encoder, config: Config) -> None:
    """Build the index from every live embedding, as `msearch index` does."""
    from sqlalchemy import select

    rows = session.scalars(select(Embedding).where(Embedding.space == encoder.space_id)).all()
    index = new_index(encoder.space_id, encoder.dim)
    index.add([row.id for row in rows], decode_vectors([row.vector for row in rows], encoder.dim))
    index.save(config.index_dir)


@pytest.fixture(scope="module")
def site(tmp_path_factory, trained_clip_dir, trained_clip_encoder, module_db_url) -> Site:
    """This module's catalogue (it replaces conftest's ``site``, so ``app`` and ``client`` serve it)."""
    config = site_config(tmp_path_factory.mktemp("web-site"), trained_clip_dir, module_db_url)
    canvas_ids, manifest_ids, vectors = {}, {}, {}
    with _database(config) as factory, session_scope(factory) as session:
        manifests = {
            "book": Manifest(url="http://iiif.test/book/manifest.json", iiif_id="http://iiif.test/book/manifest.json", iiif_version=3,
                             label={"en": ["Book of shapes"], "fr": ["Livre des formes"]}),
            # A manifest whose id is a script URL must never become a link.
            "hostile": Manifest(url="javascript:alert(4)", iiif_id="javascript:alert(4)", iiif_version=3, label={"none": [XSS_LABEL]}),
        }
        session.add_all(manifests.values())
        session.flush()
        manifest_ids = {key: manifest.id for key, manifest in manifests.items()}
        for seed, (key, manifest_key, colour, shape, publication) in enumerate(SHAPE_CANVASES):
            position = sum(1 for other in SHAPE_CANVASES[:seed] if other[1] == manifest_key)
            canvas, _, vector = _add_shape_canvas(session, trained_clip_encoder, manifests[manifest_key],
                                                  position, colour, shape, publication, seed)
            canvas_ids[key], vectors[key] = canvas.id, vector
        blank = Canvas(manifest_id=manifests["book"].id, iiif_id="http://iiif.test/canvas/blank", position=3,
                       label={"none": ["Flyleaf"]}, width=1000, height=1500)
        session.add(blank)
        session.flush()
        canvas_ids["blank"] = blank.id
        _save_index(session, trained_clip_encoder, config)
    return Site(config, trained_clip_encoder, canvas_ids, manifest_ids, vectors)


def _viewer_config(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="viewer-config">(.*?)</script>', html, re.DOTALL)
    assert match, "the canvas page has no viewer configuration"
    return json.loads(match.group(1))


# -- search -----------------------------------------------------------------------------------

def test_search_page_has_a_labelled_query_box(client):
    response = client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<title>Search · Manuscripts search</title>" in html
    assert 'class="search-form search-form--large" role="search" action="/search"' in html
    assert 'method="get" data-image-action="/search"' in html  # words: GET; an image: POST (search.js)
    assert 'id="image" type="file" name="image" accept="image/*"' in html
    assert '<label for="q"' in html and 'id="q" type="search" name="q"' in html
    assert "/static/style.css" in html


@pytest.mark.parametrize("key", [row[0] for row in SHAPE_CANVASES])
def test_api_search_finds_the_canvas_that_shows_the_query(client, site, key):
    _, _, colour, shape, _ = next(row for row in SHAPE_CANVASES if row[0] == key)
    # weaker: the three best whatever their score (the floor is tested on its own below).
    response = client.get("/api/search", query_string={"q": f"a {colour} {shape}", "k": "3", "weaker": "1"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["query"] == f"a {colour} {shape}" and body["k"] == 3
    assert [hit["rank"] for hit in body["hits"]] == [1, 2, 3]
    assert body["hits"][0]["canvas_id"] == site.canvas_ids[key]
    # Scores are the cosine similarities of the query and the stored vectors, best first.
    query_vector = site.encoder.encode_texts([f"a {colour} {shape}"])[0]
    stored_by_canvas = {site.canvas_ids[k]: v for k, v in site.vectors.items()}
    expected = sorted((float(query_vector @ v) for v in stored_by_canvas.values()), reverse=True)[:3]
    assert [hit["score"] for hit in body["hits"]] == pytest.approx(expected, abs=1e-4)
    for hit in body["hits"]:
        assert hit["score"] == pytest.approx(float(query_vector @ stored_by_canvas[hit["canvas_id"]]), abs=1e-4)


def test_api_search_default_k_returns_every_indexed_canvas_once(client, site):
    hits = client.get("/api/search?q=a+red+circle&weaker=1").get_json()["hits"]
    indexed = {site.canvas_ids[row[0]] for row in SHAPE_CANVASES}
    assert sorted(hit["canvas_id"] for hit in hits) == sorted(indexed)


def test_results_page_shows_iiif_thumbnails_labels_scores_and_links(client, site):
    response = client.get("/search", query_string={"q": "a red circle", "k": "4", "weaker": "1"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<title>“a red circle” — results · Manuscripts search</title>" in html
    assert "4 results for <q>a red circle</q>" in html
    assert 'value="a red circle"' in html  # the query stays in the search box
    red = site.canvas_ids["red_circle"]
    # Each card shows the hit's IIIF thumbnail: through the image service when there is one
    # (in that service's API version), else the painted image itself.
    hits = client.get("/api/search", query_string={"q": "a red circle", "k": "4", "weaker": "1"}).get_json()["hits"]
    thumbnails = {hit["canvas_id"]: hit["thumbnail"] for hit in hits}
    assert thumbnails[red].startswith("http://iiif.test/iiif3/red-circle/full/")
    assert thumbnails[site.canvas_ids["blue_triangle"]].startswith("http://iiif.test/iiif2/blue-triangle/full/")
    assert thumbnails[site.canvas_ids["green_square"]] == "http://iiif.test/raw/green-square.jpg"
    for canvas_key in ("red_circle", "blue_triangle", "green_square"):
        assert f'<img src="{thumbnails[site.canvas_ids[canvas_key]]}"' in html
    assert f'href="/canvas/{red}?q=a+red+circle"' in html  # the viewer highlights the query's matches
    assert "Book of shapes" in html and "f. 1r red circle" in html
    assert re.search(r"score 0\.\d{3}<", html)
    # Cards are in rank order: the red circle first.
    assert re.findall(r'href="/canvas/(\d+)', html)[0] == str(red)


@pytest.mark.parametrize("query", ["\x00 red \x07circle", "🐉 dragon", "مخطوطة", "x" * 1000, "%ff<>&\"'"])
def test_odd_but_valid_queries_are_answered(client, query):
    response = client.get("/api/search", query_string={"q": query, "k": "2", "weaker": "1"})
    assert response.status_code == 200
    assert response.get_json()["query"] == query.strip() and len(response.get_json()["hits"]) == 2
    assert client.get("/search", query_string={"q": query, "k": "2"}).status_code == 200


def test_search_without_query_parameter_goes_back_to_the_search_page(client):
    response = client.get("/search")
    assert response.status_code == 302 and response.headers["Location"] == "/"


# -- canvas page ------------------------------------------------------------------------------

def test_canvas_page_feeds_openseadragon_the_info_json(client, site):
    response = client.get(f"/canvas/{site.canvas_ids['red_circle']}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<title>f. 1r red circle — Book of shapes · Manuscripts search</title>" in html
    config = _viewer_config(html)
    assert config["tileSource"] == "http://iiif.test/iiif3/red-circle/info.json"
    assert config["placement"] == {"x": 0.0, "y": 0.0, "width": 1.0}
    assert config["overlay"] is None
    assert config["prefixUrl"] == "/vendor/openseadragon/images/"
    assert '<script src="/vendor/openseadragon/openseadragon.min.js"></script>' in html
    assert '<script src="/static/viewer.js"></script>' in html
    assert '<a href="http://iiif.test/book/manifest.json" rel="noopener noreferrer">manifest JSON</a>' in html
    assert f'href="/canvas/{site.canvas_ids["blue_triangle"]}">Next canvas' in html


def test_canvas_page_info_json_url_has_no_double_slash(client, site):
    config = _viewer_config(client.get(f"/canvas/{site.canvas_ids['blue_triangle']}").get_data(as_text=True))
    assert config["tileSource"] == "http://iiif.test/iiif2/blue-triangle/info.json"


def test_canvas_page_draws_the_region_in_viewport_units(client, site):
    response = client.get(f"/canvas/{site.canvas_ids['red_circle']}?xywh=100,150,200,300")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    # Canvas width 1000: viewport coordinates are canvas coordinates / 1000.
    assert _viewer_config(html)["overlay"] == {"units": "viewport", "x": 0.1, "y": 0.15,
                                               "width": 0.2, "height": 0.3}
    assert "Highlighted region: x 100, y 150, 200 × 300" in html


def test_canvas_without_service_uses_a_simple_image_tile_source(client, site):
    config = _viewer_config(client.get(f"/canvas/{site.canvas_ids['green_square']}").get_data(as_text=True))
    assert config["tileSource"] == {"type": "image", "url": "http://iiif.test/raw/green-square.jpg"}


def test_canvas_without_image_says_so(client, site):
    response = client.get(f"/canvas/{site.canvas_ids['blank']}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "This canvas paints no image that can be shown." in html
    assert 'id="viewer-config"' not in html


def test_canvas_page_renders_without_openseadragon_and_says_how_to_install_it(site, make_app, tmp_path):
    # test_config alone can carry the whole configuration.
    app = make_app(MSEARCH_CONFIG=site.config, OPENSEADRAGON_DIR=str(tmp_path))
    response = app.test_client().get(f"/canvas/{site.canvas_ids['red_circle']}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "make setup" in html and "npm ci" in html
    assert "openseadragon.min.js" not in html
    assert _viewer_config(html)["tileSource"] == "http://iiif.test/iiif3/red-circle/info.json"


# -- JSON API ---------------------------------------------------------------------------------

def test_api_canvas(client, site):
    red = site.canvas_ids["red_circle"]
    body = client.get(f"/api/canvas/{red}").get_json()
    assert body["id"] == red and body["iiif_id"] == "http://iiif.test/canvas/red-circle"
    assert body["label"] == "f. 1r red circle" and (body["width"], body["height"]) == (1000, 1500)
    assert body["image"]["info_json"] == "http://iiif.test/iiif3/red-circle/info.json"
    assert body["image"]["thumbnail"] == "http://iiif.test/iiif3/red-circle/full/!256,256/0/default.jpg"
    assert body["manifest"] == {"id": site.manifest_ids["book"], "iiif_id": "http://iiif.test/book/manifest.json",
                                "url": "http://iiif.test/book/manifest.json", "label": "Book of shapes", "json_url": "http://iiif.test/book/manifest.json"}
    assert body["viewer_url"] == f"/canvas/{red}"


def test_api_stats_counts_the_database_and_the_index(client, site):
    body = client.get("/api/stats").get_json()
    assert body["manifests"] == 2 and body["canvases"] == len(SHAPE_CANVASES) + 1
    assert body["canvases_with_images"] == len(SHAPE_CANVASES)
    assert body["embeddings"] == len(SHAPE_CANVASES) and body["stale_embeddings"] == 0
    assert body["indexes"] == [{"space": site.encoder.space_id, "vectors": len(SHAPE_CANVASES),
                                "dim": site.encoder.dim, "layout": "hnsw"}]


# -- errors: bad input is never a 500 ---------------------------------------------------------

@pytest.mark.parametrize("query_string, message", [
    ({"q": ""}, "The query is empty"),
    ({"q": "   "}, "The query is empty"),
    ({"q": "x" * 1001}, "The query is too long (1001 characters; at most 1000)"),
    ({"q": "red", "k": "abc"}, "k must be a whole number from 1 to 100"),
    ({"q": "red", "k": "0"}, "k must be a whole number from 1 to 100"),
    ({"q": "red", "k": "-3"}, "k must be a whole number from 1 to 100"),
    ({"q": "red", "k": "101"}, "k must be a whole number from 1 to 100"),
    ({"q": "red", "k": "9" * 5000}, "k must be a whole number from 1 to 100"),
    ({"q": "red", "k": "²"}, "k must be a whole number from 1 to 100"),
])
def test_bad_search_input_is_a_400_with_a_clear_message(client, query_string, message):
    api = client.get("/api/search", query_string=query_string)
    assert api.status_code == 400
    assert api.get_json()["error"]["status"] == 400
    assert api.get_json()["error"]["message"].startswith(message)
    page = client.get("/search", query_string=query_string)
    assert page.status_code == 400 and page.mimetype == "text/html"
    assert message in page.get_data(as_text=True)


@pytest.mark.parametrize("xywh", ["1,2,3", "a,b,c,d", "0,0,0,10", "-1,0,10,10", "1,2,3,4,5",
                                  "1e3,0,1,1", "9999999999,0,1,1", "percent:60,0,50,10",
                                  "percent:-1,2,3,4", "percent:1,2,3"])
def test_bad_region_is_a_400(client, site, xywh):
    response = client.get(f"/canvas/{site.canvas_ids['red_circle']}", query_string={"xywh": xywh})
    assert response.status_code == 400
    assert "xywh must" in response.get_data(as_text=True)


def test_unknown_canvas_is_a_404_in_html_and_json(client):
    page = client.get("/canvas/987654")
    assert page.status_code == 404 and "There is no canvas with id 987654." in page.get_data(as_text=True)
    api = client.get("/api/canvas/987654")
    assert api.status_code == 404
    assert api.get_json() == {"error": {"status": 404, "message": "There is no canvas with id 987654."}}
    assert client.get("/canvas/not-a-number").status_code == 404
    assert client.get("/canvas/99999999999999999999").status_code == 404  # beyond any database integer
    assert client.get("/api/canvas/99999999999999999999").get_json()["error"]["status"] == 404


def test_unknown_paths_answer_in_the_shape_of_their_surface(client):
    assert client.get("/api/nothing-here").get_json()["error"]["status"] == 404
    page = client.get("/nothing-here")
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert client.put("/api/search?q=red").get_json()["error"]["status"] == 405


def test_search_before_any_embed_run_is_a_503(site, make_app, trained_clip_dir, tmp_path, db_url):
    config = site_config(tmp_path / "empty", trained_clip_dir, db_url)
    _migrate(config)
    client = make_app(config).test_client()
    api = client.get("/api/search?q=a+red+circle")
    assert api.status_code == 503
    assert "run msearch embed first" in api.get_json()["error"]["message"]
    page = client.get("/search?q=a+red+circle")
    assert page.status_code == 503 and "run msearch embed first" in page.get_data(as_text=True)
    # Pages that need no index keep working.
    assert client.get("/api/stats").get_json()["indexes"] == []


def _text_only_answer(response) -> list:
    """A search that could not use the image side still answers (from metadata and
    transcriptions, here none), and says why in its notices."""
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["visual"] is False and body["hits"] == [] and "fulltext" in body["signals"]
    return body["notices"]


def test_search_with_only_another_models_index_falls_back_to_text_with_a_notice(site, make_app, trained_clip_dir,
                                                                              tmp_path, db_url):
    config = site_config(tmp_path / "other", trained_clip_dir, db_url)
    _migrate(config)
    other = new_index("someone/else@abc", 4)
    other.add([1], np.eye(4, dtype=np.float32)[:1])
    other.save(config.index_dir)
    notices = _text_only_answer(make_app(config).test_client().get("/api/search?q=red"))
    assert any("run msearch embed first" in n and site.encoder.space_id in n for n in notices), notices


def test_unloadable_model_falls_back_with_a_short_notice_and_the_reason_for_the_admin(make_app, tmp_path, db_url):
    config = site_config(tmp_path / "data", tmp_path / "no-such-model", db_url)
    _migrate(config)
    new_index("any@space", 4).save(config.index_dir)
    client = make_app(config, ADMIN_TOKEN="s3cret-admin").test_client()
    notices = _text_only_answer(client.get("/api/search?q=red"))
    notice = next(n for n in notices if "image model no-such-model is not available" in n)
    # A sentence for scholars: neither the exception's text nor the installation's paths.
    assert "does not exist" not in notice and str(tmp_path) not in notice, notice
    page = client.get("/search?q=red").get_data(as_text=True)
    assert "The image model no-such-model is not available" in page and "metadata and" in page
    assert str(tmp_path) not in page
    # The reason itself is on the admin page.
    login = client.get("/admin").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    assert client.post("/admin/login", data={"token": "s3cret-admin", "csrf_token": csrf}).status_code == 303
    admin = client.get("/admin").get_data(as_text=True)
    assert 'id="model-problem"' in admin and "does not exist" in admin and "no-such-model" in admin
    # An image query needs vectors in the space of the encoder in use (here the handcrafted
    # fallback, which nothing was embedded with): a 503 that says what to run.
    upload = client.post("/api/search", data={"image": (io.BytesIO(_png_bytes()), "q.png")})
    assert upload.status_code == 503
    assert "msearch embed" in upload.get_json()["error"]["message"] or "image model" in upload.get_json()["error"]["message"]
    # The page says what is true of an image search: no word of metadata and transcriptions.
    page = client.post("/search", data={"image": (io.BytesIO(_png_bytes()), "q.png")}, follow_redirects=True)
    message = page.get_data(as_text=True)
    assert page.status_code == 503 and "Searching by image needs the image model no-such-model" in message
    assert "metadata and transcriptions" not in message


def test_unreadable_index_falls_back_with_a_notice_that_says_what_to_run(make_app, trained_clip_encoder,
                                                                         trained_clip_dir, tmp_path, db_url):
    from manuscripts_search.index.vector_index import index_paths

    config = site_config(tmp_path / "torn", trained_clip_dir, db_url)
    _migrate(config)
    index = new_index(trained_clip_encoder.space_id, trained_clip_encoder.dim)
    index.add([1], trained_clip_encoder.encode_texts(["a red circle"]))
    graph_path = index.save(config.index_dir)
    graph_path.write_bytes(graph_path.read_bytes()[:100])  # truncated, as by a full disk
    assert index_paths(config.index_dir, trained_clip_encoder.space_id)[0] == graph_path
    notices = _text_only_answer(make_app(config).test_client().get("/api/search?q=red"))
    assert any("msearch index rebuild" in n for n in notices), notices


def _png_bytes(colour="red", shape="circle", size=64) -> bytes:
    buffer = io.BytesIO()
    render_shape(colour, shape, size=size, seed=3).save(buffer, "PNG")
    return buffer.getvalue()


def test_unmigrated_database_is_a_503_that_says_what_to_run(make_app, tmp_path, db_url):
    config = load_config({"MSEARCH_DATA_DIR": str(tmp_path / "fresh"), "MSEARCH_DB": db_url})
    response = make_app(config).test_client().get("/api/stats")
    assert response.status_code == 503
    assert "msearch init-db" in response.get_json()["error"]["message"]


# -- index reload -----------------------------------------------------------------------------

def test_a_new_index_on_disk_is_picked_up_without_restart(make_app, trained_clip_dir, trained_clip_encoder, tmp_path,
                                                          db_url):
    config = site_config(tmp_path / "growing", trained_clip_dir, db_url)
    with _database(config) as factory, session_scope(factory) as session:
        manifest = Manifest(url="http://iiif.test/growing.json", iiif_id="http://iiif.test/growing.json",
                            iiif_version=3, label={"en": ["Growing"]})
        session.add(manifest)
        session.flush()
        _add_shape_canvas(session, trained_clip_encoder, manifest, 0, "red", "circle", "service3", seed=11)
        _save_index(session, trained_clip_encoder, config)
    client = make_app(config, INDEX_CHECK_INTERVAL=0).test_client()  # look at the files on every search
    # A red circle is no blue triangle: nothing scores above the floor (learned on this index).
    assert client.get("/api/search?q=a+blue+triangle").get_json()["hits"] == []

    with _database(config) as factory, session_scope(factory) as session:  # a later `msearch embed`
        manifest = session.get(Manifest, manifest.id)
        triangle, _, _ = _add_shape_canvas(session, trained_clip_encoder, manifest, 1, "blue", "triangle", "service3",
                                           seed=12)
        triangle_id = triangle.id
        _save_index(session, trained_clip_encoder, config)
    hits = client.get("/api/search?q=a+blue+triangle").get_json()["hits"]
    assert [hit["canvas_id"] for hit in hits] == [triangle_id]
    assert len(client.get("/api/search?q=a+blue+triangle&weaker=1").get_json()["hits"]) == 2


# -- "more like this" on a page without an image ---------------------------------------------

def test_more_like_a_page_without_an_image_says_so_and_cards_do_not_offer_it(make_app, trained_clip_dir,
                                                                           trained_clip_encoder, tmp_path, db_url):
    from manuscripts_search.search.documents import sync_documents

    config = site_config(tmp_path / "flyleaf", trained_clip_dir, db_url)
    with _database(config) as factory, session_scope(factory) as session:
        manifest = Manifest(url="http://iiif.test/fly.json", iiif_id="http://iiif.test/fly.json", iiif_version=3,
                            label={"en": ["Flyleaf book"]})
        session.add(manifest)
        session.flush()
        red, _, _ = _add_shape_canvas(session, trained_clip_encoder, manifest, 0, "red", "circle", "service3", seed=3)
        red.label = {"none": ["Flyleaf with a red circle"]}
        blank = Canvas(manifest_id=manifest.id, iiif_id="http://iiif.test/canvas/fly-blank", position=1,
                       label={"none": ["Flyleaf, blank"]}, width=1000, height=1500)
        session.add(blank)
        session.flush()
        red_id, blank_id = red.id, blank.id
        sync_documents(session)
        _save_index(session, trained_clip_encoder, config)
    # A second image space (another model's index): the app cannot tell from the indexes alone
    # which space a canvas's vector is in, and used to answer "run msearch embed and msearch index".
    other = new_index("someone/else@abc", 4)
    other.add([999], np.eye(4, dtype=np.float32)[:1])
    other.save(config.index_dir)
    client = make_app(config).test_client()
    for path in (f"/search?like={blank_id}", f"/api/search?like={blank_id}"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "This page has no image to compare" in response.get_data(as_text=True), path
        assert "msearch embed" not in response.get_data(as_text=True), path
    found = client.get(f"/api/search?like={red_id}").get_json()  # the space that holds its vector
    assert found["total"] == 0 and found["signals"] == ["visual"]  # no other page to be like it
    html = client.get("/search?q=flyleaf").get_data(as_text=True)
    assert html.count('class="result-card"') == 2
    assert f'href="/search?like={red_id}">More like this</a>' in html
    assert f"like={blank_id}" not in html
    hits = {hit["canvas_id"]: hit for hit in client.get("/api/search?q=flyleaf").get_json()["hits"]}
    assert hits[blank_id]["similar_url"] is None and hits[red_id]["similar_url"] == f"/search?like={red_id}"
    canvas_page = client.get(f"/canvas/{blank_id}").get_data(as_text=True)
    assert "More like this page" not in canvas_page


# -- escaping of manifest text ----------------------------------------------------------------

def test_labels_with_html_are_escaped_on_the_results_page(client):
    html = client.get("/search", query_string={"q": "a yellow square", "k": "4"}).get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html
    assert XSS_LABEL not in html and XSS_CANVAS_LABEL not in html
    assert "<script>" not in html  # the page itself needs no script


def test_labels_and_links_from_a_hostile_manifest_are_made_harmless_on_the_canvas_page(client, site):
    response = client.get(f"/canvas/{site.canvas_ids['yellow_square']}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<title>&lt;img src=x onerror=&#34;alert(2)&#34;&gt; — &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert XSS_LABEL not in html and XSS_CANVAS_LABEL not in html
    assert "javascript:" not in html.lower()  # neither the manifest id nor the service became a link
    assert "manifest JSON" not in html
    # The service id is not http(s), so the viewer falls back to the plain image.
    assert _viewer_config(html)["tileSource"] == {"type": "image", "url": "http://iiif.test/raw/yellow-square.jpg"}
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_the_query_is_escaped_where_it_is_echoed(client):
    html = client.get("/search", query_string={"q": '"><script>alert(5)</script>'}).get_data(as_text=True)
    assert "<script>alert(5)" not in html
    assert "&#34;&gt;&lt;script&gt;alert(5)&lt;/script&gt;" in html


def test_viewer_config_cannot_close_its_script_element(make_app, trained_clip_dir, tmp_path, db_url):
    config = site_config(tmp_path / "tricky", trained_clip_dir, db_url)
    with _database(config) as factory, session_scope(factory) as session:
        manifest = Manifest(url="http://iiif.test/tricky.json", iiif_id="http://iiif.test/tricky.json",
                            iiif_version=3, label={"en": ["Tricky"]})
        session.add(manifest)
        session.flush()
        canvas = Canvas(manifest_id=manifest.id, iiif_id="http://iiif.test/canvas/tricky", position=0,
                        label={"none": ["Tricky"]}, width=500, height=500,
                        image_url="http://iiif.test/raw/</script><script>alert(6)</script>.jpg")
        session.add(canvas)
        session.flush()
        canvas_id = canvas.id
    html = make_app(config).test_client().get(f"/canvas/{canvas_id}").get_data(as_text=True)
    assert "<script>alert(6)" not in html
    assert _viewer_config(html)["tileSource"]["url"] == "http://iiif.test/raw/</script><script>alert(6)</script>.jpg"


# -- the npm-installed viewer -----------------------------------------------------------------

def test_vendor_route_serves_openseadragon_from_node_modules(client):
    # web/node_modules comes from `make setup` (npm ci with the committed package-lock.json).
    # File responses are closed explicitly: an open file handle would be a ResourceWarning.
    with client.get("/vendor/openseadragon/openseadragon.min.js") as response:
        assert response.status_code == 200
        assert "OpenSeadragon" in response.get_data(as_text=True)[:2000]
    with client.get("/vendor/openseadragon/images/zoomin_rest.png") as response:
        assert response.status_code == 200 and response.mimetype == "image/png"
    lock = json.loads((Path(__file__).resolve().parents[1] / "web" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/openseadragon"]["version"].startswith("6.")


@pytest.mark.parametrize("path", [
    "../secret.txt", "..%2fsecret.txt", "%2e%2e/secret.txt", "%2e%2e%2fsecret.txt", "images/../../secret.txt",
    "..\\secret.txt", "/secret.txt", "//etc/passwd", "%2fetc%2fpasswd", "....//secret.txt",
])
def test_vendor_route_cannot_leave_its_directory(site, make_app, tmp_path, path):
    served = tmp_path / "osd"
    served.mkdir()
    (served / "openseadragon.min.js").write_text("/* OpenSeadragon */")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    client = make_app(site.config, OPENSEADRAGON_DIR=str(served)).test_client()
    with client.get("/vendor/openseadragon/openseadragon.min.js") as response:
        assert response.status_code == 200
    # Werkzeug redirects "//" to "/" (staying inside the directory); follow it to the end.
    with client.get("/vendor/openseadragon/" + path, follow_redirects=True) as response:
        assert response.status_code == 404
        assert "TOP SECRET" not in response.get_data(as_text=True)
        assert "root:" not in response.get_data(as_text=True)


# -- the viewer in a real browser -------------------------------------------------------------

def _square_on_white(size: int, square: tuple[int, int, int, int]):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), "white")
    x, y, w, h = square
    ImageDraw.Draw(image).rectangle((x, y, x + w - 1, y + h - 1), fill="black")
    return image


@pytest.fixture()
def live_app(tmp_path, db_url):
    """Serve an app over real HTTP on 127.0.0.1; yields (base URL, session factory)."""
    config = site_config(tmp_path / "live", tmp_path / "unused-model", db_url)
    with _database(config) as factory, serve_app(create_app(config=config)) as base_url:
        yield base_url, factory


@pytest.mark.browser
@pytest.mark.parametrize("publication", ["v3", "v2", "raw"])
def test_viewer_highlights_the_region_in_a_browser(iiif_server, live_app, publication):
    """Chromium opens the canvas page; OpenSeadragon loads the image from a real IIIF server and
    the overlay lands on the black square that the region names in *canvas* coordinates (the
    canvas is twice the image's size, so a conversion with the wrong width misses it)."""
    from playwright.sync_api import sync_playwright

    base_url, factory = live_app
    urls = iiif_server.add_image("page", _square_on_white(1024, (256, 256, 256, 256)))
    with session_scope(factory) as session:
        manifest = Manifest(url=f"{iiif_server.base_url}/m.json", iiif_id=f"{iiif_server.base_url}/m.json",
                            iiif_version=3, label={"en": ["Squares"]})
        session.add(manifest)
        session.flush()
        canvas = Canvas(manifest_id=manifest.id, iiif_id=f"{iiif_server.base_url}/canvas/1", position=0,
                        label={"none": ["f. 1"]}, width=2048, height=2048)
        if publication == "raw":
            canvas.image_url = urls["raw"]
        else:
            canvas.service_id = urls[publication]
            canvas.service_api_version, canvas.service_level = (3 if publication == "v3" else 2), 2
        session.add(canvas)
        session.flush()
        canvas_id = canvas.id

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            problems = []
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(f"{base_url}/canvas/{canvas_id}?xywh=512,512,512,512")
            overlay = page.wait_for_selector(".region-overlay", state="visible", timeout=15000)
            page.wait_for_load_state("networkidle")
            box = settled_box(page, overlay)  # the viewer animates its zoom onto the region
            assert box["width"] > 40 and box["height"] > 40
            inside = mean_colour(page, box, inset=0.15, mode="L")
            outside = mean_colour(page, {"x": box["x"] - box["width"] * 0.4, "y": box["y"],
                                         "width": box["width"] * 0.3, "height": box["height"]}, inset=0.1, mode="L")
            assert inside < 60, f"the overlay does not cover the black square (mean grey {inside:.0f})"
            assert outside > 140, f"the overlay is larger than the square (mean grey left of it {outside:.0f})"
            assert page.text_content("#viewer-status") == ""
            assert not problems, problems
        finally:
            browser.close()
    served = [path for path in iiif_server.requests if path.startswith(("/iiif", "/raw"))]
    assert served, "the browser fetched nothing from the IIIF server"
    if publication != "raw":
        assert any(path.endswith("/info.json") for path in served)


@pytest.mark.parametrize("layout", ["hnsw-f16", "ivf-rabitq"])
def test_the_web_app_searches_an_index_of_another_layout(site, make_app, tmp_path, layout):
    """A memory-mapped index serves the same page; the app finds it whatever its files are called."""
    import shutil

    from manuscripts_search.index.sync import rebuild_index

    data_dir = tmp_path / "data"
    shutil.copytree(site.config.index_dir, data_dir / "index")
    config = site.config.replace(data_dir=data_dir)
    with _database(config) as factory, session_scope(factory) as session:
        assert rebuild_index(session, config.index_dir, site.encoder.space_id, layout=layout).layout == layout
    assert not list(config.index_dir.glob("*.hnsw")) or layout == "hnsw"
    client = make_app(config).test_client()
    body = client.get("/api/search", query_string={"q": "a red circle", "k": "3"}).get_json()
    assert body["hits"][0]["canvas_id"] == site.canvas_ids["red_circle"], body
    assert {i["space"]: i["layout"] for i in client.get("/api/stats").get_json()["indexes"]} == {
        site.encoder.space_id: layout}
