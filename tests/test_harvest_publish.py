"""`msearch publish DIR`: a folder of JPEG/PNG/TIFF files becomes a level-0 IIIF Image API 3.0
service and a Presentation 3 manifest, served by the web app under /published/ and harvested
like any other IIIF source - regions fetched from it over HTTP match local crops."""
from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import select

from harvest.http import Fetcher
from harvest.images import fetch_canvas_derivatives
from harvest.manifests import harvest_sources
from harvest.regions import RegionGrid, fetch_region_derivatives, plan_regions
from manuscripts_search.cli import cli
from manuscripts_search.config import load_config
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
from manuscripts_search.store.derivatives import DerivativeStore
from manuscripts_search.models import Canvas, Manifest, Region
from tests.helpers.corpus import CORPUS_IMAGES
from tests.helpers.crops import TOLERANCE, difference, expected_crop
from tests.helpers.image_servers import free_port


@pytest.fixture
def museum_folder(tmp_path):
    folder = tmp_path / "Small Museum"
    folder.mkdir()
    shutil.copy(CORPUS_IMAGES / "ms_sbb_hdschr-25_047r_book-of-hours.jpg", folder / "page 1.jpg")
    with Image.open(CORPUS_IMAGES / "painting_munch_the-scream.jpg") as image:
        image.convert("RGBA").save(folder / "page 2.png")
    with Image.open(CORPUS_IMAGES / "painting_matisse_woman-with-a-hat.jpg") as image:
        image.save(folder / "page 10.tif", compression="tiff_lzw")
        rotated = image.resize((300, 200))
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90 CW to display": the published image must be upright
        rotated.save(folder / "page 11.jpg", exif=exif)
    (folder / "broken.jpg").write_bytes(b"not really a JPEG")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def app_server(msearch_env):
    """The web app on a real port, with the published blueprint, started on demand."""
    from werkzeug.serving import make_server

    from web import create_app

    port = free_port()
    servers = []

    def start():
        server = make_server("127.0.0.1", port, create_app(config=load_config(msearch_env)), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)

    yield f"http://127.0.0.1:{port}", start
    for server in servers:
        server.shutdown()
        server.server_close()


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


