"""Admin actions: the token (MSEARCH_ADMIN_TOKEN / ADMIN_TOKEN) guards adding sources, harvesting
and deleting, in forms (session + CSRF) and in the JSON API (bearer token); reading stays public;
the token never appears in logs; a harvest started here really runs `msearch harvest` in its own
process against a real IIIF server."""
from __future__ import annotations

import json
import logging
import re
import time

import pytest

from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
from manuscripts_search.models import Manifest, Source
from tests.helpers.web_site import site_config
from web import create_app
from web.database import dispose_engine

TOKEN = "s3cret-admin-token-that-is-long-enough"


@pytest.fixture()
def admin_site(tmp_path, db_url, trained_clip_dir):
    config = site_config(tmp_path / "data", trained_clip_dir, db_url)
    engine = make_engine(config.db_url)
    upgrade_database(engine)
    factory = make_sessionmaker(engine)
    with session_scope(factory) as session:
        source = Source(url="http://iiif.test/s/manifest.json", kind="manifest")
        session.add(source)
        session.flush()
        session.add(Manifest(url="http://iiif.test/s/manifest.json", iiif_id="http://iiif.test/s/manifest.json",
                             source_id=source.id, iiif_version=3, label={"en": ["To delete"]}))
        session.add(Manifest(url="http://iiif.test/other.json", iiif_id="http://iiif.test/other.json",
                             iiif_version=3, label={"en": ["Stays"]}))
    app = create_app(config=config, test_config={"TESTING": True, "ADMIN_TOKEN": TOKEN})
    yield app, factory
    dispose_engine(app)
    engine.dispose()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _login(client) -> str:
    token = _csrf(client.get("/admin").get_data(as_text=True))
    response = client.post("/admin/login", data={"token": TOKEN, "csrf_token": token})
    assert response.status_code == 303
    return _csrf(client.get("/admin").get_data(as_text=True))


def test_admin_needs_the_token_and_reading_stays_public(admin_site):
    app, _ = admin_site
    client = app.test_client()
    assert client.get("/sources").status_code == 200 and client.get("/api/sources").status_code == 200
    login = client.get("/admin").get_data(as_text=True)
    assert 'type="password" name="token"' in login
    csrf = _csrf(login)
    wrong = client.post("/admin/login", data={"token": "guess", "csrf_token": csrf})
    assert wrong.status_code == 403 and "not the admin token" in wrong.get_data(as_text=True)
    assert client.post("/admin/sources", data={"url": "https://x.example/m.json", "csrf_token": csrf}).status_code == 401
    api = client.post("/api/admin/sources", json={"url": "https://x.example/m.json"})
    assert api.status_code == 401 and "Log in" in api.get_json()["error"]["message"]
    bad_bearer = client.post("/api/admin/sources", json={"url": "https://x.example/m.json"},
                             headers={"Authorization": "Bearer nope"})
    assert bad_bearer.status_code == 401
    in_url = client.post(f"/api/admin/sources?token={TOKEN}", json={"url": "https://x.example/m.json"})
    assert in_url.status_code == 400 and "Never put the admin token in a URL" in in_url.get_json()["error"]["message"]


def test_admin_is_disabled_without_a_token(tmp_path, db_url, monkeypatch):
    monkeypatch.delenv("MSEARCH_ADMIN_TOKEN", raising=False)
    config = site_config(tmp_path / "d", tmp_path / "m", db_url)
    app = create_app(config=config, test_config={"TESTING": True})
    try:
        client = app.test_client()
        page = client.get("/admin")
        assert page.status_code == 403 and "set MSEARCH_ADMIN_TOKEN" in page.get_data(as_text=True)
        api = client.delete("/api/admin/manifests/1", headers={"Authorization": "Bearer anything"})
        assert api.status_code == 403
    finally:
        dispose_engine(app)


def test_forms_need_a_csrf_token(admin_site):
    app, factory = admin_site
    client = app.test_client()
    _login(client)
    for data in ({"url": "https://x.example/m.json"}, {"url": "https://x.example/m.json", "csrf_token": "forged"}):
        response = client.post("/admin/sources", data=data)
        assert response.status_code == 400 and "CSRF check failed" in response.get_data(as_text=True)
    assert client.post("/admin/login", data={"token": TOKEN}).status_code == 400
    with session_scope(factory) as session:
        assert session.query(Source).filter_by(url="https://x.example/m.json").count() == 0


