"""Errors told truly (issue 15, points 6, 3b and 2c): each error is classified by kind and host
when it is written, and the errors already recorded are by migration 0008.

Real servers on loopback addresses (two hosts), real DNS failure, real databases (SQLite and
PostgreSQL); the web pages through the Flask app on the same database."""
from __future__ import annotations

import io

from PIL import Image
from sqlalchemy import select

from harvest.http import Fetcher, FetchError
from harvest.images import fetch_image
from harvest.politeness import PolitenessPolicy
from manuscripts_search.models import HarvestError
from manuscripts_search.store import error_kinds
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
from tests.helpers.image_servers import free_port
from tests.helpers.scripted_server import Reply, ScriptedServer

ALLOWED = "127.0.0.1,127.0.0.2,localhost"
DEAD_NAME = "no-such-host.invalid"


def jpeg(colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 80), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def image_route(_request) -> Reply:
    return Reply(200, jpeg(), {"Content-Type": "image/jpeg"})


def manifest_doc(base: str, name: str, images: list[str]) -> dict:
    return {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/{name}",
            "type": "Manifest", "label": {"en": [name]},
            "items": [{"id": f"{base}/{name}/canvas/{i}", "type": "Canvas", "width": 64, "height": 80,
                       "items": [{"id": f"{base}/{name}/page/{i}", "type": "AnnotationPage", "items": [{
                           "id": f"{base}/{name}/anno/{i}", "type": "Annotation", "motivation": "painting",
                           "target": f"{base}/{name}/canvas/{i}",
                           "body": {"id": url, "type": "Image", "format": "image/jpeg"}}]}]}
                      for i, url in enumerate(images)]}


def fetcher() -> Fetcher:
    return Fetcher("manuscripts-search-tests/1.0", timeout=0.4, retries=0, max_bytes=200_000, total_timeout=2.0,
                   policy=PolitenessPolicy(max_per_host=4, backoff_base=0.05, backoff_max=0.1))


def failure_of(url: str, expect: str = "image") -> str:
    """The reason the real fetcher (and decoder) gives for ``url``."""
    try:
        if expect == "image":
            fetch_image(fetcher(), url)
        else:
            fetcher().get(url, expect=expect)
    except (FetchError, ValueError, OSError) as error:
        return str(error)
    raise AssertionError(f"{url} did not fail")


# -- the rule ---------------------------------------------------------------------------------------

def test_kinds_and_hosts_of_real_failures():
    with ScriptedServer() as server:
        base = server.base_url
        host = base.split("//")[1]
        server.add("/timeout/missing.jpg", lambda _r: Reply(404, b"no", {"Content-Type": "text/plain"}))
        server.add("/slow.jpg", lambda _r: Reply(200, jpeg(), {"Content-Type": "image/jpeg"}, delay=1.5))
        server.add("/page.jpg", lambda _r: Reply(200, b"<html>login</html>", {"Content-Type": "text/html"}))
        server.add("/junk.jpg", lambda _r: Reply(200, b"\x00junk" * 50, {"Content-Type": "image/jpeg"}))
        server.add("/busy.jpg", lambda _r: Reply(503, b"busy"))
        server.add("/private.jpg", lambda _r: Reply(403, b"no"))
        dead_port = free_port()
        cases = {
            # a URL saying "timeout" does not make a 404 a timeout
            f"{base}/timeout/missing.jpg": ("not_found", host),
            f"{base}/slow.jpg": ("timeout", host),
            f"{base}/page.jpg": ("not_image", host),
            f"{base}/junk.jpg": ("not_image", host),
            f"{base}/busy.jpg": ("server_error", host),
            f"{base}/private.jpg": ("forbidden", host),
            f"http://127.0.0.1:{dead_port}/x.jpg": ("refused", f"127.0.0.1:{dead_port}"),
            f"http://{DEAD_NAME}/x.jpg": ("dns", DEAD_NAME),
        }
        for url, (kind, where) in cases.items():
            reason = "image URL: " + failure_of(url)
            assert error_kinds.classify(reason, "image") == kind, (url, reason)
            # the row's URL is the image's (a decoder's reason names none); a fetch names the request's
            assert error_kinds.host_of(reason, url) == where, reason
            if "://" in reason:
                assert error_kinds.host_of(reason, "http://elsewhere.example/canvas") == where, reason
        not_json = failure_of(f"{base}/page.jpg", expect="json")
        assert error_kinds.classify(f"not usable IIIF: {not_json}", "parse") == "not_iiif"
    # What the per-host health state of the harvester records for a host it gave up on.
    assert error_kinds.classify("host down: request deferred to a later run", "image") == error_kinds.HOST_DOWN
    assert error_kinds.classify("anything", "image", kind="deferred") == error_kinds.HOST_DOWN
    assert error_kinds.describe("not_found", "image", "image service: HTTP 404 (x)") == \
        "404 not found / gone on image service"
    assert error_kinds.host_of("no such file (/data/x.json)", "/data/x.json") == "local files"


