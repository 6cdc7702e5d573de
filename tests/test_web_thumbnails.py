"""Thumbnails on the pages (issue 16, point 1): a card never loads a service's full image.

The canvas's own ``thumbnail`` from the manifest first (parsed and stored at harvest); then a
size request to a level 1/2 service; for a level-0 service a size its info.json lists (as the
harvester cached it); else a thumbnail cut from the stored derivative, served by the app. The
pages' weight is measured in the browser test (test_web_browser.py) over published images.
"""
from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from sqlalchemy import select

from manuscripts_search.iiif.presentation import parse_manifest
from manuscripts_search.models import Canvas, ImageServiceInfo
from manuscripts_search.search.thumbnails import thumbnail_url
from manuscripts_search.store.catalogue import save_manifest
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
from manuscripts_search.store.derivatives import DerivativeStore
from tests.helpers.web_site import site_config
from web import create_app

BASE = "https://museum.example"


def _info(service: str, sizes: list[tuple[int, int]], width: int = 4000, height: int = 6000, version: int = 3) -> dict:
    if version == 3:
        return {"@context": "http://iiif.io/api/image/3/context.json", "id": service, "type": "ImageService3",
                "profile": "level0", "width": width, "height": height,
                "sizes": [{"width": w, "height": h} for w, h in sizes]}
    return {"@context": "http://iiif.io/api/image/2/context.json", "@id": service, "width": width, "height": height,
            "profile": ["http://iiif.io/api/image/2/level0.json"],
            "sizes": [{"width": w, "height": h} for w, h in sizes]}


def _canvas(number: int, service: str | None, level: int | None = 0, thumbnail: dict | None = None,
            version: int = 3) -> dict:
    canvas_id = f"{BASE}/canvas/{number}"
    body = {"id": f"{service or BASE + '/plain/' + str(number)}/full/max/0/default.jpg", "type": "Image",
            "format": "image/jpeg", "width": 4000, "height": 6000}
    if service:
        body["service"] = [{"id": service, "type": "ImageService3" if version == 3 else "ImageService2",
                            "profile": f"level{level}"}]
    canvas = {"id": canvas_id, "type": "Canvas", "label": {"none": [f"page {number}"]}, "width": 4000, "height": 6000,
              "items": [{"id": f"{canvas_id}/page", "type": "AnnotationPage", "items": [{
                  "id": f"{canvas_id}/image", "type": "Annotation", "motivation": "painting", "target": canvas_id,
                  "body": body}]}]}
    if thumbnail:
        canvas["thumbnail"] = [thumbnail]
    return canvas


@pytest.fixture
def catalogue(tmp_path, db_url, trained_clip_dir):
    """A manifest harvested through the real parser and store: one canvas of each case."""
    config = site_config(tmp_path / "data", trained_clip_dir, db_url)
    engine = make_engine(config.db_url)
    upgrade_database(engine)
    factory = make_sessionmaker(engine)
    services = {key: f"{BASE}/iiif/{key}" for key in ("own", "listed", "listed2", "only-full", "no-info", "level2")}
    manifest = {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{BASE}/manifest.json",
                "type": "Manifest", "label": {"none": ["Thumbnails"]}, "items": [
                    _canvas(1, services["own"], thumbnail={"id": f"{BASE}/thumbs/1.jpg", "type": "Image"}),
                    _canvas(2, services["listed"]),
                    _canvas(3, services["listed2"], version=2),
                    _canvas(4, services["only-full"]),
                    _canvas(5, services["no-info"]),
                    _canvas(6, services["level2"], level=2),
                    _canvas(7, None)]}
    derivatives = DerivativeStore(config.derivatives_dir)
    buffer = io.BytesIO()
    Image.new("RGB", (640, 960), (200, 30, 30)).save(buffer, "JPEG")
    sha = derivatives.put(buffer.getvalue())
    with session_scope(factory) as session:
        parsed = parse_manifest(manifest, f"{BASE}/manifest.json")
        row = save_manifest(session, parsed, url=f"{BASE}/manifest.json", raw_json=json.dumps(manifest))
        session.add_all([
            ImageServiceInfo(service_id=services["listed"], info_json=_info(
                services["listed"], [(125, 188), (250, 375), (500, 750), (4000, 6000)])),
            ImageServiceInfo(service_id=services["listed2"], info_json=_info(
                services["listed2"], [(100, 150), (200, 300)], version=2)),
            ImageServiceInfo(service_id=services["only-full"], info_json=_info(services["only-full"], [(4000, 6000)])),
        ])
        canvases = {c.position + 1: c for c in session.scalars(select(Canvas).where(Canvas.manifest_id == row.id))}
        canvases[4].derivative_sha256 = sha
        ids = {number: canvas.id for number, canvas in canvases.items()}
        manifest_id = row.id
    engine.dispose()
    app = create_app(config=config, test_config={"TESTING": True})
    yield app, manifest_id, ids
    from web.database import dispose_engine

    dispose_engine(app)