def test_logged_in_admin_adds_and_deletes(admin_site):
    app, factory = admin_site
    client = app.test_client()
    csrf = _login(client)
    added = client.post("/admin/sources", data={"url": "https://x.example/m.json", "csrf_token": csrf},
                        follow_redirects=True)
    assert "Source added: https://x.example/m.json" in added.get_data(as_text=True)
    refused = client.post("/admin/sources", data={"url": "/etc/passwd", "csrf_token": csrf})
    assert refused.status_code == 400 and "must be http(s) URLs" in refused.get_data(as_text=True)
    with session_scope(factory) as session:
        source_id = session.query(Source).filter_by(url="http://iiif.test/s/manifest.json").one().id
        other_id = session.query(Manifest).filter_by(url="http://iiif.test/other.json").one().id
    deleted = client.post(f"/admin/sources/{source_id}/delete", data={"csrf_token": csrf}, follow_redirects=True)
    assert "and 1 manifest(s)" in deleted.get_data(as_text=True)
    with session_scope(factory) as session:
        assert [m.url for m in session.query(Manifest)] == ["http://iiif.test/other.json"]
    client.post(f"/admin/manifests/{other_id}/delete", data={"csrf_token": csrf})
    with session_scope(factory) as session:
        assert session.query(Manifest).count() == 0
    client.post("/admin/logout", data={"csrf_token": csrf})
    assert 'name="token"' in client.get("/admin").get_data(as_text=True)


def test_api_admin_with_bearer_token(admin_site):
    app, factory = admin_site
    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    created = client.post("/api/admin/sources", json={"url": "https://y.example/c.json"}, headers=auth)
    assert created.status_code == 201 and created.get_json()["source"]["url"] == "https://y.example/c.json"
    assert client.post("/api/admin/sources", data="x", headers=auth).status_code == 400
    assert client.post("/api/admin/sources", json={"url": 5}, headers=auth).status_code == 400
    assert client.post("/api/admin/sources", json={"url": "https://y.example/c.json", "harvest": True,
                                                   "steps": ["harvest", "rm -rf"]}, headers=auth).status_code == 400
    with session_scope(factory) as session:
        manifest_id = session.query(Manifest).filter_by(url="http://iiif.test/other.json").one().id
    assert client.delete(f"/api/admin/manifests/{manifest_id}", headers=auth).get_json() == {
        "deleted": "manifest", "id": manifest_id}
    assert client.delete(f"/api/admin/manifests/{manifest_id}", headers=auth).status_code == 404
    assert client.delete("/api/admin/sources/999999", headers=auth).status_code == 404
    missing = client.get("/api/admin/jobs/no-such-job", headers=auth)
    assert missing.status_code == 404 and "There is no harvest job 'no-such-job'" in missing.get_json()["error"]["message"]
    _login(client)
    page = client.get("/admin/jobs/no-such-job")
    assert page.status_code == 404 and "There is no harvest job" in page.get_data(as_text=True)


def test_admin_starts_a_real_harvest_and_the_token_is_never_logged(admin_site, iiif_server, caplog):
    app, factory = admin_site
    from tests.helpers.model_factory import render_shape

    urls = iiif_server.add_image("p1", render_shape("red", "circle", size=64, seed=1))
    manifest_url = iiif_server.add_json("/harvest/manifest.json", {
        "@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{iiif_server.base_url}/harvest/manifest.json",
        "type": "Manifest", "label": {"en": ["Harvested from the admin page"]},
        "items": [{"id": f"{iiif_server.base_url}/c1", "type": "Canvas", "width": 64, "height": 64, "items": [{
            "id": f"{iiif_server.base_url}/c1/p", "type": "AnnotationPage", "items": [{
                "id": f"{iiif_server.base_url}/c1/a", "type": "Annotation", "motivation": "painting",
                "target": f"{iiif_server.base_url}/c1",
                "body": {"id": urls["raw"], "type": "Image", "format": "image/jpeg", "width": 64, "height": 64,
                         "service": [{"id": urls["v3"], "type": "ImageService3", "profile": "level2"}]}}]}]}]})
    client = app.test_client()
    caplog.set_level(logging.DEBUG)
    response = client.post("/api/admin/sources", json={"url": manifest_url, "harvest": True},
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 201
    job_id = response.get_json()["job"]["id"]
    deadline = time.monotonic() + 90
    while True:
        job = client.get(f"/api/admin/jobs/{job_id}", headers={"Authorization": f"Bearer {TOKEN}"}).get_json()
        if job["status"] in ("finished", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert job["status"] == "finished", job.get("log_tail")
    assert job["results"] == [{"step": "harvest", "exit_code": 0, "seconds": job["results"][0]["seconds"]}]
    with session_scope(factory) as session:
        harvested = session.query(Manifest).filter_by(url=manifest_url).one()
        assert harvested.label == {"en": ["Harvested from the admin page"]}
    status = client.get("/harvest").get_data(as_text=True)
    assert job_id in status and "finished" in status
    # The token is in no log record, no job record and no job log.
    records = "\n".join(record.getMessage() for record in caplog.records)
    assert TOKEN not in records and TOKEN not in json.dumps(job)
    jobs_dir = app.config["MSEARCH_CONFIG"].data_dir / "jobs"
    assert all(TOKEN not in path.read_text(errors="replace") for path in jobs_dir.iterdir())
