"""Index shards served on Ray Serve (a local Ray, 3 shards of a small synthetic space): the same
answers as one index through the web app's backend, filters pushed down to the replicas, and a
replica killed in the middle of a load: every answer complete or marked partial, none an error,
and the shard back once Ray has restarted it."""
from __future__ import annotations

import threading
import time

import pytest

from manuscripts_search.distributed.ray_search import (RayShards, application_name, deploy_shards,
                                                       undeploy_shards)
from manuscripts_search.index.layouts import open_index
from manuscripts_search.index.shard_sync import sync_space
from manuscripts_search.index.shards import ShardPart
from manuscripts_search.index.sync import load_vectors
from manuscripts_search.index.vector_index import IndexParams
from manuscripts_search.search.filters import SearchFilters, canvas_filter_statement
from manuscripts_search.search.knn import knn
from manuscripts_search.search.shard_search import ShardedIndex
from manuscripts_search.search.signals import allowed_visual_labels
from manuscripts_search.store.db import session_scope
from tests.helpers.sharded_catalogue import build_sharded_catalogue

# Ray warns about its own deprecated settings when it starts (as in the other Ray test modules).
pytestmark = [pytest.mark.db, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")]

SHARDS = 3


@pytest.fixture(scope="module")
def served(ray_cluster, module_db_url, tmp_path_factory):
    """The catalogue, its single index, and its 3 shards deployed once for the module (a deploy
    takes ~10 s here); the fault test runs last and leaves the shards as Ray restored them."""
    from manuscripts_search.store.db import make_engine, make_sessionmaker, upgrade_database

    engine = make_engine(module_db_url)
    upgrade_database(engine)
    factory = make_sessionmaker(engine)
    catalogue = build_sharded_catalogue(factory, manifests=6, canvases=30)
    tmp_path = tmp_path_factory.mktemp("ray-shards")
    single_dir, index_dir = tmp_path / "single", tmp_path / "index"
    params = IndexParams(ef_search=2000)
    with session_scope(factory) as session:
        sync_space(session, single_dir, catalogue.space, params=params)
        sync_space(session, index_dir, catalogue.space, shards=SHARDS, params=params)
    started = time.monotonic()
    names = deploy_shards(catalogue.space, SHARDS, index_dir, module_db_url, replicas=1, cpus_per_replica=0.1)
    print(f"deployed {len(names)} shards in {time.monotonic() - started:.1f} s")
    try:
        yield catalogue, open_index(single_dir, catalogue.space), names
    finally:
        undeploy_shards(catalogue.space)
        engine.dispose()


def test_shards_on_ray_serve_answer_what_one_index_answers(served):
    catalogue, single, names = served
    assert names == [application_name(catalogue.space, ShardPart(n, SHARDS)) for n in range(SHARDS)]
    sharded = ShardedIndex(catalogue.space, RayShards(catalogue.space, deadline_s=30.0))
    assert sharded.shards == SHARDS and len(sharded) == len(single)
    filters = SearchFilters(manifests=(str(catalogue.manifests[2]),))
    with session_scope(catalogue.factory) as session:
        allowed = allowed_visual_labels(session, catalogue.space, canvas_filter_statement(session, filters))
        for query in catalogue.queries(10):
            result = sharded.nearest(session, query, 20)
            assert not result.unavailable and result.hits == knn(single, query, 20).hits
            expected = knn(single, query, 10, allowed=allowed,
                           vectors_of=lambda labels: load_vectors(session, catalogue.space, labels, catalogue.dim)).hits
            # The filter travels, not the ids: each replica reads its allowed labels itself.
            assert sharded.nearest(session, query, 10, filters=filters).hits == expected
            assert sharded.nearest(session, query, 10, canvas_filter=canvas_filter_statement(session, filters)).hits \
                == expected


def test_a_replica_killed_under_load_gives_partial_answers_never_errors_and_comes_back(served, ray_cluster):
    catalogue, single, names = served
    ray = ray_cluster
    sharded = ShardedIndex(catalogue.space, RayShards(catalogue.space, deadline_s=1.0))
    queries = catalogue.queries(8)
    expected = [[label for label, _ in knn(single, query, 10).hits] for query in queries]
    outcomes, errors = [], []
    stop = threading.Event()

    def client(number):
        position = number
        while not stop.is_set():
            query_number = position % len(queries)
            position += 1
            try:
                with session_scope(catalogue.factory) as session:
                    result = sharded.nearest(session, queries[query_number], 10)
            except Exception as error:  # any exception is a failure of the test
                errors.append(repr(error))
                continue
            outcomes.append((time.monotonic(), query_number, result))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    victim = _replica_actor(ray, names[1])
    killed_at = time.monotonic()
    ray.kill(victim, no_restart=False)
    time.sleep(6.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors[:3]
    partial = [result for _, _, result in outcomes if result.unavailable]
    complete = [(number, result) for _, number, result in outcomes if not result.unavailable]
    assert len(outcomes) > 20
    # Every complete answer is the single index's; every partial one names shard 2 and holds the
    # other shards' best.
    assert all([label for label, _ in result.hits] == expected[number] for number, result in complete)
    assert all(result.unavailable == (2,) for result in partial)
    # Ray restarts the replica: answers are complete again (within seconds on an idle machine;
    # the wait allows for a loaded one).
    deadline = time.monotonic() + 90
    with session_scope(catalogue.factory) as session:
        while True:
            result = sharded.nearest(session, queries[0], 10)
            if not result.unavailable or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert not result.unavailable and [label for label, _ in result.hits] == expected[0]
    print(f"{len(outcomes)} answers, {len(partial)} partial; complete again "
          f"{time.monotonic() - killed_at:.1f} s after the kill")


def _replica_actor(ray, application: str):
    from ray.util import list_named_actors

    for entry in list_named_actors(all_namespaces=True):
        name = entry["name"] if isinstance(entry, dict) else entry
        namespace = entry.get("namespace") if isinstance(entry, dict) else None
        if name.startswith("SERVE_REPLICA::") and f"::{application}#" in name:
            return ray.get_actor(name, namespace=namespace)
    raise AssertionError(f"no replica actor of {application}")
