"""A host that stops answering (issue 15, point 1): after connection failures or timeouts in a row
it is down for the run, its requests are deferred (not failed, not recorded as errors) with a
probe now and then, the report and `msearch manifests` say "host down: N requests deferred", and
the next run fetches what was deferred once the host answers. On the local engine and on Ray
(where the host's health is the job's, in the limits actor)."""
from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from harvest.cluster_fetch import FetcherSettings
from harvest.http import Fetcher, FetchError, HostDownError
from harvest.manifests import HarvestOptions, harvest_sources
from harvest.politeness import PolitenessPolicy
from harvest.ray_harvest import RayHarvestOptions, harvest_with_ray
from manuscripts_search.config import load_config
from manuscripts_search.host_health import HealthPolicy
from manuscripts_search.models import Canvas, CrawlItem, HarvestError, Manifest
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope
from tests.helpers.cli import run_cli
from tests.helpers.dead_hosts import BlackHole, RefusingPort, image_host, manifest_on_image_host
from tests.helpers.scripted_server import Reply, ScriptedServer
from tests.helpers.worker_catalogue import migrated_factory

# Ray warns about its own deprecated settings while it starts; that is Ray's business, not ours.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")

CANVASES = 12


def down_host(kind: str):
    return BlackHole() if kind == "black-hole" else RefusingPort()


def canvas_states(db_url: str) -> list[tuple]:
    engine = make_engine(db_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            canvases = [(c.derivative_sha256 is not None, c.derivative_deferred, c.derivative_error)
                        for c in session.scalars(select(Canvas).order_by(Canvas.id))]
            image_errors = session.scalar(select(func.count()).select_from(HarvestError)
                                          .where(HarvestError.stage == "image"))
        return canvases, image_errors
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["black-hole", "refused"])
def test_canvases_on_a_down_host_are_deferred_reported_and_fetched_once_it_answers(kind, runner, msearch_env):
    with ScriptedServer() as site:
        down = down_host(kind)
        port, host = down.port, down.base_url
        site.add_json("/manifest.json", manifest_on_image_host(site.base_url, host, CANVASES))
        harvest = ["harvest", site.url("/manifest.json"), "--timeout", "0.5", "--per-host", "4"]
        try:
            started = time.monotonic()
            first = json.loads(run_cli(runner, msearch_env, *harvest, "--json"))
            elapsed = time.monotonic() - started
            # Still down on the next run: deferred again, never turned into failures.
            second = run_cli(runner, msearch_env, *harvest)
            listed = run_cli(runner, msearch_env, "manifests", "--errors-only")
        finally:
            down.close()

        # Before: every canvas paid 4 attempts at its info.json, its sized image and its image URL
        # (145 requests, about a minute here for the black hole). Now the host is down after 5
        # failures in a row, with at most 3 more that were in flight.
        assert first["images"] == {"fetched": 0, "failures": [], "deferred": {host: CANVASES}}
        assert first["requests"] <= 1 + 5 + 3
        assert elapsed < 15
        canvases, image_errors = canvas_states(msearch_env["MSEARCH_DB"])
        assert canvases == [(False, host, None)] * CANVASES and image_errors == 0
        assert f"host down: {CANVASES} requests deferred ({host}); the next run retries them" in second
        assert "images fetched 0, failed 0" in second
        assert f"On a dead image host — {CANVASES} canvases, {CANVASES} with images; host down: {CANVASES} " \
               f"requests deferred ({host}), the next harvest retries them" in listed

        with image_host(port):  # the host is back, on the same port
            third = json.loads(run_cli(runner, msearch_env, *harvest, "--json"))
        assert third["images"] == {"fetched": CANVASES, "failures": []}
        assert canvas_states(msearch_env["MSEARCH_DB"]) == ([(True, None, None)] * CANVASES, 0)
        assert run_cli(runner, msearch_env, "manifests", "--errors-only") == ""