# -- migration 0008 on errors already recorded --------------------------------------------------------

def test_migration_classifies_the_errors_already_recorded(db_url):
    """A database at 0007 with errors as the previous release wrote them (no kind, region errors
    without their manifest, one canvas failed in three runs, another fetched since): 0008 gives
    each its kind and host, fills the manifest, and leaves open only what is wrong now."""
    import sqlalchemy as sa

    engine = make_engine(db_url)
    try:
        upgrade_database(engine, "0007")
        with engine.begin() as connection:
            def insert(table, **values):
                columns = ", ".join(values)
                marks = ", ".join(f":{k}" for k in values)
                return connection.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING id"),
                                          values).scalar_one()
            manifest = insert("manifests", url="https://a.example/m", iiif_id="https://a.example/m", label="{}",
                              summary="{}", metadata="[]", providers="[]", homepage="[]", see_also="[]",
                              warnings="[]", canvas_count=2, image_canvas_count=2,
                              fetched_at="2026-01-05 10:00:00+00:00")
            failing = insert("canvases", manifest_id=manifest, iiif_id="c1", position=0, label="{}")
            fixed = insert("canvases", manifest_id=manifest, iiif_id="c2", position=1, label="{}",
                           derivative_sha256="0" * 64)
            when = "2026-01-0{} 09:00:00+00:00"
            rows = []
            for run in range(3):
                rows.append(insert("errors", stage="image", url="https://img.example/c1.jpg", resolved=False,
                                   message="image URL: host name not found (gave up after 4 attempts) "
                                           "(https://img.example/c1.jpg)",
                                   manifest_id=manifest, canvas_id=failing, created_at=when.format(run + 1)))
            rows.append(insert("errors", stage="image", url="https://img.example/c2.jpg", resolved=False,
                               message="image URL: HTTP 404 (not found) (https://tiles.example/c2/full/448,/0/default.jpg)",
                               manifest_id=manifest, canvas_id=fixed, created_at=when.format(1)))
            rows.append(insert("errors", stage="region", url="https://img.example/svc", resolved=False,
                               message="region 0,0,10,10: read timed out (gave up after 4 attempts)",
                               canvas_id=failing, created_at=when.format(2)))
            rows.append(insert("errors", stage="fetch", url="https://a.example/m", resolved=False,
                               message="fetch failed: HTTP 503 (gave up after 4 attempts)",
                               manifest_id=manifest, created_at=when.format(1)))
            rows.append(insert("errors", stage="parse", url="/data/broken.json", resolved=False,
                               message="not usable IIIF: not a IIIF Manifest or Collection", created_at=when.format(1)))
        upgrade_database(engine)
        with session_scope(make_sessionmaker(engine)) as session:
            got = {e.id: e for e in session.scalars(select(HarvestError))}
            first, second, third, tile, region, fetch, parse = (got[i] for i in rows)
            assert [(e.kind, e.host, e.resolved) for e in (first, second, third)] == [
                ("dns", "img.example", True), ("dns", "img.example", True), ("dns", "img.example", False)]
            assert (tile.kind, tile.host, tile.resolved) == ("not_found", "tiles.example", True)  # fetched since
            assert (region.kind, region.host, region.manifest_id, region.resolved) == (
                "timeout", "img.example", manifest, False)
            assert (fetch.kind, fetch.resolved) == ("server_error", True)  # the manifest was fetched fine since
            assert (parse.kind, parse.host, parse.resolved) == ("not_iiif", "local files", False)
    finally:
        engine.dispose()
