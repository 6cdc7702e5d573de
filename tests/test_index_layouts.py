"""Every index layout behind the one interface (manuscripts_search/index/): the same answers on
the same score scale, removals, filtered k-NN that returns k, atomic generation-named saves,
memory-mapped read-only opening, and the choice of a layout by memory budget."""
from __future__ import annotations

import numpy as np
import pytest

from manuscripts_search.index.layouts import (IVF_LAYOUTS, LAYOUTS, choose_layout, estimate_bytes, new_index,
                                              open_index, parse_memory)
from manuscripts_search.index.live import LiveIndex
from manuscripts_search.index.vector_index import IndexReadError, generation_path, index_paths, read_metadata
from manuscripts_search.search.knn import knn

SPACE = "test/layouts@abc"
DIM = 32
N = 3000
# recall@10 on this small clustered set at the default effort; hnsw-i8 is the low-memory last resort.
MIN_RECALL = {"hnsw": 0.99, "hnsw-f16": 0.98, "hnsw-i8": 0.85, "ivfpq": 0.9, "ivf-rabitq": 0.9}
# |score - exact cosine| allowed: float32 and float16 are exact to rounding, 8-bit storage is not.
SCORE_TOLERANCE = {"hnsw": 1e-5, "hnsw-f16": 2e-3, "hnsw-i8": 3e-2, "ivfpq": 3e-2, "ivf-rabitq": 3e-2}


