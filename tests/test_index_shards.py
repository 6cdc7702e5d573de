"""An image space's index split into shards by canvas: the same answers as one index (exact merge,
filters pushed down), syncs and verification per shard, re-sharding while readers keep answering,
and partial answers when a shard cannot be read. In process (the local backend); the Ray Serve
backend runs the same shard code in tests/test_ray_search.py."""
from __future__ import annotations


import os

import numpy as np
import pytest

from manuscripts_search.index import shard_sync
from manuscripts_search.index.layouts import open_index
from manuscripts_search.index.shard_sync import sync_space, verify_space
from manuscripts_search.index.shards import ShardPart, plan_path, read_plan, shard_numbers
from manuscripts_search.index.vector_index import IndexParams
from manuscripts_search.search.filters import SearchFilters, canvas_filter_statement
from manuscripts_search.search.knn import knn
from manuscripts_search.search.shard_search import LocalShards, ShardedIndex
from manuscripts_search.search.signals import allowed_visual_labels, visual_ranking
from manuscripts_search.search.space_index import LiveSpaceIndex
from manuscripts_search.index.sync import load_vectors
from manuscripts_search.store.db import session_scope
from tests.helpers.sharded_catalogue import build_sharded_catalogue

pytestmark = pytest.mark.db

EXACT = IndexParams(ef_search=2000)  # beam wider than a shard: graph answers are the exact top k