def test_publish_folder_serve_and_harvest(museum_folder, app_server, msearch_env, tmp_path):
    base_url, start = app_server
    env = {**msearch_env, "MSEARCH_IMAGE_SIZE": "160"}
    runner = CliRunner()
    result = runner.invoke(cli, ["publish", str(museum_folder), "--base-url", base_url, "--regions",
                                 "--region-grid", "2", "--json", "--no-progress"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    published = report["published"]
    assert published["images"] == 4 and published["regenerated"] == 4
    assert [s["file"] for s in published["skipped"]] == ["broken.jpg"]
    assert published["skipped"][0]["reason"].startswith("cannot read image")
    manifest_url = f"{base_url}/published/Small-Museum/manifest.json"
    assert published["manifest"] == manifest_url
    # Harvested without the web app running: the files were read from the data dir.
    assert report["harvest"]["manifests"] == 1 and not report["harvest"]["failures"]
    assert report["images"]["fetched"] == 4 and report["regions"]["fetched"] == 16

    start()
    status, headers, body = get(manifest_url)
    assert status == 200 and headers["Content-Type"].startswith("application/ld+json")
    assert headers["Access-Control-Allow-Origin"] == "*"
    manifest = json.loads(body)
    labels = [c["label"]["none"][0] for c in manifest["items"]]
    assert labels == ["page 1.jpg", "page 2.png", "page 10.tif", "page 11.jpg"]  # natural order
    sizes = [(c["width"], c["height"]) for c in manifest["items"]]
    assert sizes == [(789, 1149), (1200, 1528), (591, 800), (200, 300)]  # EXIF-rotated upright
    service = manifest["items"][0]["items"][0]["items"][0]["body"]["service"][0]
    assert service["type"] == "ImageService3" and service["profile"] == "level0"
    status, headers, body = get(service["id"] + "/info.json")
    info = json.loads(body)
    assert headers["Content-Type"].startswith("application/ld+json") and info["id"] == service["id"]
    assert (info["width"], info["height"], info["profile"]) == (789, 1149, "level0")
    assert info["tiles"][0]["scaleFactors"] == [1, 2, 4]
    status, _headers, _body = get(service["id"])  # base URI: redirected to info.json
    assert status == 200
    for bad in ("/published/Small-Museum/publish-state.json", "/published/../msearch.sqlite3",
                "/published/Small-Museum/images/nope/info.json"):
        with pytest.raises(urllib.error.HTTPError) as error:
            get(base_url + bad)
        assert error.value.code == 404

    # Any IIIF client can use it: harvest it over HTTP into another database, with regions.
    engine = make_engine(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    upgrade_database(engine)
    factory = make_sessionmaker(engine)
    fetcher = Fetcher("manuscripts-search-tests", timeout=10, retries=0)
    assert harvest_sources([manifest_url], factory, fetcher).manifests == [manifest_url]
    derivatives = DerivativeStore(tmp_path / "other-derivatives")
    assert not fetch_canvas_derivatives(factory, fetcher, derivatives, long_edge=160).failures
    plan_regions(factory, RegionGrid((2,)))
    assert not fetch_region_derivatives(factory, fetcher, derivatives, long_edge=160).failures
    originals = {"page 1.jpg": museum_folder / "page 1.jpg", "page 2.png": museum_folder / "page 2.png",
                 "page 10.tif": museum_folder / "page 10.tif"}
    over_http = {}
    with session_scope(factory) as session:
        for region, canvas in session.execute(select(Region, Canvas).join(Canvas)):
            name = canvas.label["none"][0]
            over_http[(name, region.x, region.y, region.w, region.h)] = region.derivative_sha256
            if name not in originals:
                continue
            with Image.open(originals[name]) as image:
                original = image.convert("RGB")
            fetched = derivatives.open_image(region.derivative_sha256)
            right = expected_crop(original, (region.x, region.y, region.w, region.h),
                                  (canvas.width, canvas.height), None)
            assert difference(fetched, right) < TOLERANCE, (name, region.xywh)
    engine.dispose()

    # What publish stored (read from disk) is byte for byte what came over HTTP.
    main = make_engine(msearch_env["MSEARCH_DB"])
    with session_scope(make_sessionmaker(main)) as session:
        from_disk = {(c.label["none"][0], r.x, r.y, r.w, r.h): r.derivative_sha256
                     for r, c in session.execute(select(Region, Canvas).join(Canvas))}
        assert session.scalar(select(Manifest.url)) == manifest_url
    main.dispose()
    assert from_disk == over_http and len(from_disk) == 16

    # Publishing again regenerates nothing and the re-harvest finds the manifest unchanged.
    again = runner.invoke(cli, ["publish", str(museum_folder), "--base-url", base_url, "--json",
                                "--no-progress"], env=env, catch_exceptions=False)
    report = json.loads(again.output)
    assert report["published"]["regenerated"] == 0 and report["harvest"]["unchanged"] == 1


def test_publish_refuses_an_empty_folder(tmp_path, msearch_env):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    result = CliRunner().invoke(cli, ["publish", str(empty)], env=msearch_env)
    assert result.exit_code == 1
    assert "no readable JPEG, PNG or TIFF images in" in result.output


def test_harvest_takes_a_folder_of_images_and_stops_when_nothing_is_harvested(museum_folder, msearch_env, tmp_path):
    """A small museum's first try: `msearch harvest FOLDER` (so `make demo SOURCE=FOLDER`) publishes it
    and harvests the manifest; a source that yields nothing stops with the reason and exit status 1."""
    result = CliRunner().invoke(cli, ["harvest", str(museum_folder), "--no-progress"], env=msearch_env,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "published folder" in result.output and "(4 image(s))" in result.output
    assert "harvested 1 manifest(s)" in result.output and "images fetched 4, failed 0" in result.output
    factory = make_sessionmaker(make_engine(msearch_env["MSEARCH_DB"]))
    with session_scope(factory) as session:
        manifest = session.scalar(select(Manifest))
        assert manifest.url.startswith("http://127.0.0.1:5000/published/") and manifest.label == {"none": ["Small Museum"]}
        assert len(session.scalars(select(Canvas).where(Canvas.derivative_sha256.is_not(None))).all()) == 4
    factory.kw["bind"].dispose()
    missing = CliRunner().invoke(cli, ["harvest", str(tmp_path / "no-such-manifest.json"), "--no-progress"],
                                 env=msearch_env)
    assert missing.exit_code == 1
    assert "no-such-manifest.json" in missing.output and "nothing was harvested" in missing.output
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = CliRunner().invoke(cli, ["harvest", str(empty)], env=msearch_env)
    assert refused.exit_code == 1 and "no readable JPEG, PNG or TIFF images in" in refused.output
