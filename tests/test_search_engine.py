"""The search engine end to end on a real database (SQLite or PostgreSQL, per MSEARCH_TEST_DB),
real HNSW indexes, the tiny trained CLIP and the real MiniLM: the right canvases and regions first,
filters that still return k, fusion with explanations, grouping, stable pages, "more like this",
image queries, incremental changes seen without restart, and open-set classification."""
from __future__ import annotations

import pytest
from sqlalchemy import update

from manuscripts_search.search.classification import (ClassificationError, add_image_prototype, add_text_prototype,
                                               classify_canvases, get_or_create_category)
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
from manuscripts_search.search.filters import SearchFilters, parse_filter_options
from manuscripts_search.index.live import LiveIndex
from manuscripts_search.index.sync import sync_index, verify_index
from manuscripts_search.models import Canvas, Embedding
from manuscripts_search.search.engine import SearchContext, SearchError, SearchRequest, run_search
from tests.helpers.model_factory import render_shape
from tests.helpers.search_library import FILLER_CLASSES, Library, add_canvas, build_library


@pytest.fixture(scope="module")
def library(module_db_url, tmp_path_factory, trained_clip_encoder, text_encoder) -> Library:
    engine = make_engine(module_db_url)
    upgrade_database(engine)
    yield build_library(make_sessionmaker(engine), tmp_path_factory.mktemp("search-index"), trained_clip_encoder,
                        text_encoder)
    engine.dispose()


def canvas_ids(page) -> list[int]:
    return [hit.canvas_id for hit in page.hits]


# -- visual: the right canvases and regions first --------------------------------------------------

def test_text_query_ranks_the_canvases_that_show_it_first(library):
    page = library.search(text="a red circle", signals=("visual",), limit=3)
    red = {library.canvases["red1"], library.canvases["red2"], library.canvases["grid"]}
    assert set(canvas_ids(page)) == red
    assert page.score == "cosine" and page.signals == ["visual"]
    scores = [hit.score for hit in page.hits]
    assert scores == sorted(scores, reverse=True)
    page = library.search(text="a blue triangle", signals=("visual",), limit=1)
    assert canvas_ids(page)[0] in {library.canvases["blue"], library.canvases["grid"]}


def test_a_region_hit_comes_back_with_its_box_grouped_under_its_canvas(library):
    page = library.search(text="a red circle", signals=("visual",), limit=10)
    ids = canvas_ids(page)
    assert len(ids) == len(set(ids))  # one entry per canvas, however many of its vectors matched
    grid = next(hit for hit in page.hits if hit.canvas_id == library.canvases["grid"])
    assert grid.xywh == library.regions["red circle"][1]
    assert grid.regions[0].xywh == library.regions["red circle"][1] and grid.regions[0].signal == "visual"
    assert [r.score for r in grid.regions] == sorted((r.score for r in grid.regions), reverse=True)
    assert grid.score == pytest.approx(grid.regions[0].score)
    # The whole-page hits carry no box.
    assert next(hit for hit in page.hits if hit.canvas_id == library.canvases["red1"]).xywh is None


def test_more_like_a_canvas_or_a_region(library):
    page = library.search(like_canvas_id=library.canvases["red1"], limit=2)
    assert library.canvases["red1"] not in canvas_ids(page)  # not itself
    assert canvas_ids(page)[0] in {library.canvases["red2"], library.canvases["grid"]}
    page = library.search(like_region_id=library.regions["red circle"][0], limit=3)
    assert {library.canvases["red1"], library.canvases["red2"]} <= set(canvas_ids(page))
    with pytest.raises(SearchError, match="canvas 999999 has no vector"):
        library.search(like_canvas_id=999_999)


def test_an_image_query_finds_the_canvases_that_look_like_it(library):
    query = render_shape("green", "square", size=120, seed=777)
    page = library.search(image=query, limit=4)
    greens = {library.canvases["green"]} | {library.canvases[f"filler{n}"] for n in range(24)
                                            if FILLER_CLASSES[n % len(FILLER_CLASSES)][0] == "green"}
    greens.add(library.canvases["grid"])  # its top-left quarter is a green square
    assert set(canvas_ids(page)) <= greens
    for hit in page.hits:
        if hit.canvas_id == library.canvases["grid"]:
            assert hit.xywh == library.regions["green square"][1]
    assert page.signals == ["visual"]


