"""Errors told truly (issue 15, points 6, 3b and 2c): every status surface counts the open errors
(not a display cap, not every attempt of every run), groups them by kind and host with a count
and an example, and shows a manifest's image errors on its row and its page; the harvest summary
gives the reasons grouped, and the command listing them all; a collection member held from
another URL is linked, not fetched again into an error row.

Real servers on loopback addresses (two hosts), real DNS failure, real databases (SQLite and
PostgreSQL); the web pages through the Flask app on the same database."""
from __future__ import annotations

import io
import json
import re

import pytest
from PIL import Image
from sqlalchemy import func, select

from harvest.http import Fetcher, FetchError
from harvest.images import fetch_image
from harvest.manifests import harvest_sources
from harvest.politeness import PolitenessPolicy
from manuscripts_search.cli import cli
from manuscripts_search.models import CollectionMembership, HarvestError, Manifest
from manuscripts_search.store import catalogue as store
from manuscripts_search.store import error_kinds
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
from tests.helpers.cli import run_cli
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
        "404 not found / gone (image service)"
    assert error_kinds.host_of("no such file (/data/x.json)", "/data/x.json") == "local files"


# -- a harvest with image errors, through every surface ---------------------------------------------

@pytest.fixture
def servers():
    with ScriptedServer() as one, ScriptedServer(host="127.0.0.2") as two:
        yield one, two


def harvest_env(msearch_env):
    return {**msearch_env, "MSEARCH_ALLOW_HOSTS": ALLOWED}


def build_catalogue(servers) -> dict:
    """Two manifests on server one: "good" (3 images that load) and "damaged" (8 canvases: 4
    images 404 on server two, 2 on a port nobody listens on, 1 on a host name that does not
    exist, 1 HTML page instead of an image)."""
    one, two = servers
    one.fallback = image_route
    dead = f"http://127.0.0.1:{free_port()}"
    good = one.add_json("/good", manifest_doc(one.base_url, "good", [f"{one.base_url}/img/g{i}.jpg" for i in range(3)]))
    two.add("/html.jpg", lambda _r: Reply(200, b"<html>sign in</html>", {"Content-Type": "text/html"}))
    damaged_images = ([f"{two.base_url}/iiif/gone-{i}.jpg" for i in range(4)] + [f"{dead}/a.jpg", f"{dead}/b.jpg"]
                      + [f"http://{DEAD_NAME}/c.jpg", f"{two.base_url}/html.jpg"])
    damaged = one.add_json("/damaged", manifest_doc(one.base_url, "damaged", damaged_images))
    return {"good": good, "damaged": damaged, "two": two.base_url.split("//")[1], "dead": dead.split("//")[1]}


def group(groups: list[dict], kind: str, host: str) -> dict:
    found = [g for g in groups if g["kind"] == kind and g["host"] == host]
    assert len(found) == 1, (kind, host, groups)
    return found[0]