def clustered(n: int, seed: int, dim: int = DIM, clusters: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((clusters, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, clusters, n)] + 0.45 * rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


DATA = clustered(N, seed=1)
LABELS = np.arange(10_000, 10_000 + N, dtype=np.int64)
QUERIES = clustered(40, seed=2)


def exact_top(query: np.ndarray, k: int = 10, allowed: np.ndarray | None = None) -> list[int]:
    mask = np.ones(N, dtype=bool) if allowed is None else np.isin(LABELS, allowed)
    scores = np.where(mask, DATA @ query, -np.inf)
    return [int(LABELS[i]) for i in np.argsort(-scores, kind="stable")[:k]]


@pytest.fixture(scope="module", params=list(LAYOUTS))
def built(request, tmp_path_factory):
    """(layout, index built in memory, directory it was saved to)."""
    index = new_index(SPACE, DIM, capacity=N, layout=request.param)
    index.train(DATA)
    for start in range(0, N, 1000):
        index.add(LABELS[start:start + 1000], DATA[start:start + 1000])
    directory = tmp_path_factory.mktemp(request.param)
    index.save(directory)
    return request.param, index, directory


def test_every_layout_finds_the_neighbours_with_cosine_scores(built):
    layout, index, directory = built
    assert index.layout == layout and len(index) == N and index.dim == DIM
    reader = open_index(directory, SPACE)
    assert reader.layout == layout and len(reader) == N
    assert np.array_equal(reader.live_label_array(), LABELS)
    hits = []
    for query in QUERIES:
        found = reader.query(query, 10)
        assert len(found) == 10
        assert [score for _, score in found] == sorted((score for _, score in found), reverse=True)
        for label, score in found:  # the score is the cosine with the stored vector, whatever the layout
            assert score == pytest.approx(float(DATA[label - 10_000] @ query), abs=SCORE_TOLERANCE[layout])
        hits.append(len({label for label, _ in found} & set(exact_top(query))) / 10)
    assert np.mean(hits) >= MIN_RECALL[layout], (layout, np.mean(hits))
    top = reader.query(DATA[17], 1)[0]
    assert top[0] == LABELS[17] and top[1] == pytest.approx(1.0, abs=SCORE_TOLERANCE[layout])


@pytest.mark.parametrize("fraction, strategy", [(0.003, "filtered"), (0.05, "overfetch"), (0.003, None)])
def test_filtered_knn_returns_k_allowed_results_on_every_layout(built, fraction, strategy):
    layout, _index, directory = built
    reader = open_index(directory, SPACE)
    rng = np.random.default_rng(5)
    allowed = np.sort(rng.choice(LABELS, max(12, int(N * fraction)), replace=False))
    for query in QUERIES[:8]:
        result = knn(reader, query, 10, allowed=allowed, strategy=strategy)
        labels = [label for label, _ in result.hits]
        assert len(labels) == 10 and set(labels) <= set(allowed.tolist()), (layout, result.strategy)
        overlap = len(set(labels) & set(exact_top(query, 10, allowed))) / 10
        assert overlap >= (0.8 if layout in ("hnsw-i8", *IVF_LAYOUTS) else 0.9), (layout, strategy, overlap)
    few = allowed[:3]  # fewer allowed than k: all of them, and nothing else, whatever the graph reaches
    for query in QUERIES:
        assert sorted(label for label, _ in knn(reader, query, 10, allowed=few).hits) == sorted(few.tolist())


def test_removed_vectors_are_never_returned_and_come_back_when_added_again(built, tmp_path):
    layout, _index, directory = built
    writer = open_index(directory, SPACE, writable=True)
    removed = LABELS[::7]
    assert writer.remove(removed.tolist()) == len(removed)
    assert writer.remove(removed.tolist()) == 0  # idempotent
    assert len(writer) == N - len(removed) and int(removed[0]) not in writer
    for query in QUERIES[:10]:
        assert not {label for label, _ in writer.query(query, 30)} & set(removed.tolist())
    replacement = clustered(1, seed=77)
    writer.add([int(removed[0])], replacement)  # back, with a new vector
    assert writer.query(replacement[0], 1)[0][0] == removed[0]
    writer.save(tmp_path)
    reader = open_index(tmp_path, SPACE)
    assert len(reader) == N - len(removed) + 1
    assert reader.query(replacement[0], 1)[0][0] == removed[0]
    assert not {label for label, _ in reader.query(DATA[7], 20)} & set(removed[1:].tolist())


def test_stored_vectors_agree_with_the_originals_within_the_layouts_tolerance(built):
    layout, _index, directory = built
    reader = open_index(directory, SPACE)
    held = reader.stored_vectors(np.array([LABELS[0], LABELS[123], 999_999]))
    assert np.isnan(held[2]).all()  # not in the index
    for row, original in zip(held[:2], DATA[[0, 123]]):
        assert float(row @ original) >= reader.verify_cosine


def test_read_only_layouts_are_memory_mapped_and_refuse_writes(built):
    layout, _index, directory = built
    reader = open_index(directory, SPACE)
    with open("/proc/self/maps") as handle:
        maps = handle.read()
    data_files = [path for path in reader.file_paths(directory) if path.suffix != ".json"]
    mapped = [path for path in data_files if str(path) in maps]
    if layout == "hnsw":
        assert not mapped  # hnswlib reads its graph into memory; nothing to share
        return
    assert mapped, (layout, data_files)  # the pages of the file itself: shared between processes
    with pytest.raises(RuntimeError, match="read-only"):
        reader.add([1], DATA[:1])


def test_saves_are_committed_by_the_metadata_and_old_generations_go(built, tmp_path):
    layout, _index, directory = built
    writer = open_index(directory, SPACE, writable=True)
    writer.save(tmp_path)
    if layout == "hnsw":  # one graph file replaced in place (tests/test_index.py: its crash safety)
        assert sorted(p.suffix for p in tmp_path.iterdir() if not p.name.startswith(".")) == [".hnsw", ".json"]
        assert "generation" not in read_metadata(tmp_path, SPACE)
        return
    first = read_metadata(tmp_path, SPACE)["generation"]
    reader = open_index(tmp_path, SPACE)  # maps generation `first`
    writer.add([1], clustered(1, seed=3))
    writer.save(tmp_path)
    assert read_metadata(tmp_path, SPACE)["generation"] == first + 1
    names = sorted(path.name for path in tmp_path.iterdir() if not path.name.startswith("."))
    assert all(f".g{first}." not in name for name in names), names  # the older generation is deleted
    assert len(reader.query(DATA[3], 5)) == 5  # ... yet the reader that mapped it still answers
    live = LiveIndex(tmp_path, SPACE, check_interval=0)
    assert len(live.get()) == len(reader) + 1
    # A torn save (data written, metadata not yet replaced) is invisible: the old metadata rules.
    for path in writer.file_paths(tmp_path)[1:]:
        suffix = path.name.split(f".g{first + 1}.", 1)[1]
        generation_path(tmp_path, SPACE, first + 2, suffix).write_bytes(b"half a file")
    assert len(open_index(tmp_path, SPACE)) == len(reader) + 1


def test_missing_or_foreign_data_files_raise_a_read_error_that_says_to_rebuild(built, tmp_path):
    layout, _index, directory = built
    writer = open_index(directory, SPACE, writable=True)
    writer.save(tmp_path)
    data = [path for path in writer.file_paths(tmp_path) if path.suffix != ".json"]
    data[0].write_bytes(b"\0" * 64)
    with pytest.raises(IndexReadError, match="msearch index rebuild"):
        open_index(tmp_path, SPACE)


def test_converting_layouts_replaces_the_other_layouts_files(tmp_path):
    hnsw = new_index(SPACE, DIM, capacity=N)
    hnsw.add(LABELS[:500], DATA[:500])
    hnsw.save(tmp_path)
    f16 = new_index(SPACE, DIM, capacity=N, layout="hnsw-f16")
    f16.add(LABELS[:500], DATA[:500])
    f16.save(tmp_path)
    assert not index_paths(tmp_path, SPACE)[0].exists()  # the hnsw graph went with the conversion
    assert open_index(tmp_path, SPACE).layout == "hnsw-f16"
    hnsw.save(tmp_path)  # and back
    assert open_index(tmp_path, SPACE).layout == "hnsw"
    assert [p.name for p in tmp_path.iterdir() if ".g" in p.name] == []


# -- choosing a layout by memory budget ------------------------------------------------------------

def test_auto_takes_the_best_recall_that_fits_the_budget():
    gib = 1024 ** 3
    small = choose_layout(100_000, 768, 8 * gib)
    assert small.layout == "hnsw" and "within the 8.0 GiB budget" in small.reason
    assert choose_layout(3_000_000, 768, 8 * gib).layout == "hnsw-f16"  # ~10 GB as float32
    ten_million = choose_layout(10_000_000, 768, 12 * gib)
    assert ten_million.layout == "ivf-rabitq" and "hnsw, hnsw-f16 would need more" in ten_million.reason
    # ivfpq's 8 bytes less per vector: taken when they make the difference.
    between = (estimate_bytes("ivfpq", 10_000_000, 768) + estimate_bytes("ivf-rabitq", 10_000_000, 768)) / 2 / 0.8
    squeezed = choose_layout(10_000_000, 768, int(between))
    assert squeezed.layout == "ivfpq" and "ivf-rabitq would need more" in squeezed.reason
    assert ten_million.estimate_bytes < 2 * gib
    # Too few vectors to train IVF: a graph, even when only the 8-bit one fits.
    assert choose_layout(15_000, 768, 30 * 1024 ** 2).layout == "hnsw-i8"
    nothing = choose_layout(1_000_000_000, 768, gib)
    assert nothing.layout == "ivfpq" and "no layout fits" in nothing.reason and "MSEARCH_INDEX_MEMORY" in nothing.reason
    for layout in LAYOUTS:
        assert estimate_bytes(layout, 2_000_000, 768) > estimate_bytes(layout, 1_000_000, 768)


@pytest.mark.parametrize("text, expected", [("8GiB", 8 * 1024 ** 3), ("512 MB", 512 * 10 ** 6), ("2g", 2 * 10 ** 9),
                                            ("1000000", 10 ** 6), ("1.5GiB", int(1.5 * 1024 ** 3))])
def test_memory_sizes_parse(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-1GB", "0", "8 GiBs", "1e9"])
def test_bad_memory_sizes_are_refused(text):
    with pytest.raises(ValueError, match="memory size"):
        parse_memory(text)


def test_the_budget_setting_is_checked_with_the_settings_name():
    from manuscripts_search.config import ConfigError, load_config

    assert load_config({"MSEARCH_INDEX_MEMORY": "6GiB"}).index_memory == 6 * 1024 ** 3
    assert load_config({}).index_memory is None
    with pytest.raises(ConfigError, match="MSEARCH_INDEX_MEMORY"):
        load_config({"MSEARCH_INDEX_MEMORY": "plenty"})


@pytest.mark.parametrize("layout", IVF_LAYOUTS)
@pytest.mark.parametrize("count", [1, 2, 5, 40])
def test_ivf_layouts_work_for_a_space_of_a_few_vectors(count, layout, tmp_path):
    index = new_index(SPACE, DIM, capacity=count, layout=layout)
    index.add(LABELS[:count], DATA[:count])
    index.save(tmp_path)
    reader = open_index(tmp_path, SPACE)
    assert len(reader) == count
    hits = reader.query(DATA[count - 1], 10)
    assert len(hits) == min(count, 10) and hits[0][0] == LABELS[count - 1]
    assert hits[0][1] == pytest.approx(1.0, abs=SCORE_TOLERANCE[layout])


def test_ivfpq_indexes_whose_lists_hold_labels_still_read_write_and_filter(tmp_path):
    """Saves before the faiss ids were row numbers held labels in the lists and no ``ids`` key in
    the metadata; such an index answers, filters, removes and re-adds as a new one does."""
    import json

    older = new_index(SPACE, DIM, capacity=N, layout="ivfpq")
    older._ids_are_rows = False  # noqa: SLF001 - what the code before row ids wrote
    older.train(DATA)
    older.add(LABELS, DATA)
    older.save(tmp_path)
    _graph, meta_path = index_paths(tmp_path, SPACE)
    meta = json.loads(meta_path.read_text())
    assert meta.pop("ids") == "labels"
    meta_path.write_text(json.dumps(meta))
    reader = open_index(tmp_path, SPACE)
    assert "ids" not in read_metadata(tmp_path, SPACE)
    hits = [len({label for label, _ in reader.query(query, 10)} & set(exact_top(query))) / 10 for query in QUERIES]
    assert np.mean(hits) >= MIN_RECALL["ivfpq"]
    allowed = LABELS[::300]
    for query in QUERIES[:5]:
        assert sorted(label for label, _ in reader.query(query, 10, allowed=allowed)) == sorted(allowed.tolist())
    writer = open_index(tmp_path, SPACE, writable=True)
    assert writer.remove(LABELS[:5].tolist()) == 5
    writer.add([int(LABELS[0])], DATA[1:2])  # back, with another vector
    writer.save(tmp_path)
    again = open_index(tmp_path, SPACE)
    assert read_metadata(tmp_path, SPACE)["ids"] == "labels"  # still labels until a rebuild
    assert len(again) == N - 4
    assert again.query(DATA[1], 1)[0][0] == LABELS[0]  # LABELS[1] itself is gone
    for row in range(1, 5):
        assert not {label for label, _ in again.query(DATA[row], 20)} & set(LABELS[1:5].tolist())


@pytest.mark.parametrize("built", IVF_LAYOUTS, indirect=True)
def test_ivf_layouts_filter_by_labels_they_do_not_hold_and_answer_with_labels_not_rows(built):
    _layout, _index, directory = built
    assert read_metadata(directory, SPACE)["ids"] == "rows"
    reader = open_index(directory, SPACE)
    query = DATA[42]
    # Allowed labels it does not hold (below, between and above its labels) are ignored.
    allowed = np.array([5, int(LABELS[42]), int(LABELS[43]), 10_000 + N + 5], dtype=np.int64)
    assert {label for label, _ in reader.query(query, 10, allowed=allowed)} == {int(LABELS[42]), int(LABELS[43])}
    assert reader.query(query, 10, allowed=np.array([1, 2, 3], dtype=np.int64)) == []
    assert reader.query(query, 1)[0][0] == LABELS[42]


@pytest.mark.parametrize("built", IVF_LAYOUTS, indirect=True)
def test_the_8_bit_copy_of_the_training_vectors_clips_no_dimension(built):
    """Every dimension of every training vector lies within the 8-bit range: its copy is within
    half a step of it (clipping at quantiles put about one dimension of each 768-d vector out)."""
    _layout, _index, directory = built
    reader = open_index(directory, SPACE)
    decoded = reader._decode(reader._codes_of(reader._rows_of(LABELS)))  # noqa: SLF001
    step = reader._quant[1]  # noqa: SLF001
    assert (np.abs(decoded - DATA) <= step / 2 + 1e-6).all()