def test_a_down_host_is_probed_at_growing_intervals_and_is_back_when_a_probe_is_answered():
    health = HealthPolicy(down_after=2, probe_after=0.4, probe_max=0.8)
    fetcher = Fetcher("manuscripts-search-tests/1.0", timeout=0.5, retries=0,
                      policy=PolitenessPolicy(backoff_base=0.01, backoff_max=0.02, health=health))
    refusing = RefusingPort()
    base, port = refusing.base_url, refusing.port
    try:
        with pytest.raises(FetchError, match="connection refused") as first:
            fetcher.get(f"{base}/a")
        assert not isinstance(first.value, HostDownError)  # one failure is the resource's
        with pytest.raises(HostDownError, match=f"host down: {base}"):
            fetcher.get(f"{base}/b")  # the second in a row: the host is down, this one deferred
        with pytest.raises(HostDownError, match="did not answer 2 requests in a row; deferred"):
            fetcher.get(f"{base}/c")
        assert fetcher.stats["requests"] == 2  # /c was not sent
        time.sleep(0.45)
        with pytest.raises(HostDownError, match="did not answer a probe"):
            fetcher.get(f"{base}/d")  # the probe
        assert fetcher.stats["requests"] == 3
        time.sleep(0.45)
        with pytest.raises(HostDownError):
            fetcher.get(f"{base}/e")  # the next probe is due twice as late
        assert fetcher.stats["requests"] == 3
    finally:
        refusing.close()
    with image_host(port) as server:
        with pytest.raises(HostDownError):
            fetcher.get(f"{base}/f")  # up again, but nobody has asked yet
        time.sleep(0.4)
        assert fetcher.get(f"{base}/iiif/1/info.json", expect="json").status == 200  # the probe
        assert fetcher.get(f"{base}/iiif/2/info.json", expect="json").status == 200
        assert server.paths() == ["/iiif/1/info.json", "/iiif/2/info.json"]
    fetcher.close()


def test_a_host_that_answers_with_errors_is_not_down():
    fetcher = Fetcher("manuscripts-search-tests/1.0", timeout=0.5, retries=2,
                      policy=PolitenessPolicy(backoff_base=0.01, backoff_max=0.02, health=HealthPolicy(down_after=2)))
    with ScriptedServer() as server:
        server.add("/busy", lambda _request: Reply(503, b"busy"))
        for _ in range(3):
            with pytest.raises(FetchError, match="HTTP 503") as failure:
                fetcher.get(server.url("/busy"))
            assert not isinstance(failure.value, HostDownError)
        assert server.count("/busy") == 9 and not fetcher.limiter.is_down(server.base_url)
    fetcher.close()


def member(base: str, index: int) -> dict:
    return {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/m/{index}.json",
            "type": "Manifest", "label": {"en": [f"member {index}"]}, "items": []}


def test_documents_on_a_down_host_are_deferred_and_harvested_by_the_next_run(db_url):
    factory = migrated_factory(db_url)
    options = HarvestOptions(workers=4)
    with ScriptedServer() as site:
        refusing = RefusingPort()
        port, host = refusing.port, refusing.base_url
        site.add_json("/collection.json", {
            "@context": "http://iiif.io/api/presentation/3/context.json", "id": site.url("/collection.json"),
            "type": "Collection", "label": {"en": ["members elsewhere"]},
            "items": [{"id": f"{host}/m/{i}.json", "type": "Manifest"} for i in range(6)]})

        def fetcher():
            return Fetcher("manuscripts-search-tests/1.0", timeout=0.5, retries=1,
                           policy=PolitenessPolicy(max_per_host=2, backoff_base=0.01, backoff_max=0.02,
                                                   health=HealthPolicy(down_after=1)))

        try:
            first = harvest_sources([site.url("/collection.json")], factory, fetcher(), options=options).as_dict()
        finally:
            refusing.close()
        assert (first["collections"], first["manifests"], first["failures"]) == (1, 0, [])
        assert first["deferred"] == {host: 6}
        with session_scope(factory) as session:
            statuses = session.execute(select(CrawlItem.status, func.count()).group_by(CrawlItem.status)).all()
            assert sorted(statuses) == [("deferred", 6), ("done", 1)]
            assert session.scalar(select(func.count()).select_from(HarvestError)) == 0
            assert session.scalar(select(func.count()).select_from(Manifest)) == 0

        with ScriptedServer(port=port) as members:
            for i in range(6):
                members.add_json(f"/m/{i}.json", member(host, i))
            second = harvest_sources([site.url("/collection.json")], factory, fetcher(), options=options).as_dict()
    assert (second["new"], second["unchanged"], second["failures"]) == (6, 1, [])
    assert "deferred" not in second
    factory.kw["bind"].dispose()


