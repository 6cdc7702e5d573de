"""The product's search behaves the same on every index layout: the trained tiny CLIP finds red
circles, filters still return k results, pages slice one ordering, "more like this" and
verification work — on SQLite and PostgreSQL (the catalogue is tests/helpers/search_library.py's)."""
from __future__ import annotations

import dataclasses
import shutil

import pytest

from manuscripts_search.index.layouts import LAYOUTS, open_index
from manuscripts_search.index.sync import rebuild_index, sync_index, verify_index
from manuscripts_search.search.filters import SearchFilters
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
from tests.helpers.search_library import Library, build_library


@pytest.fixture(scope="module")
def catalogue(module_db_url, tmp_path_factory, trained_clip_encoder, text_encoder) -> Library:
    engine = make_engine(module_db_url)
    upgrade_database(engine)
    yield build_library(make_sessionmaker(engine), tmp_path_factory.mktemp("layouts-hnsw"), trained_clip_encoder,
                        text_encoder)
    engine.dispose()


@pytest.fixture(scope="module", params=list(LAYOUTS))
def library(request, catalogue, tmp_path_factory) -> Library:
    """The catalogue with its image index converted to one layout (its own index directory)."""
    directory = tmp_path_factory.mktemp(f"layouts-{request.param}")
    shutil.copytree(catalogue.index_dir, directory, dirs_exist_ok=True)
    with session_scope(catalogue.factory) as session:
        report = rebuild_index(session, directory, catalogue.encoder.space_id, layout=request.param)
    assert report.layout == request.param and report.rebuilt
    return dataclasses.replace(catalogue, index_dir=directory)


def canvas_ids(page) -> list[int]:
    return [hit.canvas_id for hit in page.hits]


def test_the_index_is_the_layout_asked_for_and_verifies_deep(library):
    index = open_index(library.index_dir, library.encoder.space_id)
    assert index.layout in LAYOUTS and len(index) > 30
    with session_scope(library.factory) as session:
        result = verify_index(session, library.index_dir, library.encoder.space_id, deep=True)
        assert result["ok"] and result["layout"] == index.layout and result["vectors_checked"] == len(index), result
        # Nothing changed: a sync keeps the layout and saves nothing.
        assert sync_index(session, library.index_dir, library.encoder.space_id).as_dict()["added"] == 0
    assert open_index(library.index_dir, library.encoder.space_id).layout == index.layout


def test_a_text_query_finds_the_red_circles_first(library):
    page = library.search(text="a red circle", signals=("visual",), limit=3)
    assert set(canvas_ids(page)) == {library.canvases["red1"], library.canvases["red2"], library.canvases["grid"]}
    assert page.score == "cosine"
    scores = [hit.score for hit in page.hits]
    assert scores == sorted(scores, reverse=True) and all(0 < score <= 1.0001 for score in scores)
    grid = next(hit for hit in page.hits if hit.canvas_id == library.canvases["grid"])
    assert grid.xywh == library.regions["red circle"][1]  # the region, not only the page


def test_a_selective_filter_still_returns_k_results(library):
    sampler = {library.canvases[f"filler{n}"] for n in range(24)}
    filters = SearchFilters(manifests=(str(library.manifests["sampler"]),))
    # weaker: no red in the sampler, so every page of it scores below the floor.
    page = library.search(text="a red circle", signals=("visual",), filters=filters, limit=10, weaker=True)
    assert len(page.hits) == 10 and set(canvas_ids(page)) <= sampler and page.has_more


def test_pages_are_slices_of_one_stable_ordering(library):
    everything = canvas_ids(library.search(text="a green square", signals=("visual",), limit=40, weaker=True))
    pages, offset = [], 0
    while True:
        page = library.search(text="a green square", signals=("visual",), limit=7, offset=offset, weaker=True)
        pages += canvas_ids(page)
        if not page.has_more:
            break
        offset += 7
    assert pages == everything and len(pages) == len(set(pages)) == 30


def test_more_like_this_canvas(library):
    page = library.search(like_canvas_id=library.canvases["red1"], limit=2)
    assert library.canvases["red1"] not in canvas_ids(page)
    assert canvas_ids(page)[0] in {library.canvases["red2"], library.canvases["grid"]}
