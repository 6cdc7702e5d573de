"""IIIF Change Discovery 1.0: `msearch harvest --changes URL` reads the activity stream from the
newest page backwards, only as far as the previous run got, and applies Create/Update/Delete
(and Refresh) to the catalogue."""
from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import select

from harvest.changes import process_change_stream
from harvest.http import Fetcher
from harvest.politeness import PolitenessPolicy
from manuscripts_search.cli import cli
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope
from manuscripts_search.models import ChangeStream, Manifest
from tests.helpers.scripted_server import ScriptedServer

CONTEXT = "http://iiif.io/api/discovery/1/context.json"


def manifest(base: str, name: str, label: str = "", canvases: int = 1) -> dict:
    return {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/{name}.json",
            "type": "Manifest", "label": {"en": [label or name]},
            "items": [{"id": f"{base}/{name}/c{i}", "type": "Canvas", "width": 10, "height": 10}
                      for i in range(canvases)]}


def activity(kind: str, base: str, name: str, time: str, object_type: str = "Manifest") -> dict:
    return {"type": kind, "object": {"id": f"{base}/{name}.json", "type": object_type}, "endTime": time}


def page(base: str, index: int, items: list, last_index: int) -> dict:
    doc = {"@context": CONTEXT, "id": f"{base}/page{index}.json", "type": "OrderedCollectionPage",
           "partOf": {"id": f"{base}/stream.json", "type": "OrderedCollection"}, "orderedItems": items}
    if index > 0:
        doc["prev"] = {"id": f"{base}/page{index - 1}.json", "type": "OrderedCollectionPage"}
    if index < last_index:
        doc["next"] = {"id": f"{base}/page{index + 1}.json", "type": "OrderedCollectionPage"}
    return doc


def publish_stream(server: ScriptedServer, pages: list[list]) -> str:
    base = server.base_url
    for index, items in enumerate(pages):
        server.add_json(f"/page{index}.json", page(base, index, items, len(pages) - 1))
    return server.add_json("/stream.json", {
        "@context": CONTEXT, "id": f"{base}/stream.json", "type": "OrderedCollection",
        "totalItems": sum(len(p) for p in pages),
        "first": {"id": f"{base}/page0.json", "type": "OrderedCollectionPage"},
        "last": {"id": f"{base}/page{len(pages) - 1}.json", "type": "OrderedCollectionPage"}})