def test_canvas_thumbnails_never_ask_a_service_for_its_full_image(catalogue):
    app, manifest_id, ids = catalogue
    client = app.test_client()
    html = client.get(f"/manifests/{manifest_id}").get_data(as_text=True)
    expected = {
        1: f"{BASE}/thumbs/1.jpg",  # the manifest's own thumbnail, kept at harvest
        2: f"{BASE}/iiif/listed/full/250,375/0/default.jpg",  # smallest listed long edge >= 200 px (level 0, v3)
        3: f"{BASE}/iiif/listed2/full/200,/0/default.jpg",  # v2 static trees name sizes "w,"
        4: f"http://localhost/thumbnails/canvas/{ids[4]}.jpg",  # only the full size listed: the stored derivative
        6: f"{BASE}/iiif/level2/full/!200,200/0/default.jpg",  # level 2: a size request
        7: f"{BASE}/plain/7/full/max/0/default.jpg",  # no service: the one image there is
    }
    for number, url in expected.items():
        assert f'<img src="{url}"' in html, (number, url)
    assert html.count("No image") == 1  # page 5: level 0, no info.json, no derivative: nothing heavy
    assert "/iiif/no-info/full/max" not in html and "/iiif/only-full/full/max" not in html
    # The canvas API says the same (at the cards' 256 px long edge).
    assert client.get(f"/api/canvas/{ids[2]}").get_json()["image"]["thumbnail"] == \
        f"{BASE}/iiif/listed/full/250,375/0/default.jpg"
    assert client.get(f"/api/canvas/{ids[5]}").get_json()["image"]["thumbnail"] is None


def test_stored_derivative_thumbnail_is_small_and_cached(catalogue):
    app, _manifest_id, ids = catalogue
    client = app.test_client()
    response = client.get(f"/thumbnails/canvas/{ids[4]}.jpg")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    with Image.open(io.BytesIO(response.data)) as image:
        assert max(image.size) == 256 and image.size == (171, 256)
    assert "max-age" in response.headers["Cache-Control"]
    again = client.get(f"/thumbnails/canvas/{ids[4]}.jpg", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and not again.data
    assert client.get(f"/thumbnails/canvas/{ids[5]}.jpg").status_code == 404  # nothing stored
    assert client.get("/thumbnails/canvas/999999.jpg").status_code == 404


def test_thumbnail_rules_on_their_own():
    """The rules without a database: a thumbnail equal to the full image is no thumbnail."""
    full = f"{BASE}/iiif/a/full/max/0/default.jpg"
    canvas = Canvas(service_id=f"{BASE}/iiif/a", service_api_version=3, service_level=0, image_url=full,
                    thumbnail=full)
    assert thumbnail_url(canvas) is None
    canvas.service_level = 1
    assert thumbnail_url(canvas) == f"{BASE}/iiif/a/full/256,/0/default.jpg"
    canvas.service_level = None  # unknown level: the most widely supported form
    assert thumbnail_url(canvas) == f"{BASE}/iiif/a/full/!256,256/0/default.jpg"


def test_result_cards_fall_back_to_the_stored_derivative(catalogue):
    """A hit whose canvas offers nothing small (the engine's thumbnail is None) shows the
    derivative's thumbnail on its card and in the API, not the service's full image."""
    from manuscripts_search.search.engine import ResultHit
    from web.database import get_session
    from web.hit_views import hit_views

    app, manifest_id, ids = catalogue
    with app.test_request_context("/search?q=x"):
        canvas = get_session().get(Canvas, ids[4])
        hit = ResultHit(rank=1, score=0.5, canvas_id=canvas.id, canvas=canvas.iiif_id, canvas_label=None,
                        manifest="m", manifest_id=manifest_id, manifest_label=None, xywh=None, regions=[],
                        snippets=[], signals={}, labels=[], service_id=canvas.service_id,
                        service_api_version=3, image_url=canvas.image_url, thumbnail=None)
        view = hit_views(get_session(), [hit], "x")[0]
        assert view.thumbnail == f"http://localhost/thumbnails/canvas/{ids[4]}.jpg"
        assert view.as_dict()["thumbnail"] == view.thumbnail