# -- filters -------------------------------------------------------------------------------------

@pytest.mark.parametrize("pairs, expected_keys", [
    (["manifest=https://lib.test/herbal/manifest.json"], {"red2", "green", "yellow"}),
    (["collection=https://lib.test/collection/hours"], {"red1", "blue", "grid"}),
    (["provider=bibliotheque MUNICIPALE"], {"red1", "blue", "grid"}),  # accents and case ignored
    (["date-from=1500"], {"red2", "green", "yellow"}),
    (["date-from=1400", "date-to=1450"], {"red1", "blue", "grid"}),
    (["iiif-version=2"], {"red2", "green", "yellow"}),
    (["has-transcription=true"], {"blue", "yellow"}),
])
def test_filters_restrict_results_to_matching_canvases(library, pairs, expected_keys):
    filters = parse_filter_options(pairs)
    # weaker: every canvas the filter allows, red or not (the score floor is tested on its own).
    page = library.search(text="a red circle", signals=("visual",), filters=filters, limit=50, weaker=True)
    assert set(canvas_ids(page)) == {library.canvases[key] for key in expected_keys}


def test_a_selective_filter_still_returns_k_results(library):
    # No red in the sampler: an unfiltered top-10 holds none of its pages, yet 10 come back.
    unfiltered = library.search(text="a red circle", signals=("visual",), limit=10)
    sampler = {library.canvases[f"filler{n}"] for n in range(24)}
    assert not set(canvas_ids(unfiltered)[:3]) & sampler
    filters = SearchFilters(manifests=(str(library.manifests["sampler"]),))
    page = library.search(text="a red circle", signals=("visual",), filters=filters, limit=10, weaker=True)
    assert len(page.hits) == 10 and set(canvas_ids(page)) <= sampler
    assert page.has_more


def test_filter_values_are_checked():
    from manuscripts_search.search.filters import FilterError

    with pytest.raises(FilterError, match="unknown filter 'colour'"):
        parse_filter_options(["colour=red"])
    with pytest.raises(FilterError, match="date-from must be YYYY"):
        parse_filter_options(["date-from=last year"])
    with pytest.raises(FilterError, match="after date-to"):
        parse_filter_options(["date-from=1500", "date-to=1400"])
    with pytest.raises(FilterError, match="name=value"):
        parse_filter_options(["manifest"])
    with pytest.raises(FilterError, match="true or false"):
        parse_filter_options(["has-transcription=maybe"])


# -- text: full-text, semantic, fusion and explanations ----------------------------------------------

def test_fulltext_finds_transcriptions_with_their_box_and_snippet(library):
    page = library.search(text="Pâques", signals=("fulltext",))
    assert canvas_ids(page) == [library.canvases["blue"]]
    hit = page.hits[0]
    assert hit.regions[0].xywh == "10,20,30,8" and hit.regions[0].signal == "fulltext"
    assert "Pâques" in hit.snippets[0] and "<b>" not in hit.snippets[0]
    # Accents are folded on both databases (FTS5's unicode61; msearch_fold on PostgreSQL), both ways.
    assert canvas_ids(library.search(text="paques", signals=("fulltext",))) == [library.canvases["blue"]]
    assert canvas_ids(library.search(text="PÂQUES", signals=("fulltext",))) == [library.canvases["blue"]]


def test_metadata_matches_rank_the_manifests_canvases(library):
    page = library.search(text="Lyon", signals=("fulltext",), limit=50)
    assert set(canvas_ids(page)) == {library.canvases[k] for k in ("red1", "blue", "grid")}
    # Query syntax in user input is searched as words, never interpreted.
    for hostile in ['NEAR("a" OR', "col:text*", "'; DROP TABLE search_documents; --", '"unbalanced']:
        library.search(text=hostile, signals=("fulltext", "visual"))


def test_semantic_text_search_finds_meaning_without_the_words(library):
    page = library.search(text="medicine", signals=("fulltext", "semantic"), limit=10)
    herbal = {library.canvases[k] for k in ("red2", "green", "yellow")}
    assert page.hits and set(canvas_ids(page)[:3]) == herbal
    assert all(set(hit.signals) == {"semantic"} for hit in page.hits[:3])  # no word in common