def run(runner, env, *args) -> dict:
    result = runner.invoke(cli, ["harvest", *args, "--no-images", "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def catalogue(env) -> dict:
    engine = make_engine(env["MSEARCH_DB"])
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            return {m.url.rsplit("/", 1)[-1]: (m.error, m.label) for m in session.scalars(select(Manifest))}
    finally:
        engine.dispose()


def test_stream_is_read_backwards_to_the_last_processed_activity(msearch_env):
    runner = CliRunner()
    with ScriptedServer() as server:
        base = server.base_url
        for name in ("m1", "m2", "m3", "m4"):
            server.add_json(f"/{name}.json", manifest(base, name))
        server.add_json("/col.json", {"@context": "http://iiif.io/api/presentation/3/context.json",
                                      "id": f"{base}/col.json", "type": "Collection", "label": {"en": ["c"]},
                                      "items": [{"id": f"{base}/m4.json", "type": "Manifest"}]})
        pages = [[activity("Create", base, "m1", "2024-01-01T00:00:00Z"),
                  activity("Create", base, "m2", "2024-01-02T00:00:00Z"),
                  activity("Create", base, "m3", "2024-01-03T00:00:00Z"),
                  {"type": "Create", "object": {"id": f"{base}/img.jpg", "type": "Image"},
                   "endTime": "2024-01-03T12:00:00Z"}],  # not a type we harvest
                 [activity("Update", base, "m1", "2024-02-01T00:00:00Z"),
                  activity("Create", base, "col", "2024-02-02T00:00:00Z", "Collection")]]
        stream = publish_stream(server, pages)

        first = run(runner, msearch_env, "--changes", stream)["changes"][0]
        assert (first["pages_read"], first["harvested"], first["removed"]) == (2, 4, 0)
        assert first["stopped_at"] == "reached the first page"
        assert sorted(catalogue(msearch_env)) == ["m1.json", "m2.json", "m3.json", "m4.json"]
        assert server.count("/m1.json") == 1  # Update and Create of m1: the newest counts, once

        # Nothing new: the stream and its last page are read, nothing else.
        seen = len(server.requests)
        second = run(runner, msearch_env, "--changes", stream)["changes"][0]
        assert second["harvested"] == 0 and second["stopped_at"] == "reached the activity applied last time"
        assert server.paths()[seen:] == ["/stream.json", "/page1.json"]

        # The publisher adds a page: m2 updated, m3 deleted, m5 created.
        server.add_json("/m2.json", manifest(base, "m2", label="m2, second edition", canvases=2))
        server.add_json("/m5.json", manifest(base, "m5"))
        pages.append([activity("Update", base, "m2", "2024-03-01T00:00:00Z"),
                      activity("Delete", base, "m3", "2024-03-02T00:00:00Z"),
                      activity("Create", base, "m5", "2024-03-03T00:00:00Z")])
        publish_stream(server, pages)
        seen = len(server.requests)
        third = run(runner, msearch_env, "--changes", stream)["changes"][0]
        assert (third["harvested"], third["removed"], third["pages_read"]) == (2, 1, 2)
        fetched = server.paths()[seen:]
        assert "/page0.json" not in fetched and "/m1.json" not in fetched and "/m3.json" not in fetched
        rows = catalogue(msearch_env)
        assert rows["m2.json"] == (None, {"en": ["m2, second edition"]})
        assert rows["m3.json"][0] == "gone: deleted (Change Discovery activity)"
        assert rows["m5.json"][0] is None

    engine = make_engine(msearch_env["MSEARCH_DB"])
    with session_scope(make_sessionmaker(engine)) as session:
        state = session.scalar(select(ChangeStream))
        assert state.url == stream and state.last_activity_time == "2024-03-03T00:00:00Z"
        assert state.last_activity_key.startswith("create|") and state.activities_applied == 7
    engine.dispose()


def test_refresh_stops_a_new_reader_and_limits_an_old_one_to_deletions(session_factory):
    fetcher = Fetcher("tests", timeout=2, retries=0, policy=PolitenessPolicy())
    with ScriptedServer() as server:
        base = server.base_url
        for name in "abcde":
            server.add_json(f"/{name}.json", manifest(base, name))
        items = [activity("Create", base, "a", "2024-01-01T00:00:00Z"),
                 activity("Create", base, "b", "2024-01-02T00:00:00Z")]
        stream = publish_stream(server, [items])
        assert process_change_stream(stream, session_factory, fetcher).harvested == [f"{base}/b.json", f"{base}/a.json"]

        # Then: c and d created, a deleted, a full refresh re-announcing b and c.
        items += [activity("Create", base, "c", "2024-02-01T00:00:00Z"),
                  activity("Create", base, "d", "2024-02-02T00:00:00Z"),
                  activity("Delete", base, "a", "2024-02-03T00:00:00Z"),
                  {"type": "Refresh", "startTime": "2024-02-04T00:00:00Z"},
                  activity("Update", base, "b", "2024-02-05T00:00:00Z"),
                  activity("Update", base, "c", "2024-02-06T00:00:00Z")]
        publish_stream(server, [items])
        old_reader = process_change_stream(stream, session_factory, fetcher)
        # Past the Refresh only deletions count for a reader that has been here before.
        assert old_reader.harvested == [f"{base}/c.json", f"{base}/b.json"]
        assert old_reader.removed == [f"{base}/a.json"]
        assert f"{base}/d.json" not in old_reader.harvested

        # A reader new to the stream stops at the Refresh: everything after it is complete.
        with ScriptedServer() as other:
            other_base = other.base_url
            for name in "bc":
                other.add_json(f"/{name}.json", manifest(other_base, name))
            fresh_items = [activity(i["type"], other_base, i["object"]["id"].rsplit("/", 1)[-1][:-5], i["endTime"])
                           if "object" in i else i for i in items]
            fresh = process_change_stream(publish_stream(other, [fresh_items]), session_factory, fetcher)
            assert fresh.harvested == [f"{other_base}/c.json", f"{other_base}/b.json"]
            assert fresh.stopped_at == "reached a Refresh: everything newer has been read"


def test_unreadable_stream_is_reported_and_position_kept(session_factory):
    fetcher = Fetcher("tests", timeout=2, retries=0, policy=PolitenessPolicy())
    with ScriptedServer() as server:
        server.add_json("/not-a-stream.json", {"type": "Manifest", "id": "x"})
        report = process_change_stream(server.url("/not-a-stream.json"), session_factory, fetcher)
        assert report.failures and "not a Change Discovery OrderedCollection" in report.failures[0][1]
        report = process_change_stream(server.url("/missing.json"), session_factory, fetcher)
        assert report.stopped_at == "could not read the stream: HTTP 404 (not found)"
    with session_scope(session_factory) as session:
        states = {s.url.rsplit("/", 1)[-1]: s for s in session.scalars(select(ChangeStream))}
        assert states["missing.json"].last_activity_time is None
        assert states["missing.json"].last_error == "HTTP 404 (not found)"
