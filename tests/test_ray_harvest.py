"""``harvest --engine ray`` on a local Ray (2 CPUs): two hosts crawled by two Ray tasks, canvas
images fetched by chunk tasks, every request under the job's cluster-wide host limits; then the
local embed and search find what the end-to-end test finds, and a second run is incremental."""
from __future__ import annotations

import json

import pytest

from harvest.cluster_fetch import FetcherSettings
from harvest.ray_harvest import RayHarvestOptions, harvest_with_ray, host_groups
from manuscripts_search.config import load_config
from tests.helpers.cli import run_cli
from tests.helpers.shapes_collection import CANVASES
from tests.helpers.worker_catalogue import migrated_factory

# Ray warns about its own deprecated settings while it starts; that is Ray's business, not ours.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")


def test_sources_are_grouped_by_host_the_same_way_every_time():
    sources = ["https://b.example/m2.json", "https://a.example/m.json", "/tmp/local.json",
               "https://B.example/m1.json", "https://a.example/m.json", "file:///tmp/other.json"]
    assert host_groups(sources) == [["/tmp/local.json", "file:///tmp/other.json"], ["https://a.example/m.json"],
                                    ["https://b.example/m2.json", "https://B.example/m1.json"]]
    assert host_groups(list(reversed(sources)))[1:] == [["https://a.example/m.json"],
                                                        ["https://B.example/m1.json", "https://b.example/m2.json"]]


def test_two_hosts_harvested_on_ray_then_embedded_and_searched(shapes_collection, runner, trained_clip_dir,
                                                              msearch_env, ray_cluster):
    server, _collection = shapes_collection
    port = server.base_url.rsplit(":", 1)[1]
    # The same server under two host names: two institutions, as far as grouping and limits go.
    sources = [f"{server.base_url}/v3/manifest.json", f"http://localhost:{port}/v2/manifest.json"]
    env = {**msearch_env, "MSEARCH_MODEL": str(trained_clip_dir), "MSEARCH_IMAGE_SIZE": "128"}
    config = load_config(env)
    factory = migrated_factory(config.db_url)
    fetch = FetcherSettings.from_config(config, max_per_host=2)
    options = RayHarvestOptions(threads=2, image_chunk=3, regions=True, region_method="grid", region_levels=(2,))

    result = harvest_with_ray(config, factory, sources, fetch, options).as_dict()

    assert (result["manifests"], result["new"], result["failures"]) == (2, 2, [])
    assert result["tasks"] == {"crawls": 2, "image_chunks": 3}
    assert result["images"] == {"fetched": len(CANVASES), "failures": []}
    assert result["regions"]["fetched"] == 4 * len(CANVASES) and not result["regions"]["failures"]
    # Every request of every task (and of the driver) went through the cluster-wide limits.
    assert set(result["hosts"]) == {f"http://127.0.0.1:{port}", f"http://localhost:{port}"}
    assert sum(result["hosts"].values()) == result["requests"] > len(CANVASES)
    assert any(path.startswith("/iiif2/rc2/") for path in server.requests)  # through the v2 image service

    embedded = json.loads(run_cli(runner, env, "embed", "--json"))
    assert (embedded["canvases"], embedded["regions"]) == (len(CANVASES), 4 * len(CANVASES))
    hits = [json.loads(line) for line in run_cli(runner, env, "search", "red circle", "--k", "2", "--json").splitlines()]
    assert {h["canvas"] for h in hits} == {f"{server.base_url}/canvas/rc1", f"{server.base_url}/canvas/rc2"}

    again = harvest_with_ray(config, factory, sources, fetch, options).as_dict()
    assert (again["unchanged"], again["new"], again["changed"]) == (2, 0, 0)
    assert again["images"] == {"fetched": 0, "failures": []} and again["tasks"]["image_chunks"] == 0
    factory.kw["bind"].dispose()


def test_detector_regions_on_ray_are_planned_by_the_driver(shapes_collection, msearch_env, ray_cluster, tmp_path):
    from sqlalchemy import select

    from manuscripts_search.models import Region
    from manuscripts_search.store.db import session_scope
    from tests.helpers.model_factory import build_random_owlvit

    server, collection = shapes_collection
    owlvit = build_random_owlvit(tmp_path / "owlvit")
    config = load_config({**msearch_env, "MSEARCH_IMAGE_SIZE": "128", "MSEARCH_REGION_MODEL": str(owlvit),
                          "MSEARCH_REGION_THRESHOLD": "0", "MSEARCH_DEVICE": "cpu"})
    factory = migrated_factory(config.db_url)
    options = RayHarvestOptions(threads=2, image_chunk=3, regions=True, region_method="detector", region_limit=3)

    result = harvest_with_ray(config, factory, [f"{server.base_url}/v3/manifest.json"],
                              FetcherSettings.from_config(config, max_per_host=2), options).as_dict()

    assert str(owlvit) in result["regions"]["detector"]
    with session_scope(factory) as session:
        regions = session.scalars(select(Region)).all()
        per_canvas = {}
        for region in regions:
            per_canvas[region.canvas_id] = per_canvas.get(region.canvas_id, 0) + 1
        assert regions and {r.method for r in regions} == {"detector"} and max(per_canvas.values()) <= 3
        assert all(r.derivative_sha256 for r in regions)
    assert result["regions"]["planned"] == result["regions"]["fetched"] == len(regions)
    factory.kw["bind"].dispose()
