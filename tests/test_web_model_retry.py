"""A model that cannot be loaded never stalls the web server: the retries run in the background
with backoff, requests use what is loaded now, and a fixed model directory is picked up without a
restart (issue 15, point 4: one request in 30-60 s used to take ~24 s, retrying through the hub)."""
from __future__ import annotations

import shutil
import time

import pytest

from manuscripts_search.embedding import registry
from web.resources import _resources, encoder_fallback_reason

SLOW_LOAD_S = 1.5  # what a load through an unreachable hub costs, scaled down


@pytest.fixture
def slow_loading(monkeypatch):
    real = registry.resolve_image_encoder
    calls = []

    def slow(*args, **kwargs):
        calls.append(time.monotonic())
        time.sleep(SLOW_LOAD_S)
        return real(*args, **kwargs)

    monkeypatch.setattr(registry, "resolve_image_encoder", slow)
    return calls


def test_retries_run_in_the_background_and_no_request_waits_for_them(site, make_app, tmp_path, slow_loading,
                                                                     trained_clip_dir):
    model_dir = tmp_path / "model"  # missing for now: the handcrafted fallback serves
    app = make_app(site.config.replace(model=str(model_dir)), MODEL_RETRY_INTERVAL=0.3)
    client = app.test_client()
    first = client.get("/api/search", query_string={"q": "red", "k": "3"})
    assert first.status_code == 200 and encoder_fallback_reason(app)  # the one load a first request pays
    durations = []
    deadline = time.monotonic() + 4 * SLOW_LOAD_S
    while time.monotonic() < deadline:
        started = time.monotonic()
        assert client.get("/api/search", query_string={"q": "red", "k": "3"}).status_code == 200
        durations.append(time.monotonic() - started)
    resources = _resources(app)
    assert len(slow_loading) >= 3 and resources.retries >= 2  # retries happened meanwhile...
    assert max(durations) < 1.0, max(durations)  # ...and no request waited for one
    assert resources.retry_delay > 0.3  # backing off
    # The directory appears (the administrator fixed it): the next retry loads it, no restart.
    shutil.copytree(trained_clip_dir, model_dir)
    resources.retry_delay = 0.1
    deadline = time.monotonic() + 6 * SLOW_LOAD_S
    while encoder_fallback_reason(app) is not None and time.monotonic() < deadline:
        client.get("/api/search", query_string={"q": "red", "k": "3"})
        time.sleep(0.05)
    assert encoder_fallback_reason(app) is None
    hits = client.get("/api/search", query_string={"q": "a red circle", "k": "1"}).get_json()["hits"]
    assert hits and hits[0]["canvas_id"] == site.canvas_ids["red_circle"]
