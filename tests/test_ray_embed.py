"""``embed --engine ray`` on a local Ray (2 CPUs): the same harvest → embed path as the end-to-end
test, with vectors identical to the local engine's item for item; derivatives fetched over HTTP
under cluster-wide per-host limits; stages killed mid-run and retried by Ray without any item
embedded twice; the single index writer adding the new vectors afterwards."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, select

from manuscripts_search.store.db import session_scope
from manuscripts_search.distributed import embed_stages, ray_embed
from manuscripts_search.embedding.registry import resolve_image_encoder
from manuscripts_search.models import Embedding, EmbeddingClaim, PerceptualHash
from tests.helpers.scripted_server import Reply, ScriptedServer
from tests.helpers.cli import run_cli
from tests.helpers.shapes_collection import CANVASES
from tests.helpers.worker_catalogue import assert_each_item_once, build_catalogue, claim_rows, hashes_by_item, \
    migrated_factory, shape_images, vectors_by_item

# Ray warns about its own deprecated settings while it starts; that is Ray's business, not ours.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")


def _derivative_server(derivatives_dir: Path) -> ScriptedServer:
    """Serves a derivative store's tree over HTTP, as a web server over the data dir would."""
    server = ScriptedServer()

    def serve(request):
        path = derivatives_dir / request.path.lstrip("/")
        if not path.is_file():
            return Reply(404, b"no such derivative", {"Content-Type": "text/plain"})
        return Reply(200, path.read_bytes(), {"Content-Type": "image/jpeg"})

    server.fallback = serve
    return server


def test_ray_engine_gives_the_local_engines_vectors_under_cluster_wide_host_limits(
        shapes_collection, runner, trained_clip_dir, msearch_env, ray_cluster, tmp_path):
    from harvest.cluster_fetch import FetcherSettings
    from harvest.remote_derivatives import HttpDerivatives
    from manuscripts_search.distributed.host_limits import ClusterHostLimiter, start_host_limits

    server, collection_url = shapes_collection
    env = {**msearch_env, "MSEARCH_MODEL": str(trained_clip_dir), "MSEARCH_IMAGE_SIZE": "128"}
    harvested = json.loads(run_cli(runner, env, "harvest", collection_url, "--regions", "grid", "--region-grid", "2",
                                   "--json"))
    items = len(CANVASES) * 5  # each canvas and its 2x2 regions
    assert harvested["images"]["fetched"] == len(CANVASES) and harvested["regions"]["fetched"] == items - len(CANVASES)

    local = json.loads(run_cli(runner, env, "embed", "--no-index", "--json"))
    assert (local["canvases"], local["regions"], local["failed"]) == (len(CANVASES), items - len(CANVASES), [])
    factory = migrated_factory(msearch_env["MSEARCH_DB"])
    resolved = resolve_image_encoder(str(trained_clip_dir), fallback=False)
    space = resolved.encoder.space_id
    local_vectors, local_hashes = vectors_by_item(factory, space), hashes_by_item(factory)
    with session_scope(factory) as session:  # start again from nothing: same images, no vectors
        session.execute(delete(Embedding))
        session.execute(delete(PerceptualHash))

    # The derivatives come over HTTP to two preparation actors sharing one host's limits:
    # one request at a time, at most 20 per second, over both processes.
    derivatives_dir = Path(msearch_env["MSEARCH_DATA_DIR"]) / "derivatives"
    rate = 20.0
    with _derivative_server(derivatives_dir) as store_server:
        limiter = ClusterHostLimiter(start_host_limits(ray_cluster, max_per_host=1, requests_per_second=rate))
        images = HttpDerivatives(store_server.base_url, str(tmp_path / "node-cache"),
                                 FetcherSettings(user_agent="msearch-test", max_per_host=1, requests_per_second=rate),
                                 limiter)
        options = ray_embed.RayEmbedOptions(batch_size=8, claim_chunk=8, prepare_actors=2, prepare_cpus=0.5)
        report = ray_embed.embed_with_ray(factory, resolved, images, options)
        starts = sorted(request.at for request in store_server.requests)

    assert (report.canvases, report.regions, report.hashed, report.failed) == \
        (len(CANVASES), items - len(CANVASES), items, [])
    ray_vectors = vectors_by_item(factory, space)
    assert ray_vectors.keys() == local_vectors.keys() and len(ray_vectors) == items
    for key, vector in local_vectors.items():
        assert np.max(np.abs(ray_vectors[key] - vector)) < 1e-5, key
    assert hashes_by_item(factory) == local_hashes
    assert claim_rows(factory) == []

    # Every derivative was fetched, by two processes, yet the host saw the rate of one: requests
    # spaced by 1/rate (a per-process limiter lets both processes go at once: half the gaps
    # near zero). One short gap is tolerated: a process descheduled between its grant and its
    # request on a loaded machine.
    derivatives = {sha for _phash, _crops, sha in local_hashes.values()}
    assert {path.rsplit("/", 1)[-1] for path in store_server.paths()} == derivatives
    assert len(starts) <= items
    gaps = np.diff(starts)
    assert int(np.sum(gaps < 0.5 / rate)) <= 1, gaps
    assert starts[-1] - starts[0] >= 0.9 * (len(starts) - 1) / rate
    host_stats = limiter.stats()[store_server.base_url]
    assert (host_stats["granted"], host_stats["clients"]) == (len(starts), 2)

    # The single writer adds the new vectors to the index; search finds the red circles.
    run_cli(runner, env, "index")
    hits = [json.loads(line) for line in run_cli(runner, env, "search", "red circle", "--k", "2", "--json").splitlines()]
    assert {h["canvas"] for h in hits} == {f"{server.base_url}/canvas/rc1", f"{server.base_url}/canvas/rc2"}
    assert ray_embed.embed_with_ray(factory, resolved, images, options).embedded == 0  # nothing left to do
    factory.kw["bind"].dispose()