def test_fusion_explains_which_signal_contributed(library):
    page = library.search(text="red circle from Lyon", limit=5)
    assert page.score == "rrf" and "visual" in page.signals and "fulltext" in page.signals
    top = page.hits[0]
    assert top.canvas_id == library.canvases["red1"]  # red and in the Lyon manuscript: both signals agree
    assert {"visual", "fulltext"} <= set(top.signals)
    assert top.score == pytest.approx(sum(c["contribution"] for c in top.signals.values()), abs=1e-5)
    for name, contribution in top.signals.items():
        assert contribution["contribution"] == pytest.approx(1.0 / (60 + contribution["rank"]), abs=1e-6)
    scores = [hit.score for hit in page.hits]
    assert scores == sorted(scores, reverse=True)


# -- score floors: a query that matches nothing finds nothing ------------------------------------

def test_nonsense_finds_nothing_and_real_words_still_do(library):
    page = library.search(text="zzqxv")
    assert page.hits == [] and page.total == 0 and page.total_exact and page.below_floor
    # Both k-NN signals ran, each with the floor learned from its own space (tiny CLIP; MiniLM).
    assert set(page.floors) == {"visual", "semantic"}
    assert library.search(text="zzqxv", weaker=True).hits  # what the floors held back
    reds = {library.canvases[k] for k in ("red1", "red2", "grid")}
    page = library.search(text="a red circle", limit=10)
    assert set(canvas_ids(page)) == reds and page.total == 3  # the red circles, and nothing else
    medicine = library.search(text="medicine", signals=("semantic",), limit=10)
    assert set(canvas_ids(medicine)) == {library.canvases[k] for k in ("red2", "green", "yellow")}


def test_calibrated_semantic_floor_holds_back_what_a_fixed_one_let_through(library):
    """Nonsense strings the floor was not learned from: MiniLM's old fixed 0.25 let 18 of these 30
    find a "match"; the calibrated floor (the 90th percentile of other nonsense) about 1 in 10."""
    from manuscripts_search.search.calibration import _nonsense_queries
    from tests.helpers.search_library import session_scope

    def finding(floors) -> int:
        found = 0
        with session_scope(library.factory) as session:
            for query in _nonsense_queries(30, seed=99):
                context = library.context(session)
                if floors is not None:
                    context.score_floors = floors
                found += bool(run_search(context, SearchRequest(text=query, signals=("semantic",))).hits)
        return found

    assert finding(None) <= 4
    assert finding({"semantic": 0.25}) >= 12


def test_score_floor_settings_override_the_calibration(library):
    from tests.helpers.search_library import session_scope

    with session_scope(library.factory) as session:
        context = library.context(session)
        context.score_floors = {"visual": None, "semantic": None}  # MSEARCH_SCORE_FLOORS=off
        assert run_search(context, SearchRequest(text="zzqxv", signals=("visual",))).hits
        context.score_floors = {"visual": 0.99}  # stricter than any match
        page = run_search(context, SearchRequest(text="a red circle", signals=("visual",)))
        assert page.hits == [] and page.floors == {"visual": 0.99}
    # Image queries ask for the nearest pictures: no floor.
    assert library.search(like_canvas_id=library.canvases["red1"], limit=40).total == 29


# -- counts: the total, the facets and the window ------------------------------------------------

def test_total_counts_the_whole_result_set_and_says_when_it_is_a_lower_bound(library):
    page = library.search(text="a red circle", signals=("visual",), limit=5, weaker=True)
    assert len(page.hits) == 5 and page.total == 30 and page.total_exact and page.manuscripts == 3
    assert sum(page.facets["iiif_version"].values()) == sum(page.facets["manifest"].values()) == page.total
    # A window smaller than the matches: the total is what was ranked, and said to be a lower bound.
    narrow = library.search(text="a red circle", signals=("visual",), limit=5, weaker=True, window=10)
    assert narrow.total == 10 and not narrow.total_exact