def test_on_ray_a_down_host_is_down_for_every_task_and_its_canvases_come_next_run(ray_cluster, msearch_env):
    config = load_config(msearch_env)
    factory = migrated_factory(config.db_url)
    fetch = FetcherSettings.from_config(config, timeout=0.5, retries=1, max_per_host=2,
                                        health=HealthPolicy(down_after=3))
    options = RayHarvestOptions(threads=2, image_chunk=3, annotations=False)
    with ScriptedServer() as site:
        black_hole = BlackHole()
        port, host = black_hole.port, black_hole.base_url
        site.add_json("/manifest.json", manifest_on_image_host(site.base_url, host, 6))
        try:
            first = harvest_with_ray(config, factory, [site.url("/manifest.json")], fetch, options).as_dict()
            accepted = black_hole.accepted
        finally:
            black_hole.close()
        assert first["images"] == {"fetched": 0, "failures": [], "deferred": {host: 6}}
        assert first["tasks"]["image_chunks"] == 2
        # Three timeouts in a row put the host down for the job, with one more in flight at most:
        # the second task sent it nothing (a host down per process would have cost 3 more).
        assert accepted <= 4

        with image_host(port):
            second = harvest_with_ray(config, factory, [site.url("/manifest.json")], fetch, options).as_dict()
    assert second["images"] == {"fetched": 6, "failures": []}
    with session_scope(factory) as session:
        assert session.scalar(select(func.count()).select_from(Canvas)
                              .where(Canvas.derivative_deferred.is_not(None))) == 0
    factory.kw["bind"].dispose()


def test_a_change_stream_keeps_its_position_while_a_host_of_its_activities_is_down(db_url):
    from harvest.changes import process_change_stream

    factory = migrated_factory(db_url)
    context = "http://iiif.io/api/discovery/1/context.json"
    with ScriptedServer() as site:
        refusing = RefusingPort()
        port, host = refusing.port, refusing.base_url
        stream = site.url("/stream.json")
        site.add_json("/page0.json", {
            "@context": context, "id": site.url("/page0.json"), "type": "OrderedCollectionPage",
            "partOf": {"id": stream, "type": "OrderedCollection"},
            "orderedItems": [{"type": "Create", "object": {"id": f"{host}/m/{i}.json", "type": "Manifest"},
                              "endTime": f"2024-01-0{i + 1}T00:00:00Z"} for i in range(3)]})
        site.add_json("/stream.json", {
            "@context": context, "id": stream, "type": "OrderedCollection", "totalItems": 3,
            "first": {"id": site.url("/page0.json"), "type": "OrderedCollectionPage"},
            "last": {"id": site.url("/page0.json"), "type": "OrderedCollectionPage"}})

        def fetcher():
            return Fetcher("manuscripts-search-tests/1.0", timeout=0.5, retries=1,
                           policy=PolitenessPolicy(backoff_base=0.01, backoff_max=0.02,
                                                   health=HealthPolicy(down_after=1)))

        try:
            first = process_change_stream(stream, factory, fetcher()).as_dict()
        finally:
            refusing.close()
        assert first["harvest"]["deferred"] == {host: 3} and first["failures"] == []
        assert "3 document(s) deferred (host down), position kept" in first["stopped_at"]

        with ScriptedServer(port=port) as members:
            for i in range(3):
                members.add_json(f"/m/{i}.json", member(host, i))
            second = process_change_stream(stream, factory, fetcher()).as_dict()
    # Before, the position moved past the activities whose documents were never fetched.
    assert (second["harvested"], second["harvest"]["new"], second["failures"]) == (3, 3, [])
    factory.kw["bind"].dispose()
