"""The web app on a sharded index (local backend): the same hits as on one index, a re-shard
picked up without a restart, and a shard that cannot be read answered around — the JSON says
`partial`, the page says some results may be missing, Content Search counts only what it returns."""
from __future__ import annotations

import pytest

from manuscripts_search.index.shard_sync import sync_space
from manuscripts_search.index.shards import ShardPart, plan_path
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope
from tests.helpers.web_site import build_site, site_config

pytestmark = pytest.mark.db


@pytest.fixture
def site(tmp_path, db_url, trained_clip_dir, trained_clip_encoder):
    return build_site(site_config(tmp_path / "data", trained_clip_dir, db_url), trained_clip_encoder)


def _reshard(site, space, count):
    engine = make_engine(site.config.db_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            return sync_space(session, site.config.index_dir, space, shards=count)
    finally:
        engine.dispose()


def _hits(client, query):
    body = client.get("/api/search", query_string={"q": query, "signal": "visual", "k": 10}).get_json()
    return body, [(hit["canvas_id"], hit["xywh"], round(hit["score"], 5)) for hit in body["hits"]]


def test_search_on_shards_equals_one_index_and_a_lost_shard_is_reported(site, make_app, trained_clip_encoder):
    space = trained_clip_encoder.space_id
    client = make_app(site.config, INDEX_CHECK_INTERVAL=0.0).test_client()
    before, expected = _hits(client, "a red circle")
    assert expected and before["partial"] is False and before["unavailable_shards"] == []

    assert _reshard(site, space, 2).shards == 2  # while the app runs: no restart
    after, hits = _hits(client, "a red circle")
    assert hits == expected and after["partial"] is False
    stats = client.get("/api/stats").get_json()
    assert [(i["space"], i.get("shards"), i["vectors"]) for i in stats["indexes"] if i["space"] == space] == [
        (space, 2, before_vectors(site))]

    # One shard's metadata is damaged (a disk error, a half-copied file): the other answers.
    lost = ShardPart(1, 2)
    damaged = next(path for path in site.config.index_dir.glob("*.json")
                   if not path.name.endswith(".shards.json") and lost.index_name(space) in path.read_text())
    damaged.write_text("{ not json")
    fresh = make_app(site.config).test_client()  # a worker that starts now has never read that shard
    partial, hits = _hits(fresh, "a red circle")
    assert partial["partial"] is True and partial["unavailable_shards"] == [2]
    assert partial["total_exact"] is False
    assert hits and set(hits) < set(expected)  # what the other shard holds, in the same order
    assert hits == [hit for hit in expected if hit in hits]
    page = fresh.get("/search", query_string={"q": "a red circle"})
    assert page.status_code == 200
    assert (b"Some results may be missing" if hits else b"Part of the index did not answer") in page.data
    book = site.manifest_ids["book"]
    search1 = fresh.get(f"/iiif/search/1/manifest/{book}", query_string={"q": "a red circle"}).get_json()
    assert search1["within"]["total"] == len(search1["resources"])
    assert plan_path(site.config.index_dir, space).exists()


def before_vectors(site) -> int:
    return len(site.canvas_ids) + len(site.region_ids)