def test_facets_count_collection_institution_date_and_transcription(library):
    page = library.search(text="a red circle", signals=("visual",), limit=5, weaker=True)
    facets = page.facets
    hours, herbal, sampler = (str(library.manifests[k]) for k in ("hours", "herbal", "sampler"))
    assert facets["manifest"] == {sampler: 24, hours: 3, herbal: 3}
    assert list(facets["collection"].values()) == [3]  # the one collection holds the book of hours
    assert facets["provider"] == {"Bibliothèque municipale de Lyon": 3, "Bodleian Libraries": 3}
    assert facets["century"] == {"1400-1499": 3, "1500-1599": 3}  # from navDate
    assert facets["decade"] == {"1450-1459": 3, "1520-1529": 3}
    assert facets["transcription"] == {"true": 2, "false": 28}
    assert facets["iiif_version"] == {"3": 27, "2": 3}
    # Inside a filter the facets count the filtered set.
    filtered = library.search(text="a red circle", signals=("visual",), weaker=True,
                              filters=SearchFilters(has_transcription=True))
    assert filtered.total == 2 and filtered.facets["transcription"] == {"true": 2}
    assert filtered.facets["provider"] == {"Bibliothèque municipale de Lyon": 1, "Bodleian Libraries": 1}


def test_a_metadata_date_dates_a_manuscript_without_navdate(library):
    from sqlalchemy import update as sql_update

    from manuscripts_search.models import Manifest
    from tests.helpers.search_library import session_scope

    with session_scope(library.factory) as session:
        session.execute(sql_update(Manifest).where(Manifest.id == library.manifests["sampler"]).values(
            metadata_entries=[{"label": {"en": ["Date"]}, "value": {"en": ["15th century"]}}]))
    try:
        page = library.search(text="a red circle", signals=("visual",), weaker=True)
        assert page.facets["century"] == {"1400-1499": 27, "1500-1599": 3}
        assert page.facets["decade"] == {"1450-1459": 3, "1520-1529": 3}  # "15th century" names no decade
        # The facet's link filters to what it counted.
        dated = library.search(text="a red circle", signals=("visual",), weaker=True, limit=50,
                               filters=SearchFilters(date_from="1400", date_to="1499"))
        assert dated.total == 27
        assert library.search(text="a red circle", signals=("visual",), weaker=True,
                              filters=SearchFilters(date_from="1500")).total == 3
    finally:
        with session_scope(library.factory) as session:
            session.execute(sql_update(Manifest).where(Manifest.id == library.manifests["sampler"]).values(
                metadata_entries=None))


# -- grouping and pages ------------------------------------------------------------------------------

def test_pages_are_slices_of_one_stable_ordering(library):
    everything = library.search(text="a green square", limit=40, weaker=True)
    pages, offset = [], 0
    while True:
        page = library.search(text="a green square", limit=7, offset=offset, weaker=True)
        pages += canvas_ids(page)
        assert [hit.rank for hit in page.hits] == list(range(offset + 1, offset + 1 + len(page.hits)))
        if not page.has_more:
            break
        offset += 7
    assert pages == canvas_ids(everything) and len(pages) == len(set(pages)) == 30
    assert library.search(text="a green square", limit=7, offset=700, weaker=True).hits == []


def test_results_grouped_by_manifest(library):
    page = library.search(text="a red circle", signals=("visual",), group="manifest", limit=3, weaker=True)
    assert [g.manifest_id for g in page.groups][:2] == sorted(
        [library.manifests["hours"], library.manifests["herbal"]],
        key=lambda m: [g.manifest_id for g in page.groups].index(m))
    assert len({g.manifest_id for g in page.groups}) == len(page.groups) == 3
    first = page.groups[0]
    assert first.canvases[0].canvas_id in {library.canvases[k] for k in ("red1", "red2", "grid")}
    assert first.matching_canvases >= len(first.canvases)
    assert [g.score for g in page.groups] == sorted((g.score for g in page.groups), reverse=True)


def test_one_manuscript_filling_the_page_is_grouped_by_default(library):
    # A metadata match ranks all of a manuscript's pages: 3 of the hours then 3 of the herbal.
    page = library.search(text="Lyon herbal", signals=("fulltext",), limit=2, group="auto")
    assert page.group == "manifest" and page.grouped_automatically
    # (Which comes first is the database's ranking: BM25 on SQLite, ts_rank_cd on PostgreSQL.)
    assert {g.manifest_id for g in page.groups} == {library.manifests["herbal"], library.manifests["hours"]}
    assert all(len(g.canvases) == g.matching_canvases == 3 for g in page.groups)
    assert page.total == 6 and page.manuscripts == 2
    # Every result fits on the page: nothing is buried, pages stay pages.
    assert library.search(text="Lyon herbal", signals=("fulltext",), limit=10, group="auto").group == "canvas"
    # One manuscript alone floods the page too: one group says "3 matching pages" once.
    lyon = library.search(text="Lyon", signals=("fulltext",), limit=2, group="auto")
    assert lyon.group == "manifest" and lyon.groups[0].matching_canvases == 3
    # Pages that match themselves are not grouped away: the sampler's 24 pages fill this page
    # because of what each of them shows.
    page = library.search(text="a green square", signals=("visual",), limit=5, group="auto", weaker=True)
    assert page.group == "canvas" and len(page.hits) == 5


