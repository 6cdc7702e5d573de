"""The HNSW index: contents, persistence (atomic, crash-safe), reload on change, filtered k-NN
that returns k results, and its synchronisation with the database."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from manuscripts_search.index.layouts import new_index, open_index
from manuscripts_search.index.live import LiveIndex
from manuscripts_search.index.vector_index import (IndexParams, IndexReadError, index_paths,
                                      index_signature, remove_stale_temporaries)
from manuscripts_search.search.knn import knn

SPACE = "test/model@abc"


def unit_vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def exact_top(vectors: np.ndarray, labels: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scores = vectors @ query
    return [int(labels[i]) for i in np.argsort(-scores, kind="stable")[:k]]


# -- contents -----------------------------------------------------------------------------------

def test_query_returns_nearest_labels_with_cosine_scores():
    vectors = unit_vectors(500)
    index = new_index(SPACE, 16)
    index.add(range(1000, 1500), vectors)
    hits = index.query(vectors[7], 5)
    assert hits[0][0] == 1007 and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    expected = exact_top(vectors, np.arange(1000, 1500), vectors[7], 5)
    assert [label for label, _ in hits] == expected
    for label, score in hits:
        assert score == pytest.approx(float(vectors[label - 1000] @ vectors[7]), abs=1e-5)


def test_capacity_grows_and_removed_labels_are_never_returned():
    vectors = unit_vectors(3000)
    index = new_index(SPACE, 16, capacity=16)
    for start in range(0, 3000, 100):  # many small incremental adds
        index.add(range(start, start + 100), vectors[start:start + 100])
    assert len(index) == 3000
    removed = set(range(0, 3000, 3))
    assert index.remove(removed) == len(removed)
    assert index.remove(removed) == 0  # idempotent
    assert len(index) == 2000 and index.deleted_count == 1000
    for query in vectors[:50]:
        assert not {label for label, _ in index.query(query, 20)} & removed
    # k larger than what is live: every live label once, none removed.
    small = new_index(SPACE, 16)
    small.add(range(10), vectors[:10])
    small.remove([0, 1, 2])
    assert sorted(label for label, _ in small.query(vectors[0], 50)) == list(range(3, 10))


def test_a_removed_label_added_again_comes_back_with_its_new_vector():
    vectors = unit_vectors(20)
    index = new_index(SPACE, 16)
    index.add(range(20), vectors)
    index.remove([5])
    index.add([5], vectors[9:10])
    assert 5 in index and len(index) == 20
    assert {label for label, _ in index.query(vectors[9], 2)} == {5, 9}


def test_bad_input_is_refused_with_a_clear_error():
    index = new_index(SPACE, 16)
    with pytest.raises(ValueError, match=r"shape \(2, 16\)"):
        index.add([1, 2], unit_vectors(2, dim=8))
    with pytest.raises(ValueError, match="NaN"):
        index.add([1], np.full((1, 16), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="unique"):
        index.add([1, 1], unit_vectors(2))
    index.add([1], unit_vectors(1))
    with pytest.raises(ValueError, match="8 dimensions"):
        index.query(np.ones(8, dtype=np.float32), 1)
    with pytest.raises(ValueError, match="M must be"):
        IndexParams(M=1)
    with pytest.raises(ValueError, match="zero"):
        knn(index, np.zeros(16, dtype=np.float32), 1)


# -- persistence --------------------------------------------------------------------------------

def test_save_and_load_keep_labels_deletions_and_parameters(tmp_path):
    vectors = unit_vectors(400)
    index = new_index(SPACE, 16, IndexParams(M=12, ef_construction=80, ef_search=40))
    index.add(range(400), vectors)
    index.remove(range(0, 400, 2))
    index.save(tmp_path)
    loaded = open_index(tmp_path, SPACE)
    assert loaded.params == IndexParams(M=12, ef_construction=80, ef_search=40)
    assert loaded.labels() == set(range(1, 400, 2)) and len(loaded) == 200
    assert [h[0] for h in loaded.query(vectors[3], 5)] == [h[0] for h in index.query(vectors[3], 5)]
    meta = json.loads(index_paths(tmp_path, SPACE)[1].read_text())
    assert (meta["space"], meta["dim"], meta["count"]) == (SPACE, 16, 200)
    assert open_index(tmp_path, "other@space") is None
    assert open_index(tmp_path, SPACE, ef_search=300).params.ef_search == 300


def test_unreadable_files_raise_a_read_error_that_says_to_rebuild(tmp_path):
    index = new_index(SPACE, 16)
    index.add(range(50), unit_vectors(50))
    index.save(tmp_path)
    graph, meta = index_paths(tmp_path, SPACE)
    graph.write_bytes(graph.read_bytes()[:1000])  # truncated
    with pytest.raises(IndexReadError, match="msearch index rebuild"):
        open_index(tmp_path, SPACE)
    index.save(tmp_path)
    meta.write_text("{not json")
    with pytest.raises(IndexReadError, match="metadata"):
        open_index(tmp_path, SPACE)


def test_a_save_interrupted_between_its_two_renames_never_serves_deleted_vectors(tmp_path):
    vectors = unit_vectors(300)
    old = new_index(SPACE, 16)
    old.add(range(200), vectors[:200])
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old.save(old_dir)
    new = open_index(old_dir, SPACE)
    new.remove([7, 8, 9])
    new.add(range(200, 300), vectors[200:])
    new.save(new_dir)
    old_graph, old_meta = index_paths(old_dir, SPACE)
    new_graph, new_meta = index_paths(new_dir, SPACE)

    # New graph, previous metadata (the graph is renamed first): the graph's own marks hide 7-9.
    mixed = tmp_path / "graph-first"
    mixed.mkdir()
    (mixed / new_graph.name).write_bytes(new_graph.read_bytes())
    (mixed / old_meta.name).write_bytes(old_meta.read_bytes())
    loaded = open_index(mixed, SPACE)
    assert not {label for label, _ in loaded.query(vectors[8], 20)} & {7, 8, 9}
    # New metadata with the previous graph (a reader racing a writer): deletions are re-applied.
    other = tmp_path / "meta-first"
    other.mkdir()
    (other / old_graph.name).write_bytes(old_graph.read_bytes())
    (other / new_meta.name).write_bytes(new_meta.read_bytes())
    loaded = open_index(other, SPACE)
    assert not {label for label, _ in loaded.query(vectors[8], 20)} & {7, 8, 9}
    assert {7, 8, 9}.isdisjoint(loaded.labels())


_SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    from manuscripts_search.index.layouts import open_index

    directory, space = sys.argv[1], sys.argv[2]
    index = open_index(directory, space, writable=True)
    rng = np.random.default_rng(1)
    next_label = 100_000
    while True:
        vectors = rng.standard_normal((500, index.dim)).astype(np.float32)
        index.add(range(next_label, next_label + 500), vectors)
        next_label += 500
        print("saving", flush=True)
        index.save(directory)
""")