def _dying_once(stage: type, marker: Path, after_work: bool) -> type:
    """``stage`` whose process exits (as if killed) the first time it is called: before doing
    its work, or after it (for the writer: after the transaction committed)."""

    class DyingOnce(stage):
        def __call__(self, batch):
            if not after_work:
                _die_first_time(marker)
            result = super().__call__(batch)
            if after_work:
                _die_first_time(marker)
            return result

    return DyingOnce


def _die_first_time(marker: Path) -> None:
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return
    os._exit(1)


def test_stages_killed_mid_run_are_retried_and_no_item_is_embedded_twice(db_url, tmp_path, trained_clip_dir,
                                                                         ray_cluster):
    factory = migrated_factory(db_url)
    catalogue = build_catalogue(factory, tmp_path, shape_images(12, size=64), regions_per_canvas=2)
    resolved = resolve_image_encoder(str(trained_clip_dir), fallback=False)
    markers = {name: tmp_path / f"{name}-died" for name in ("encoder", "writer")}
    stages = embed_stages.EmbedStages(encode=_dying_once(embed_stages.EncodeImages, markers["encoder"], after_work=False),
                                      write=_dying_once(embed_stages.WriteResults, markers["writer"], after_work=True))
    options = ray_embed.RayEmbedOptions(batch_size=6)

    report = ray_embed.embed_with_ray(factory, resolved, embed_stages.StoreImages(str(catalogue.store.root)), options,
                                      stages=stages)

    assert all(marker.exists() for marker in markers.values())  # both stages really died once
    # The batch the writer committed before dying came back from Ray's retry, found its claims
    # gone and was skipped: every item has exactly one vector.
    assert report.skipped == options.batch_size and report.failed == []
    assert report.embedded + report.skipped == catalogue.items
    assert_each_item_once(factory, catalogue, resolved.encoder.space_id, resolved.encoder.dim)
    assert claim_rows(factory) == []
    with session_scope(factory) as session:
        assert session.scalar(select(EmbeddingClaim.id).limit(1)) is None
    factory.kw["bind"].dispose()


def test_ray_stays_optional():
    """Importing the package, the CLI and even the Ray modules loads no Ray; without Ray
    installed, the Ray engine says how to install it."""
    import subprocess
    import sys

    script = """
import sys
import manuscripts_search, manuscripts_search.cli
import manuscripts_search.distributed.ray_embed, manuscripts_search.distributed.host_limits
import harvest.ray_harvest, harvest.remote_derivatives
assert "ray" not in sys.modules, "ray was imported"
sys.modules["ray"] = None  # as if it were not installed
from manuscripts_search.distributed.runtime import RayUnavailableError, ray_connection
try:
    with ray_connection():
        pass
except RayUnavailableError as error:
    print(error)
"""
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "pip install 'manuscripts-search[ray]'" in finished.stdout


def test_an_unreachable_cluster_is_a_clear_error_at_once():
    from manuscripts_search.distributed.runtime import RayUnavailableError, check_reachable

    with pytest.raises(RayUnavailableError, match="cannot reach the Ray cluster at 'ray://127.0.0.1:1'"):
        check_reachable("ray://127.0.0.1:1")
    with pytest.raises(RayUnavailableError, match="not a Ray cluster address"):
        check_reachable("head:port")
    check_reachable("auto")  # left to Ray


def test_a_model_actor_with_other_model_files_refuses_to_run(trained_clip_dir, random_clip_dir):
    from manuscripts_search.embedding.registry import SpaceMismatchError

    driver = resolve_image_encoder(str(trained_clip_dir), fallback=False).encoder
    spec = embed_stages.ModelSpec(model=str(random_clip_dir), space_id=driver.space_id, revision=driver.revision,
                                  dim=driver.dim)  # this "node" has other weights at the model path
    with pytest.raises(SpaceMismatchError, match="its model files differ from the driver's"):
        embed_stages.EncodeImages(spec)
    same = embed_stages.ModelSpec(model=str(trained_clip_dir), space_id=driver.space_id, revision=driver.revision,
                                  dim=driver.dim)
    assert embed_stages.EncodeImages(same).encoder.revision == driver.revision


def test_a_cpu_model_actor_computes_on_all_its_nodes_cores():
    """Ray starts actors with one OpenMP thread; a model that wants every core (large, or weight-
    free features) gets the node's cores back, as it has them in the local worker."""
    import os

    import torch

    from manuscripts_search.embedding.handcrafted import HandcraftedEncoder

    handcrafted = HandcraftedEncoder()
    spec = embed_stages.ModelSpec(model="handcrafted", space_id=handcrafted.space_id, revision=handcrafted.revision,
                                  dim=handcrafted.dim)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a Ray actor
    try:
        embed_stages.EncodeImages(spec)
        assert torch.get_num_threads() == len(os.sched_getaffinity(0))
    finally:
        torch.set_num_threads(before)