def test_bad_requests_are_refused_with_the_reason(library):
    with pytest.raises(SearchError, match="nothing to search for"):
        library.search(text="   ")
    with pytest.raises(SearchError, match="page size"):
        library.search(text="red", limit=0)
    with pytest.raises(SearchError, match="group must be"):
        library.search(text="red", group="page")
    with pytest.raises(SearchError, match="unknown signal"):
        library.search(text="red", signals=("smell",))


# -- incremental changes, seen by a running reader ------------------------------------------------

def test_added_and_removed_canvases_are_seen_without_restart(library):
    reader = LiveIndex(library.index_dir, library.encoder.space_id, check_interval=0)
    with session_scope(library.factory) as session:
        before = run_search(SearchContext(session, reader.get(), library.encoder),
                            SearchRequest(text="a red circle", signals=("visual",), limit=3))
        assert library.canvases["red1"] in canvas_ids(before)
        new = add_canvas(session, library.encoder, library.manifests["sampler"], "red-new", "red", "circle",
                         555, 99)
        session.execute(update(Embedding).where(Embedding.canvas_id == library.canvases["red1"])
                        .values(stale=True))
        # Even before the index catches up, a stale vector is never served (the database decides).
        stale_only = run_search(SearchContext(session, reader.get(), library.encoder),
                                SearchRequest(text="a red circle", signals=("visual",), limit=3))
        assert library.canvases["red1"] not in canvas_ids(stale_only)
        report = sync_index(session, library.index_dir, library.encoder.space_id)
        assert (report.added, report.removed) == (1, 1)
        assert verify_index(session, library.index_dir, library.encoder.space_id, deep=True)["ok"]
        after = run_search(SearchContext(session, reader.get(), library.encoder),
                           SearchRequest(text="a red circle", signals=("visual",), limit=3))
        assert reader.reloads == 1
        assert new.id in canvas_ids(after) and library.canvases["red1"] not in canvas_ids(after)
        # Put things back for the other tests.
        session.execute(update(Embedding).where(Embedding.canvas_id == library.canvases["red1"])
                        .values(stale=False))
        session.delete(session.get(Canvas, new.id))
        session.flush()
        sync_index(session, library.index_dir, library.encoder.space_id)


# -- classification --------------------------------------------------------------------------------

def test_open_set_classification_labels_become_facets_and_filters(library):
    with session_scope(library.factory) as session:
        red = get_or_create_category(session, "red things", threshold=0.6)
        add_text_prototype(session, red, "a red circle", library.encoder)
        blue = get_or_create_category(session, "blue things")
        add_image_prototype(session, blue, render_shape("blue", "triangle", size=96, seed=4242), "test:blue",
                            library.encoder)
        report = classify_canvases(session, library.encoder.space_id)
        closed = classify_canvases(session, library.encoder.space_id, closed_set=True)
        assert closed.labelled == closed.canvases  # closed set: everyone gets a label
        report = classify_canvases(session, library.encoder.space_id)  # back to open set
    assert report.per_category["red things"] >= 2 and report.per_category["blue things"] >= 1
    assert report.labelled < report.canvases  # open set: some canvases are none of these
    page = library.search(text="a red circle", signals=("visual",), limit=50,
                          filters=SearchFilters(labels=("red things",)))
    assert {library.canvases["red1"], library.canvases["red2"]} <= set(canvas_ids(page))
    assert library.canvases["green"] not in canvas_ids(page)
    assert all("red things" in hit.labels for hit in page.hits)
    unfiltered = library.search(text="a red circle", signals=("visual",), limit=50)
    assert unfiltered.facets["label"]["red things"] == report.per_category["red things"]
    with session_scope(library.factory) as session:
        with pytest.raises(ClassificationError, match="1 to 200"):
            get_or_create_category(session, "  ")