def test_killing_the_writer_during_saves_never_breaks_the_index(tmp_path):
    base_vectors = unit_vectors(20_000, dim=128)
    index = new_index(SPACE, 128, IndexParams(M=8, ef_construction=16))
    index.add(range(20_000), base_vectors)
    index.save(tmp_path)  # about 14 MB: a save takes tens of milliseconds
    rng = np.random.default_rng(3)
    interrupted_saves = 0
    for attempt in range(8):
        process = subprocess.Popen([sys.executable, "-c", _SAVER, str(tmp_path), SPACE],
                                   stdout=subprocess.PIPE, text=True,
                                   cwd=Path(__file__).resolve().parents[1])
        try:
            for _ in range(attempt % 2 + 1):
                assert process.stdout.readline().strip() == "saving"
            time.sleep(float(rng.uniform(0.0, 0.03)))  # inside the save that just began
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
            process.stdout.close()
        interrupted_saves += bool(list(tmp_path.glob(".*.tmp-*")))
        remove_stale_temporaries(tmp_path, older_than_s=0)
        loaded = open_index(tmp_path, SPACE)  # must never raise
        assert len(loaded) >= 20_000 and len(loaded) % 500 == 0
        assert loaded.query(base_vectors[42], 1)[0][0] == 42
        assert loaded.labels() == set(range(20_000)) | set(range(100_000, 100_000 + len(loaded) - 20_000))
    # The kills really landed inside saves (a temporary file was left behind), not only between.
    assert interrupted_saves >= 1
    assert not list(tmp_path.glob(".*.tmp-*"))


# -- readers: reload on change ------------------------------------------------------------------

