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
from sqlalchemy import func, select

from harvest.http import Fetcher
from harvest.images import fetch_canvas_derivatives
from harvest.manifests import harvest_sources
from harvest.regions import RegionGrid, fetch_region_derivatives, plan_regions
from manuscripts_search.cli import cli
from manuscripts_search.config import load_config
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
from manuscripts_search.store.derivatives import DerivativeStore
from manuscripts_search.models import Canvas, HarvestError, Manifest, Region, Source
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
    result = runner.invoke(cli, ["publish", str(museum_folder), "--base-url", base_url, "--regions", "grid",
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


def _published_manifest(msearch_env, slug: str) -> dict:
    path = load_config(msearch_env).data_dir / "published" / slug / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _session_factory(msearch_env):
    return make_sessionmaker(make_engine(msearch_env["MSEARCH_DB"]))


def test_published_canvases_have_a_thumbnail_of_a_listed_size(museum_folder, msearch_env):
    result = CliRunner().invoke(cli, ["publish", str(museum_folder), "--no-images", "--json", "--no-progress"],
                                env=msearch_env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    manifest = _published_manifest(msearch_env, "Small-Museum")
    from iiif_prezi3 import Manifest as Presentation3Manifest

    Presentation3Manifest(**manifest)  # valid Presentation 3
    root = load_config(msearch_env).data_dir / "published" / "Small-Museum"
    edges = []
    for canvas in manifest["items"]:
        (thumbnail,) = canvas["thumbnail"]
        service_id = thumbnail["service"][0]["id"]
        info = json.loads((root / "images" / service_id.rsplit("/", 1)[1] / "info.json").read_text())
        size = {"width": thumbnail["width"], "height": thumbnail["height"]}
        assert size in info["sizes"], (canvas["label"], size, info["sizes"])
        relative = thumbnail["id"].removeprefix(service_id + "/")
        with Image.open(root / "images" / service_id.rsplit("/", 1)[1] / relative) as image:
            assert image.size == (size["width"], size["height"])
        edges.append(max(size.values()))
    # Listed sizes with a long edge of 256-400 px: 198x288 (1/4 of 789x1149), 300x382, 296x400;
    # 200x300 is smaller than any thumbnail: the whole image.
    assert edges == [288, 382, 400, 300]
    assert manifest["thumbnail"] == manifest["items"][0]["thumbnail"]


@pytest.mark.parametrize("size, tile, expected", [
    ((789, 1149), 512, (198, 288)), ((591, 800), 512, (296, 400)), ((5000, 300), 512, (313, 19)),
    ((200, 300), 512, (200, 300)),  # small: the whole image
    ((4000, 3000), 256, (400, 300)),  # scale factors give 500x375 and 250x188: 400x300 is added
    ((1000, 1000), 1024, (400, 400)),  # one tile, one listed size (the whole image): added
])
def test_thumbnail_size_is_listed_or_added(size, tile, expected):
    from harvest.publish import info_json, scale_factors, thumbnail_size

    assert thumbnail_size(*size, tile) == expected
    info = info_json("http://x/i", *size, tile)
    assert {"width": expected[0], "height": expected[1]} in info["sizes"]
    assert len(info["sizes"]) == len(scale_factors(*size, tile)) + (expected == (400, 300) or expected == (400, 400))


def _unrelated_manifest(tmp_path, canvases: int = 5) -> str:
    """A manifest whose images are on a server that is not there (a closed port)."""
    server = f"http://127.0.0.1:{free_port()}/iiif"
    items = []
    for n in range(1, canvases + 1):
        canvas = f"https://elsewhere.example/canvas/{n}"
        items.append({"id": canvas, "type": "Canvas", "width": 1000, "height": 1500, "items": [{
            "id": f"{canvas}/page", "type": "AnnotationPage", "items": [{
                "id": f"{canvas}/image", "type": "Annotation", "motivation": "painting", "target": canvas,
                "body": {"id": f"{server}/{n}/full/max/0/default.jpg", "type": "Image", "format": "image/jpeg",
                         "width": 1000, "height": 1500,
                         "service": [{"id": f"{server}/{n}", "type": "ImageService3", "profile": "level2"}]}}]}]})
    path = tmp_path / "unrelated.json"
    path.write_text(json.dumps({"@context": "http://iiif.io/api/presentation/3/context.json",
                                "id": "https://elsewhere.example/manifest", "type": "Manifest",
                                "label": {"en": ["Unrelated"]}, "items": items}), encoding="utf-8")
    return str(path)


def test_publish_fetches_and_plans_only_its_own_canvases(museum_folder, msearch_env, tmp_path):
    """An unrelated manifest harvested with --no-images keeps no images, no regions and no
    errors after a folder is published with --regions (it used to get all three)."""
    runner = CliRunner()
    harvested = runner.invoke(cli, ["harvest", _unrelated_manifest(tmp_path), "--no-images", "--no-progress"],
                              env=msearch_env, catch_exceptions=False)
    assert harvested.exit_code == 0, harvested.output
    result = runner.invoke(cli, ["publish", str(museum_folder), "--regions", "grid", "--region-grid", "2", "--json",
                                 "--no-progress"], env=msearch_env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["images"] == {"fetched": 4, "failures": []}
    assert report["regions"]["planned"] == 16 and report["regions"]["fetched"] == 16
    assert not report["regions"]["failures"]
    factory = _session_factory(msearch_env)
    with session_scope(factory) as session:
        unrelated = session.scalar(select(Manifest).where(Manifest.iiif_id == "https://elsewhere.example/manifest"))
        canvases = session.scalars(select(Canvas).where(Canvas.manifest_id == unrelated.id)).all()
        assert len(canvases) == 5
        assert all(c.derivative_sha256 is None and c.derivative_error is None for c in canvases)
        assert not session.scalars(select(Region).where(Region.canvas_id.in_([c.id for c in canvases]))).all()
        assert session.scalar(select(func.count()).select_from(HarvestError)) == 0
    factory.kw["bind"].dispose()


def test_republishing_under_another_base_url_updates_the_same_rows(museum_folder, msearch_env, tmp_path):
    """The slug names a publication: published again at another base URL, its catalogue row,
    canvases and derivatives stay (ids moved), nothing is regenerated, no second manifest or
    tree is left; another folder cannot take the slug unless --replace is given."""
    runner = CliRunner()

    def publish(*args):
        result = runner.invoke(cli, ["publish", *args, "--json", "--no-progress"], env=msearch_env,
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    first = publish(str(museum_folder), "--base-url", "http://old.example:5000")
    assert first["images"]["fetched"] == 4
    factory = _session_factory(msearch_env)
    with session_scope(factory) as session:
        (manifest_id,) = session.scalars(select(Manifest.id)).all()
        before = {c.id: c.derivative_sha256 for c in session.scalars(select(Canvas))}
    second = publish(str(museum_folder), "--base-url", "https://museum.example/search/")
    new_url = "https://museum.example/search/published/Small-Museum/manifest.json"
    assert second["published"]["manifest"] == new_url
    assert second["published"]["replaced_manifest"] == "http://old.example:5000/published/Small-Museum/manifest.json"
    assert second["published"]["regenerated"] == 0
    assert second["harvest"]["changed"] == 1 and not second["harvest"]["failures"]
    assert second["images"]["fetched"] == 0  # the derivatives stayed with their canvases
    with session_scope(factory) as session:
        manifest = session.scalar(select(Manifest))
        assert session.scalar(select(func.count()).select_from(Manifest)) == 1
        assert (manifest.id, manifest.url, manifest.iiif_id) == (manifest_id, new_url, new_url)
        canvases = session.scalars(select(Canvas)).all()
        assert {c.id: c.derivative_sha256 for c in canvases} == before
        assert all(c.iiif_id.startswith("https://museum.example/search/published/Small-Museum/canvas/")
                   and c.service_id.startswith("https://museum.example/search/published/Small-Museum/images/")
                   for c in canvases)
        assert [s.url for s in session.scalars(select(Source))] == [new_url]
    root = load_config(msearch_env).data_dir / "published"
    assert [p.name for p in root.iterdir()] == ["Small-Museum"]
    info = json.loads((root / "Small-Museum" / "images" / "page-1" / "info.json").read_text())
    assert info["id"] == "https://museum.example/search/published/Small-Museum/images/page-1"
    assert "old.example" not in (root / "Small-Museum" / "manifest.json").read_text()

    # Another folder of the same name is refused the slug, and may take it with --replace.
    other = tmp_path / "elsewhere" / "Small Museum"
    other.mkdir(parents=True)
    shutil.copy(museum_folder / "page 1.jpg", other / "only page.jpg")
    refused = runner.invoke(cli, ["publish", str(other), "--base-url", "https://museum.example/search"],
                            env=msearch_env)
    assert refused.exit_code == 1 and "is taken by" in refused.output and "--replace" in refused.output
    replaced = publish(str(other), "--base-url", "https://museum.example/search", "--replace")
    assert replaced["published"]["images"] == 1
    assert sorted(p.name for p in (root / "Small-Museum" / "images").iterdir()) == ["only-page"]
    with session_scope(factory) as session:
        (manifest,) = session.scalars(select(Manifest)).all()
        assert manifest.id == manifest_id and manifest.canvas_count == 1
    factory.kw["bind"].dispose()


def _small_images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for n, name in enumerate(names):
        Image.new("RGB", (300 + 40 * n, 200), (40 * n, 120, 200)).save(folder / name)


def test_a_metadata_table_describes_the_manifest_and_its_canvases(tmp_path, msearch_env):
    """A spreadsheet's CSV (UTF-8 with BOM, semicolons, a row for the whole set, a row for a file
    that is not there, an extra column, a date and a licence of the usual kinds) becomes label,
    metadata, requiredStatement, rights and navDate, and the catalogue's text search finds it."""
    from manuscripts_search.search.documents import sync_documents
    from manuscripts_search.search.fulltext import search_fulltext
    from manuscripts_search.models import SearchDocument

    folder = tmp_path / "herbarium"
    _small_images(folder, ["a.jpg", "B.png", "c.jpg"])
    table = ("\ufeffFile;Title;Description;Institution;Licence;Date;Shelfmark\r\n"
             ";Herbal of Maastricht;Leaves of a herbal;Stadsarchief Maastricht;CC BY 4.0;c. 1450;\r\n"
             "a.jpg;Mandrake leaf;;;;1450-1470;MS 12 f.1\r\n"
             "b.png;;Rosemary, with a gloss;;All rights reserved;Spring 1452;MS 12 f.2\r\n"
             "missing.jpg;Lost leaf;;;;;\r\n")
    (folder / "SOURCES.csv").write_bytes(table.encode("utf-8"))
    result = CliRunner().invoke(cli, ["publish", str(folder), "--no-images", "--json", "--no-progress"],
                                env=msearch_env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["published"]
    assert report["metadata_table"] == "SOURCES.csv"
    warnings = "\n".join(report["warnings"])
    assert "row 5: no image file 'missing.jpg'" in warnings
    assert "row 4: date 'Spring 1452'" in warnings and len(report["warnings"]) == 2

    manifest = _published_manifest(msearch_env, "herbarium")
    from iiif_prezi3 import Manifest as Presentation3Manifest

    Presentation3Manifest(**manifest)
    assert manifest["label"] == {"none": ["Herbal of Maastricht"]}
    assert manifest["summary"] == {"none": ["Leaves of a herbal"]}
    assert manifest["rights"] == "http://creativecommons.org/licenses/by/4.0/"
    assert manifest["navDate"] == "1450-01-01T00:00:00Z"
    assert manifest["requiredStatement"]["value"] == {"none": ["Stadsarchief Maastricht"]}
    pairs = {e["label"]["none"][0]: e["value"]["none"][0] for e in manifest["metadata"]}
    assert pairs == {"Date": "c. 1450", "Institution": "Stadsarchief Maastricht", "Licence": "CC BY 4.0"}
    a, b, c = manifest["items"]
    assert a["label"] == {"none": ["Mandrake leaf"]} and a["navDate"] == "1450-01-01T00:00:00Z"
    assert {e["label"]["none"][0]: e["value"]["none"][0] for e in a["metadata"]} == {
        "File": "a.jpg", "Date": "1450-1470", "Shelfmark": "MS 12 f.1"}
    assert b["label"] == {"none": ["Rosemary, with a gloss"]}  # matched case-insensitively, described
    assert "rights" not in b and "navDate" not in b
    assert b["requiredStatement"]["value"] == {"none": ["Licence: All rights reserved"]}
    assert c["label"] == {"none": ["c.jpg"]} and "metadata" not in c

    factory = _session_factory(msearch_env)
    with session_scope(factory) as session:
        row = session.scalar(select(Manifest))
        assert row.rights == manifest["rights"] and row.nav_date == "1450-01-01T00:00:00Z"
        assert row.thumbnail and row.thumbnail.endswith("/0/default.jpg")
        sync_documents(session)
    with session_scope(factory) as session:
        for query, kind in (("Stadsarchief", "manifest"), ("mandrake", "canvas"), ("rosemary gloss", "canvas")):
            hits = search_fulltext(session, query, 5)
            assert hits, query
            assert session.get(SearchDocument, hits[0].document_id).kind == kind, query
    factory.kw["bind"].dispose()


def test_a_metadata_table_in_windows_1252_without_a_file_column(tmp_path, msearch_env):
    """Excel's CSV on Windows: cp1252, tab-separated here, one row, no file column: it describes
    the set; a repeated heading is kept as metadata; the encoding is a warning, not a loss."""
    folder = tmp_path / "Musée"
    _small_images(folder, ["1.jpg"])
    (folder / "metadata.tsv").write_bytes("Titre\tTitle\tCreator\tLicense\tDate\n"
                                          "Livre d'heures\tBook of Hours\tMaître François\t"
                                          "https://rightsstatements.org/page/NoC-US/1.0/?language=en\t15th c.\n"
                                          .encode("cp1252"))
    result = CliRunner().invoke(cli, ["publish", str(folder), "--no-images", "--json", "--no-progress"],
                                env=msearch_env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["published"]
    warnings = "\n".join(report["warnings"])
    assert "not UTF-8: read as Windows-1252" in warnings and "no 'file' column" in warnings
    manifest = _published_manifest(msearch_env, report["slug"])
    assert manifest["label"] == {"none": ["Book of Hours"]}
    pairs = [(e["label"]["none"][0], e["value"]["none"][0]) for e in manifest["metadata"]]
    assert ("Creator", "Maître François") in pairs and ("Titre", "Livre d'heures") in pairs
    assert manifest["rights"] == "http://rightsstatements.org/vocab/NoC-US/1.0/"
    assert manifest["navDate"] == "1400-01-01T00:00:00Z"


def test_a_metadata_table_that_is_not_a_table_stops_publishing(tmp_path, msearch_env):
    folder = tmp_path / "binary"
    _small_images(folder, ["1.jpg"])
    (folder / "SOURCES.tsv").write_bytes(b"file\ttitle\n\x00\x01\x02")
    result = CliRunner().invoke(cli, ["publish", str(folder), "--no-images"], env=msearch_env)
    assert result.exit_code == 1 and "metadata table: SOURCES.tsv is not a text table" in result.output
    assert not (load_config(msearch_env).data_dir / "published" / "binary" / "manifest.json").exists()


def test_the_real_corpus_sources_table_describes_every_image():
    from harvest.publish_sidecar import read_sidecar, summarise

    names = sorted(p.name for p in CORPUS_IMAGES.iterdir() if p.suffix == ".jpg")
    sidecar = read_sidecar(CORPUS_IMAGES / "SOURCES.tsv", names)
    assert sidecar.warnings == [] and sidecar.collection is None
    assert sorted(sidecar.files) == names
    scream = sidecar.files["painting_munch_the-scream.jpg"]
    assert scream.title is None and scream.summary  # its description becomes the canvas label
    labels = [label for label, _ in scream.metadata]
    assert labels[:2] == ["Institution", "Licence"] and {"Repo", "Path", "Commit", "Bytes", "Sha1"} <= set(labels)
    assert scream.rights is None and "Licence:" in scream.required_statement  # free text, not a URI
    whole = summarise(None, list(sidecar.files.values()))
    institutions = dict(whole.metadata)["Institution"]
    assert "Staatsbibliothek zu Berlin" in institutions and "British Library" in institutions


@pytest.mark.parametrize("text, expected", [
    ("1450", "1450-01-01T00:00:00Z"), ("c. 1450", "1450-01-01T00:00:00Z"), ("ca.1450", "1450-01-01T00:00:00Z"),
    ("circa 1450?", "1450-01-01T00:00:00Z"), ("1450-1470", "1450-01-01T00:00:00Z"),
    ("1450–70", "1450-01-01T00:00:00Z"), ("1450-03", "1450-03-01T00:00:00Z"), ("1450-03-12", "1450-03-12T00:00:00Z"),
    ("15th century", "1400-01-01T00:00:00Z"), ("12-13th c.", "1100-01-01T00:00:00Z"), ("0850", "0850-01-01T00:00:00Z"),
    ("2020-05-01T10:00:00+02:00", "2020-05-01T08:00:00Z"), ("1450 AD", "1450-01-01T00:00:00Z"),
    ("Spring 1452", None), ("s. XV", None), ("1450-13-01", None), ("-300", None), ("undated", None),
])
def test_nav_date_reads_catalogue_dates(text, expected):
    from harvest.publish_sidecar import nav_date

    assert nav_date(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("CC BY 4.0", "http://creativecommons.org/licenses/by/4.0/"),
    ("cc-by-nc-sa-4.0", "http://creativecommons.org/licenses/by-nc-sa/4.0/"),
    ("CC BY SA NC 3.0", "http://creativecommons.org/licenses/by-nc-sa/3.0/"),
    ("CC0", "http://creativecommons.org/publicdomain/zero/1.0/"),
    ("Public Domain Mark 1.0", "http://creativecommons.org/publicdomain/mark/1.0/"),
    ("https://creativecommons.org/licenses/by/4.0/deed.fr", "http://creativecommons.org/licenses/by/4.0/"),
    ("http://rightsstatements.org/vocab/InC/1.0/", "http://rightsstatements.org/vocab/InC/1.0/"),
    ("All rights reserved", None), ("CC BY-ND-SA 4.0", None), ("https://example.org/licence", None),
    ("repo license CC-BY 4.0 (htr-united.yml)", None),
])
def test_rights_are_creative_commons_or_rightsstatements_uris(text, expected):
    from harvest.publish_sidecar import rights_uri

    assert rights_uri(text) == expected


def test_a_publication_of_the_previous_version_keeps_its_canvases(tmp_path, msearch_env):
    """Before canvas ids named their image, canvases were numbered (/canvas/1, /canvas/2) and the
    state file held only the files: re-published (here at another base URL), the same canvas rows
    take the new ids - through ids of their own, since 0.jpg's old /canvas/2 is 1.jpg's new id."""
    folder = tmp_path / "ledger"
    _small_images(folder, ["0.jpg", "1.jpg"])
    runner = CliRunner()
    first = runner.invoke(cli, ["publish", str(folder), "--base-url", "http://old.example", "--json", "--no-progress"],
                          env=msearch_env, catch_exceptions=False)
    assert json.loads(first.output)["images"]["fetched"] == 2
    # As the previous version left them: numbered canvas ids, a state file of files only.
    state_path = load_config(msearch_env).data_dir / "published" / "ledger" / "publish-state.json"
    files = json.loads(state_path.read_text())["files"]
    state_path.write_text(json.dumps({name: {k: v for k, v in entry.items() if k != "layout"}
                                      for name, entry in files.items()}))
    factory = _session_factory(msearch_env)
    for n in (2, 1):  # 1.jpg's /canvas/1 is free once it is /canvas/2
        with session_scope(factory) as session:
            canvas = session.scalars(select(Canvas).order_by(Canvas.position)).all()[n - 1]
            canvas.iiif_id = f"http://old.example/published/ledger/canvas/{n}"
    with session_scope(factory) as session:
        before = {c.id: c.derivative_sha256 for c in session.scalars(select(Canvas))}
    again = runner.invoke(cli, ["publish", str(folder), "--base-url", "http://new.example", "--json", "--no-progress"],
                          env=msearch_env, catch_exceptions=False)
    assert again.exit_code == 0, again.output
    report = json.loads(again.output)
    assert report["published"]["replaced_manifest"] == "http://old.example/published/ledger/manifest.json"
    assert report["images"]["fetched"] == 0
    with session_scope(factory) as session:
        canvases = session.scalars(select(Canvas).order_by(Canvas.position)).all()
        assert {c.id: c.derivative_sha256 for c in canvases} == before
        assert [c.iiif_id for c in canvases] == ["http://new.example/published/ledger/canvas/0",
                                                 "http://new.example/published/ledger/canvas/1"]
    factory.kw["bind"].dispose()