def test_a_harvest_with_image_errors_is_told_truly_everywhere(servers, msearch_env, runner, make_app):
    env = harvest_env(msearch_env)
    urls = build_catalogue(servers)
    result = runner.invoke(cli,
                           ["harvest", "--retries", "0", "--timeout", "2", urls["good"], urls["damaged"]],
                           env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = result.stdout
    # 3b: the reasons, grouped, with the commands that list them all.
    assert "images fetched 3, failed 8" in summary
    assert "8 failure(s) in this run, by kind:" in summary
    assert re.search(rf"! 4 × 404 not found / gone \(image URL\) on {re.escape(urls['two'])}, e\.g\. ", summary), summary
    assert re.search(rf"! 2 × connection refused \(image URL\) on {re.escape(urls['dead'])}, ", summary), summary
    assert f"! 1 × host name not found (image URL) on {DEAD_NAME}, " in summary
    assert f"! 1 × not an image (image URL) on {urls['two']}, " in summary
    assert "msearch errors" in summary and "msearch manifests --errors-only" in summary

    stats = json.loads(run_cli(runner, env, "stats", "--json"))
    assert stats["manifests"] == 2 and stats["errors"] == 8
    assert stats["manifests_with_errors"] == 1 and stats["manifests_with_image_errors"] == 1
    assert stats["manifests_unusable"] == 0
    assert group(stats["error_groups"], "not_found", urls["two"])["count"] == 4
    assert group(stats["error_groups"], "refused", urls["dead"])["count"] == 2
    assert group(stats["error_groups"], "dns", DEAD_NAME)["count"] == 1
    example = group(stats["error_groups"], "not_image", urls["two"])["example"]
    assert "expected an image" in example["message"] and example["manifest_id"]
    text = run_cli(runner, env, "stats")
    assert "4 404 not found / gone (image URL) on " + urls["two"] in text

    # Harvesting again tries the 8 images again: still 8 problems, not 16.
    run_cli(runner, env, "harvest", "--retries", "0", "--timeout", "2", urls["good"], urls["damaged"])
    stats = json.loads(run_cli(runner, env, "stats", "--json"))
    assert stats["errors"] == 8 and stats["errors_resolved"] == 8

    listed = [json.loads(line) for line in run_cli(runner, env, "manifests", "--errors-only", "--json").splitlines()]
    assert [row["url"] for row in listed] == [urls["damaged"]]
    assert listed[0]["image_errors"] == 8 and listed[0]["error"] is None
    assert listed[0]["error_kinds"]["404 not found / gone (images)"] == 4
    plain = run_cli(runner, env, "manifests", "--errors-only")
    assert "8 open error(s): 4 404 not found / gone (images), 2 connection refused (images)" in plain
    errors = [json.loads(line) for line in run_cli(runner, env, "errors", "--kind", "not_found", "--json").splitlines()]
    assert len(errors) == 4 and {e["host"] for e in errors} == {urls["two"]}
    assert len(run_cli(runner, env, "errors").splitlines()) == 8
    assert len(run_cli(runner, env, "errors", "--resolved").splitlines()) == 16
    bad = runner.invoke(cli, ["errors", "--kind", "nope"], env=env)
    assert bad.exit_code == 2 and "unknown kind 'nope'" in bad.output

    # The web pages and the API say the same.
    from manuscripts_search.config import load_config

    client = make_app(config=load_config(env)).test_client()
    with session_scope(make_sessionmaker(make_engine(env["MSEARCH_DB"]))) as session:
        ids = {m.url: m.id for m in session.scalars(select(Manifest))}
    page = client.get("/manifests").get_data(as_text=True)
    rows = {url: page.split(f'href="/manifests/{ids[url]}"')[1].split("</tr>")[0] for url in ids}
    assert 'status--ok">ok' in rows[urls["good"]]
    assert "8 image errors" in rows[urls["damaged"]] and "4 404 not found / gone (images)" in rows[urls["damaged"]]
    assert 'status--ok' not in rows[urls["damaged"]]
    only = client.get("/manifests?errors=1").get_data(as_text=True)
    assert f'href="/manifests/{ids[urls["damaged"]]}"' in only and f'href="/manifests/{ids[urls["good"]]}"' not in only
    detail = client.get(f"/manifests/{ids[urls['damaged']]}").get_data(as_text=True)
    assert "8 of 8 images could not be fetched." in detail and DEAD_NAME in detail
    assert "host name not found (image URL)" in detail
    assert "could not be fetched" not in client.get(f"/manifests/{ids[urls['good']]}").get_data(as_text=True)
    harvest = client.get("/harvest").get_data(as_text=True)
    assert 'Errors <span class="count">8</span>' in harvest and "8 open errors on 1 manifest" in harvest
    assert "connection refused (image URL)" in harvest
    api = client.get("/api/stats").get_json()
    assert api["errors"] == 8 and api["manifests_with_errors"] == 1
    assert group(api["error_groups"], "not_found", urls["two"])["count"] == 4
    assert client.get(f"/api/manifests/{ids[urls['damaged']]}").get_json()["image_errors"] == 8
    by_source = {s["url"]: s["manifests_with_errors"] for s in client.get("/api/sources").get_json()["sources"]}
    assert by_source == {urls["good"]: 0, urls["damaged"]: 1}
    admin = make_app(config=load_config(env), ADMIN_TOKEN="error-test-token").test_client()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', admin.get("/admin").get_data(as_text=True)).group(1)
    admin.post("/admin/login", data={"token": "error-test-token", "csrf_token": csrf})
    dashboard = admin.get("/admin").get_data(as_text=True)
    assert dashboard.split(urls["damaged"])[1].split("</tr>")[0].count("1 with errors") == 1
    assert "with errors" not in dashboard.split(urls["good"])[1].split("</tr>")[0]


def test_counts_are_true_beyond_any_display_cap(db_url, make_app, tmp_path):
    """5,000 open errors on three hosts: every surface says 5,000, grouped in the database; the
    page lists the newest few, not the cap as the count."""
    engine = make_engine(db_url)
    upgrade_database(engine)
    factory = make_sessionmaker(engine)
    with session_scope(factory) as session:
        manifest = Manifest(url="https://example.org/m", iiif_id="https://example.org/m", canvas_count=0)
        session.add(manifest)
        session.flush()
        for i in range(5000):
            host = ("a.example.org", "b.example.org", "c.example.org")[i % 3]
            store.record_error(session, "image", f"https://{host}/canvas/{i}",
                               f"image URL: HTTP 404 (not found) (https://{host}/iiif/{i}/full/448,/0/default.jpg)"
                               if i % 2 else f"image URL: read timed out (gave up after 4 attempts) (https://{host}/{i})",
                               manifest_id=manifest.id)
        manifest_id = manifest.id
    from manuscripts_search.store.error_summary import error_groups, manifest_counts

    with session_scope(factory) as session:
        grouped = error_groups(session, limit=4)
        assert grouped["total"] == 5000 and grouped["group_count"] == 6 and len(grouped["groups"]) == 4
        assert sum(g["count"] for g in error_groups(session)["groups"]) == 5000
        assert manifest_counts(session)["manifests_with_errors"] == 1
    from manuscripts_search.config import load_config

    env = {"MSEARCH_DATA_DIR": str(tmp_path / "data"), "MSEARCH_DB": db_url}
    client = make_app(config=load_config(env)).test_client()
    harvest = client.get("/harvest").get_data(as_text=True)
    assert 'Errors <span class="count">5000</span>' in harvest and "The 50 newest of 5000" in harvest
    assert harvest.count("<tr><td>834</td>") + harvest.count("<tr><td>833</td>") == 6
    assert client.get("/api/harvest").get_json()["error_count"] == 5000
    page = client.get(f"/manifests/{manifest_id}").get_data(as_text=True)
    assert 'Errors <span class="count">5000</span>' in page
    engine.dispose()


def test_region_errors_are_counted_once_per_region_over_runs(servers, msearch_env, runner, make_app):
    env = harvest_env(msearch_env)
    one, two = servers
    url = one.add_json("/regions", manifest_doc(one.base_url, "regions",
                                                [f"{two.base_url}/gone/{i}.jpg" for i in range(2)]))
    counts = []
    for _run in range(2):
        run_cli(runner, env, "harvest", "--retries", "0", "--regions", "grid", "--region-grid", "2", url)
        stats = json.loads(run_cli(runner, env, "stats", "--json"))
        counts.append((stats["errors"], stats["regions"]))
    # 2 canvas images and their 2x2 regions each: 2 + 8 open errors, the first run's resolved.
    assert counts == [(10, 8), (10, 8)], counts
    assert stats["errors_resolved"] == 10
    host = two.base_url.split("//")[1]
    kinds = {(g["stage"], g["kind"], g["host"]): g["count"] for g in stats["error_groups"]}
    assert kinds == {("image", "not_found", host): 2, ("region", "not_found", host): 8}, kinds
    row = json.loads(run_cli(runner, env, "manifests", "--errors-only", "--json"))
    assert (row["open_errors"], row["image_errors"]) == (10, 2)
    from manuscripts_search.config import load_config

    page = make_app(config=load_config(env)).test_client().get("/manifests").get_data(as_text=True)
    assert "2 image errors, 8 other errors" in page


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


# -- 2c: a collection member held from another URL ---------------------------------------------------

def collection_doc(base: str, members: list[str]) -> dict:
    return {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/collection",
            "type": "Collection", "label": {"en": ["all"]},
            "items": [{"id": m, "type": "Manifest", "label": {"en": ["m"]}} for m in members]}


@pytest.fixture
def server():
    with ScriptedServer() as scripted:
        scripted.fallback = image_route
        yield scripted


def held_copy(server) -> tuple[str, str, str]:
    """A manifest served at /copies/m1.json that declares the id /m1 (which fails: 500), and a
    collection listing it by that id."""
    base = server.base_url
    doc = manifest_doc(base, "m1", [f"{base}/img/1.jpg"])
    copy_url = server.add_json("/copies/m1.json", doc)
    server.add("/m1", lambda _r: Reply(500, b"the id URL does not answer"))
    collection = server.add_json("/collection", collection_doc(base, [doc["id"]]))
    return copy_url, doc["id"], collection


def assert_one_usable_row_linked(session_factory, copy_url: str) -> None:
    with session_scope(session_factory) as session:
        rows = list(session.scalars(select(Manifest)))
        assert [(m.url, m.error) for m in rows] == [(copy_url, None)]
        assert session.scalar(select(func.count()).select_from(CollectionMembership)
                              .where(CollectionMembership.manifest_id == rows[0].id)) == 1
        open_errors = session.scalar(select(func.count()).select_from(HarvestError)
                                     .where(HarvestError.resolved.is_(False)))
        assert open_errors == 0


def test_a_collection_member_held_from_another_url_is_linked_not_fetched(server, session_factory):
    copy_url, member_id, collection = held_copy(server)
    harvest_sources([copy_url], session_factory, fetcher())
    report = harvest_sources([collection], session_factory, fetcher())
    assert server.count("/m1") == 0 and report.failures == []
    assert_one_usable_row_linked(session_factory, copy_url)
    # And again (the collection unchanged: its remembered members): still nothing fetched.
    harvest_sources([collection], session_factory, fetcher())
    assert server.count("/m1") == 0
    assert_one_usable_row_linked(session_factory, copy_url)


def test_a_failed_member_row_goes_when_its_copy_is_harvested(server, session_factory):
    copy_url, member_id, collection = held_copy(server)
    report = harvest_sources([collection], session_factory, fetcher())
    assert [url for url, _ in report.failures] == [member_id]  # nothing held yet: a true failure
    harvest_sources([copy_url], session_factory, fetcher())
    with session_scope(session_factory) as session:  # the failed row is gone, its error resolved
        assert [m.url for m in session.scalars(select(Manifest))] == [copy_url]
        assert session.scalar(select(func.count()).select_from(HarvestError)
                              .where(HarvestError.resolved.is_(False))) == 0
    fetched = server.count("/m1")
    harvest_sources([collection], session_factory, fetcher())  # the collection links the copy
    assert server.count("/m1") == fetched
    assert_one_usable_row_linked(session_factory, copy_url)


def test_a_member_and_its_copy_in_one_crawl_give_one_row(server, session_factory):
    copy_url, member_id, collection = held_copy(server)
    harvest_sources([copy_url, collection], session_factory, fetcher())
    assert_one_usable_row_linked(session_factory, copy_url)


def test_the_same_document_served_at_its_id_is_not_stored_twice(server, session_factory):
    """The member's id URL answers with the same manifest: one row still, linked."""
    base = server.base_url
    doc = manifest_doc(base, "m2", [f"{base}/img/1.jpg"])
    copy_url = server.add_json("/copies/m2.json", doc)
    server.add_json("/m2", doc)
    collection = server.add_json("/collection", collection_doc(base, [doc["id"]]))
    harvest_sources([copy_url], session_factory, fetcher())
    harvest_sources([collection], session_factory, fetcher())
    assert server.count("/m2") == 0
    assert_one_usable_row_linked(session_factory, copy_url)


# -- embedding errors: one open error per item, none once it is embedded ------------------------------

def test_an_embedding_error_is_replaced_by_the_next_attempt_and_resolved_by_success(db_url, tmp_path):
    from manuscripts_search.embedding.registry import resolve_image_encoder
    from manuscripts_search.embedding.worker import WorkerOptions, embed_pending
    from manuscripts_search.models import Canvas
    from manuscripts_search.store.claims import clear_failures
    from manuscripts_search.store.error_summary import open_error_count
    from tests.helpers.worker_catalogue import build_catalogue, migrated_factory, shape_images

    factory = migrated_factory(db_url)
    handcrafted = resolve_image_encoder("handcrafted").encoder
    options = WorkerOptions(batch_size=4, threads=2, prefetch_batches=2)
    catalogue = build_catalogue(factory, tmp_path, shape_images(3))
    broken = catalogue.canvas_ids[1]
    with session_scope(factory) as session:
        canvas = session.get(Canvas, broken)
        sha, manifest_id = canvas.derivative_sha256, canvas.manifest_id
    path = catalogue.store.path_for(sha)
    good = path.read_bytes()
    path.write_bytes(b"\xff\xd8 not a JPEG any more")
    open_embed = lambda: open_error_count_of(factory, "embed")  # noqa: E731
    for attempt in range(2):
        assert len(embed_pending(factory, handcrafted, catalogue.store, options).failed) == 1
        assert open_embed() == 1, attempt  # the second attempt's error replaces the first's
        clear_failures(factory, handcrafted.space_id)
    with session_scope(factory) as session:
        assert open_error_count(session, manifest_id) == 1  # on its manifest too
    path.write_bytes(good)
    assert embed_pending(factory, handcrafted, catalogue.store, options).failed == []
    assert open_embed() == 0


def open_error_count_of(factory, stage: str) -> int:
    with session_scope(factory) as session:
        return session.scalar(select(func.count()).select_from(HarvestError)
                              .where(HarvestError.stage == stage, HarvestError.resolved.is_(False)))


# -- images deferred because their host was down: the "host down / deferred" kind --------------------

def test_images_deferred_on_a_down_host_are_grouped_as_host_down(runner, msearch_env, make_app):
    from manuscripts_search.config import load_config
    from tests.helpers.dead_hosts import RefusingPort, manifest_on_image_host

    with ScriptedServer() as site, RefusingPort() as down:
        url = site.add_json("/manifest.json", manifest_on_image_host(site.base_url, down.base_url, 12))
        run_cli(runner, msearch_env, "harvest", url, "--timeout", "0.5", "--per-host", "4")
    host = down.base_url.split("//")[1]
    stats = json.loads(run_cli(runner, msearch_env, "stats", "--json"))
    assert (stats["errors"], stats["deferred_images"], stats["manifests_with_errors"]) == (0, 12, 1)
    deferred = group(stats["error_groups"], error_kinds.HOST_DOWN, host)
    assert deferred["count"] == 12 and deferred["description"] == "host down / deferred (images)"
    assert "host down: image deferred" in deferred["example"]["message"]
    assert "12 host down / deferred (images) on " + host in run_cli(runner, msearch_env, "stats")
    listed = json.loads(run_cli(runner, msearch_env, "manifests", "--errors-only", "--json"))
    assert listed["deferred"] == {down.base_url: 12} and listed["open_errors"] == 0
    client = make_app(config=load_config(msearch_env)).test_client()
    assert "12 images deferred: host down" in client.get("/manifests").get_data(as_text=True)
    harvest = client.get("/harvest").get_data(as_text=True)
    assert "12 images deferred because their host was down" in harvest and "host down / deferred (images)" in harvest
    assert client.get("/api/stats").get_json()["deferred_images"] == 12