def test_live_index_picks_up_adds_and_deletes_without_restart(tmp_path):
    vectors = unit_vectors(100)
    writer = new_index(SPACE, 16)
    writer.add(range(50), vectors[:50])
    writer.save(tmp_path)
    reader = LiveIndex(tmp_path, SPACE, check_interval=0)
    first = reader.get()
    assert len(first) == 50 and reader.get() is first  # unchanged files: the same object
    signature = index_signature(tmp_path, SPACE)

    writer.add(range(50, 100), vectors[50:])
    writer.remove([3])
    writer.save(tmp_path)
    assert index_signature(tmp_path, SPACE) != signature
    second = reader.get()
    assert second is not first and len(second) == 99 and reader.reloads == 1
    assert second.query(vectors[77], 1)[0][0] == 77
    assert 3 not in {label for label, _ in second.query(vectors[3], 10)}
    assert len(first) == 50  # a query holding the old copy is not disturbed


def test_queries_are_answered_from_the_index_in_service_while_another_thread_reloads(tmp_path, monkeypatch):
    import threading

    vectors = unit_vectors(40)
    writer = new_index(SPACE, 16)
    writer.add(range(20), vectors[:20])
    writer.save(tmp_path)
    reader = LiveIndex(tmp_path, SPACE, check_interval=0)
    served = reader.get()
    writer.add(range(20, 40), vectors[20:])
    writer.save(tmp_path)

    loading, release = threading.Event(), threading.Event()
    from manuscripts_search.index import live

    real_load = live.open_index

    def slow_load(*args, **kwargs):  # a big index takes seconds to read
        loading.set()
        assert release.wait(10)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(live, "open_index", slow_load)
    reloaded = []
    loader = threading.Thread(target=lambda: reloaded.append(reader.get()))
    loader.start()
    try:
        assert loading.wait(10)
        started = time.monotonic()
        assert reader.get() is served and reader.current is served  # not queued behind the reload
        assert time.monotonic() - started < 1
    finally:
        release.set()
        loader.join(10)
    assert len(reloaded[0]) == 40 and reader.current is reloaded[0] and reader.reloads == 1


def test_live_index_keeps_serving_when_the_new_files_are_unreadable(tmp_path, caplog):
    writer = new_index(SPACE, 16)
    writer.add(range(10), unit_vectors(10))
    writer.save(tmp_path)
    reader = LiveIndex(tmp_path, SPACE, check_interval=0)
    served = reader.get()
    graph, _ = index_paths(tmp_path, SPACE)
    graph.write_bytes(b"garbage")
    assert reader.get() is served
    assert "cannot reload" in caplog.text
    fresh = LiveIndex(tmp_path, SPACE, check_interval=0)
    with pytest.raises(IndexReadError):
        fresh.get()
    for path in index_paths(tmp_path, SPACE):
        path.unlink()
    assert reader.get() is None


# -- filtered k-NN --------------------------------------------------------------------------------

@pytest.mark.parametrize("fraction", [0.5, 0.05, 0.004])
@pytest.mark.parametrize("strategy", [None, "exact", "overfetch", "filtered"])
def test_filtered_knn_returns_k_allowed_results(fraction, strategy):
    vectors = unit_vectors(5000, dim=24, seed=4)
    labels = np.arange(10_000, 15_000)
    index = new_index(SPACE, 24, IndexParams(M=16, ef_construction=100, ef_search=32))
    index.add(labels, vectors)
    rng = np.random.default_rng(9)
    allowed = np.sort(rng.choice(labels, size=int(5000 * fraction), replace=False))
    allowed_rows = allowed - 10_000
    lookup = dict(zip(labels.tolist(), vectors))
    found_total = 0
    for query in unit_vectors(20, dim=24, seed=5):
        result = knn(index, query, 10, allowed=allowed, strategy=strategy,
                     vectors_of=lambda ids: np.stack([lookup[int(i)] for i in ids]))
        hits = [label for label, _ in result.hits]
        assert len(hits) == 10, (strategy, result.strategy)  # never starved by the filter
        assert set(hits) <= set(allowed.tolist())
        found_total += len(set(hits) & set(exact_top(vectors[allowed_rows], allowed, query, 10)))
    assert found_total / 200 >= 0.9


def test_filtered_knn_without_enough_allowed_returns_all_of_them():
    vectors = unit_vectors(300)
    index = new_index(SPACE, 16)
    index.add(range(300), vectors)
    index.remove([1])
    result = knn(index, vectors[0], 10, allowed=np.array([1, 2, 3, 400]))
    assert sorted(label for label, _ in result.hits) == [2, 3]
    assert knn(index, vectors[0], 10, allowed=np.array([], dtype=np.int64)).hits == []