def test_shard_of_a_canvas_is_stable_and_spread_evenly():
    # Pinned against splitmix64 written out with Python integers: a change of the hash would
    # silently move canvases to other shards (and every shard would fail verification).
    mask = (1 << 64) - 1

    def splitmix64(x):
        z = (x + 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    ids = [1, 2, 3, 4, 5, 1000, 123_456_789, 2 ** 40]
    assert shard_numbers(ids, 3).tolist() == [splitmix64(i) % 3 for i in ids]
    assert shard_numbers(ids, 7).tolist() == [splitmix64(i) % 7 for i in ids]
    assert shard_numbers([1, 2, 3, 4, 5, 6, 7, 8], 3).tolist() == [2, 1, 0, 1, 2, 2, 0, 1]
    counts = np.bincount(shard_numbers(np.arange(1, 40_001), 4), minlength=4)
    assert counts.min() > 0.97 * 10_000 and counts.max() < 1.03 * 10_000
    # Ids that step by the shard count (id % n would put every one in the same shard) spread too.
    stepping = np.bincount(shard_numbers(np.arange(4, 40_004, 4), 4), minlength=4)
    assert stepping.min() > 0.95 * 2_500
    with pytest.raises(ValueError, match="between 1 and 1024"):
        ShardPart(0, 0)


@pytest.fixture
def catalogue(session_factory):
    return build_sharded_catalogue(session_factory)


def _single_and_sharded(catalogue, tmp_path, count=3, layout="hnsw"):
    single_dir, sharded_dir = tmp_path / "single", tmp_path / "sharded"
    with session_scope(catalogue.factory) as session:
        one = sync_space(session, single_dir, catalogue.space, params=EXACT, layout=layout)
        split = sync_space(session, sharded_dir, catalogue.space, shards=count, params=EXACT, layout=layout)
    assert one.shards == 1 and split.shards == count and one.total == split.total == len(catalogue.vectors)
    single = open_index(single_dir, catalogue.space)
    sharded = ShardedIndex(catalogue.space, LocalShards(sharded_dir, catalogue.space, count))
    return single, sharded, sharded_dir


def test_shards_answer_exactly_what_one_index_answers_with_and_without_filters(catalogue, tmp_path):
    single, sharded, _ = _single_and_sharded(catalogue, tmp_path)
    assert len(sharded) == len(single) and sharded.dim == single.dim
    assert all(stats.vectors > 0 for stats in sharded.shard_stats())
    filters = SearchFilters(manifests=(str(catalogue.manifests[1]), str(catalogue.manifests[5])))
    with session_scope(catalogue.factory) as session:
        allowed = allowed_visual_labels(session, catalogue.space, canvas_filter_statement(session, filters))
        vectors_of = lambda labels: load_vectors(session, catalogue.space, labels, catalogue.dim)  # noqa: E731
        for query in catalogue.queries(25):
            expected = knn(single, query, 20).hits
            got = sharded.nearest(session, query, 20)
            assert got.hits == expected and not got.unavailable
            assert [label for label, _ in expected] == catalogue.exact_top(query, 20)
            # Filters are pushed down: each shard reads its own allowed labels.
            expected = knn(single, query, 15, allowed=allowed, vectors_of=vectors_of).hits
            assert sharded.nearest(session, query, 15, filters=filters).hits == expected
            assert [label for label, _ in expected] == catalogue.exact_top(query, 15, allowed)
            # A scope no filter expresses (a canvas set): its labels are split by shard.
            scope = canvas_filter_statement(session, filters)
            assert sharded.nearest(session, query, 15, canvas_filter=scope).hits == expected
        # The ranking the engine builds (grouped by canvas, regions listed) is the same too.
        query = catalogue.queries(1)[0]
        ranking_one = visual_ranking(session, single, query, 30)
        ranking_split = visual_ranking(session, sharded, query, 30)
        assert [(c.canvas_id, c.score, [r.xywh for r in c.regions]) for c in ranking_split.canvases] == [
            (c.canvas_id, c.score, [r.xywh for r in c.regions]) for c in ranking_one.canvases]


def test_compressed_layout_recall_is_the_single_index_recall(catalogue, tmp_path):
    single, sharded, _ = _single_and_sharded(catalogue, tmp_path, count=2, layout="hnsw-i8")
    recall_one, recall_split = [], []
    with session_scope(catalogue.factory) as session:
        for query in catalogue.queries(200):  # enough that one graph's luck does not move the mean
            truth = set(catalogue.exact_top(query, 10))
            recall_one.append(len(truth & {label for label, _ in single.query(query, 10)}) / 10)
            recall_split.append(len(truth & {label for label, _ in sharded.nearest(session, query, 10).hits}) / 10)
    assert np.mean(recall_one) > 0.8
    assert abs(np.mean(recall_split) - np.mean(recall_one)) <= 0.01, (np.mean(recall_one), np.mean(recall_split))


def test_each_shard_syncs_and_verifies_against_its_part_of_the_database(catalogue, tmp_path):
    index_dir = tmp_path / "index"
    with session_scope(catalogue.factory) as session:
        report = sync_space(session, index_dir, catalogue.space, shards=3)
        assert report.as_dict()["shards"] == 3 and sum(report.as_dict()["per_shard"]) == len(catalogue.vectors)
        assert verify_space(session, index_dir, catalogue.space, deep=True)["ok"]
    catalogue.add_manifest(10)
    gone = catalogue.labels[:7]
    catalogue.make_stale(gone)
    with session_scope(catalogue.factory) as session:
        report = sync_space(session, index_dir, catalogue.space)  # keeps the count it has
        assert report.shards == 3 and (report.added, report.removed) == (40, 7) and not report.rebuilt
        result = verify_space(session, index_dir, catalogue.space, deep=True)
        assert result["ok"] and result["shards"] == 3 and result["vectors_checked"] == len(catalogue.vectors)
        # Every canvas's vectors are in its one shard.
        for part in (ShardPart(n, 3) for n in range(3)):
            held = open_index(index_dir, part.index_name(catalogue.space)).labels()
            assert {catalogue.canvas_of[label] for label in held} <= {
                c for c in catalogue.canvases if part.holds(np.array([c]))[0]}
        # A vector in the wrong shard is found: missing from one and extra in another.
        first = open_index(index_dir, ShardPart(0, 3).index_name(catalogue.space), writable=True)
        stray = next(label for label in catalogue.vectors if label not in first)
        first.add([stray], catalogue.vectors[stray][None, :])
        first.save(index_dir)
        result = verify_space(session, index_dir, catalogue.space)
        assert not result["ok"] and result["extra_in_index"] == [stray]
        assert [entry["ok"] for entry in result["per_shard"]].count(False) == 1


def test_resharding_keeps_the_old_set_serving_until_the_new_one_is_complete(catalogue, tmp_path, monkeypatch):
    index_dir = tmp_path / "index"
    with session_scope(catalogue.factory) as session:
        sync_space(session, index_dir, catalogue.space, shards=3, params=EXACT)
    reader = LiveSpaceIndex(index_dir, catalogue.space, check_interval=0.0)
    query = catalogue.queries(1)[0]
    expected = catalogue.exact_top(query, 10)
    with session_scope(catalogue.factory) as session:
        assert reader.get().shards == 3
        assert [label for label, _ in reader.get().nearest(session, query, 10).hits] == expected

    seen_during_build = []
    real_rebuild = shard_sync.rebuild_index

    def rebuild_and_look(*args, **kwargs):
        report = real_rebuild(*args, **kwargs)
        with session_scope(catalogue.factory) as session:  # a query between two new shards
            index = reader.get()
            seen_during_build.append((index.shards, [label for label, _ in index.nearest(session, query, 10).hits]))
        return report

    monkeypatch.setattr(shard_sync, "rebuild_index", rebuild_and_look)
    with session_scope(catalogue.factory) as session:
        report = sync_space(session, index_dir, catalogue.space, shards=2, show_progress=False)
    assert report.resharded_from == 3 and report.shards == 2 and report.total == len(catalogue.vectors)
    assert seen_during_build == [(3, expected), (3, expected)]
    assert read_plan(index_dir, catalogue.space)["count"] == 2
    names = {path.name for path in index_dir.iterdir()}
    assert not any("-of-3" in name for name in names)  # the old set's files are gone...
    with session_scope(catalogue.factory) as session:
        index = reader.get()  # ...and the reader moved to the new set
        assert index.shards == 2 and reader.reshards == 1
        assert [label for label, _ in index.nearest(session, query, 10).hits] == expected
        # Back to one index: the plan goes, and the reader reads the single index.
        sync_space(session, index_dir, catalogue.space, shards=1)
        assert not plan_path(index_dir, catalogue.space).exists()
        single = reader.get()
        assert not isinstance(single, ShardedIndex) and len(single) == len(catalogue.vectors)
        assert verify_space(session, index_dir, catalogue.space)["ok"]


def test_a_shard_that_cannot_be_read_leaves_a_partial_answer_that_says_so(catalogue, tmp_path):
    single, sharded, sharded_dir = _single_and_sharded(catalogue, tmp_path, count=3)
    query = catalogue.queries(1)[0]
    broken = ShardPart(1, 3).index_name(catalogue.space)
    meta = next(path for path in sharded_dir.glob("*.json")
                if path.read_text().find(broken) >= 0 and not path.name.endswith(".shards.json"))
    meta.write_text("{ truncated")
    fresh = ShardedIndex(catalogue.space, LocalShards(sharded_dir, catalogue.space, 3))
    with session_scope(catalogue.factory) as session:
        result = fresh.nearest(session, query, 10)
        held_by_others = [label for label in catalogue.vectors
                          if not ShardPart(1, 3).holds(np.array([catalogue.canvas_of[label]]))[0]]
        assert result.unavailable == (2,)
        assert [label for label, _ in result.hits] == catalogue.exact_top(query, 10, held_by_others)
        ranking = visual_ranking(session, fresh, query, 10)
        assert ranking.unavailable == (2,)


def test_text_spaces_are_not_sharded(session_factory, tmp_path):
    with session_scope(session_factory) as session:
        with pytest.raises(ValueError, match="stays one index"):
            sync_space(session, tmp_path, "text:minilm@1", shards=2)


def test_index_commands_shard_verify_and_report(catalogue, db_url, tmp_path):
    import json

    from click.testing import CliRunner

    from manuscripts_search.cli import cli

    env = {"MSEARCH_DATA_DIR": str(tmp_path / "data"), "MSEARCH_DB": db_url}

    def run(*args, code=0):
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.stdout if code == 0 else result.output

    report = json.loads(run("index", "--no-text", "--shards", "3", "--json"))["indexes"][0]
    assert (report["shards"], report["total"], report["resharded_from"]) == (3, len(catalogue.vectors), 1)
    assert sum(report["per_shard"]) == report["total"] and min(report["per_shard"]) > 0
    assert "in 3 shards" in run("index", "--no-text")  # a sync keeps the count
    verified = json.loads(run("index", "verify", "--deep", "--json"))[0]
    assert verified["ok"] and verified["shards"] == 3 and [e["shard"] for e in verified["per_shard"]] == [
        "1/3", "2/3", "3/3"]
    stats = json.loads(run("stats", "--json"))
    assert [(s["shards"], s["vectors"]) for s in stats["indexes"]["spaces"]] == [(3, len(catalogue.vectors))]
    assert "in 2 shards" in run("index", "rebuild", "--shards", "2")
    assert json.loads(run("index", "verify", "--json"))[0]["shards"] == 2
    assert "Invalid value for '--shards'" in run("index", "--no-text", "--shards", "0", code=2)
    # No Ray cluster listens there: a clear message, not a traceback. In a fresh process, as a user
    # runs it (this test process may already hold the test session's Ray).
    import subprocess
    import sys

    finished = subprocess.run([sys.executable, "-m", "manuscripts_search", "shards", "status", "--address",
                               "127.0.0.1:9"], env={**os.environ, **env}, capture_output=True, text=True,
                              timeout=120)
    assert finished.returncode == 1 and "cannot reach the Ray cluster" in finished.stderr, finished.stderr[-2000:]
    assert "Traceback" not in finished.stderr
