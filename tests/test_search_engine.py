"""The search engine end to end on a real database (SQLite or PostgreSQL, per MSEARCH_TEST_DB),
real HNSW indexes, the tiny trained CLIP and the real MiniLM: the right canvases and regions first,
filters that still return k, fusion with explanations, grouping, stable pages, "more like this",
image queries, incremental changes seen without restart, and open-set classification."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select, update

from manuscripts_search.search.classification import (ClassificationError, add_image_prototype, add_text_prototype,
                                               classify_canvases, get_or_create_category)
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
from manuscripts_search.store.vector_codec import encode_vector
from manuscripts_search.search.documents import sync_documents
from manuscripts_search.search.filters import SearchFilters, parse_filter_options
from manuscripts_search.index.vector_index import LiveIndex, VectorIndex
from manuscripts_search.index.sync import sync_index, verify_index
from manuscripts_search.models import (Canvas, Collection, CollectionMembership, Embedding, Manifest, Region,
                                       TextAnnotation)
from manuscripts_search.search.engine import SearchContext, SearchError, SearchRequest, run_search
from manuscripts_search.search.text_vectors import sync_text_vectors
from tests.fixtures_database import module_database
from tests.model_factory import render_shape

GRID_CELLS = [("green", "square"), ("blue", "triangle"), ("yellow", "square"), ("red", "circle")]
CELL = 48  # canvas units per grid cell (the canvas is 2 x 2 cells)
# No red and no blue among the filler pages: queries for those colours have a known answer.
FILLER_CLASSES = [("green", "square"), ("yellow", "circle"), ("green", "triangle"), ("yellow", "square")]


@dataclass
class Library:
    """A small catalogue with vectors and indexes, and the ids the tests need."""

    factory: object
    index_dir: Path
    encoder: object
    text_encoder: object
    canvases: dict = field(default_factory=dict)  # key -> canvas id
    manifests: dict = field(default_factory=dict)  # key -> manifest id
    regions: dict = field(default_factory=dict)  # key -> (region id, xywh)
    collection_iiif: str = "https://lib.test/collection/hours"

    def context(self, session, with_text: bool = True) -> SearchContext:
        index = VectorIndex.load(self.index_dir, self.encoder.space_id)
        text_index = VectorIndex.load(self.index_dir, self.text_encoder.space_id) if with_text else None
        return SearchContext(session, index, self.encoder, text_index, self.text_encoder if with_text else None)

    def search(self, **request) -> "object":
        with session_scope(self.factory) as session:
            return run_search(self.context(session), SearchRequest(**request))


def _grid_image(size: int = 2 * CELL) -> Image.Image:
    image = Image.new("RGB", (size, size))
    half = size // 2
    for position, (colour, shape) in enumerate(GRID_CELLS):
        image.paste(render_shape(colour, shape, size=half, seed=40 + position),
                    ((position % 2) * half, (position // 2) * half))
    return image


def _embed(session, encoder, canvas_id: int, image: Image.Image, region_id=None) -> Embedding:
    vector = encoder.encode_images([image])[0]
    row = Embedding(space=encoder.space_id, model_id=encoder.model_id, model_revision=encoder.revision,
                    canvas_id=canvas_id, region_id=region_id, dim=encoder.dim,
                    vector=encode_vector(vector))
    session.add(row)
    session.flush()
    return row


def add_canvas(session, encoder, manifest_id: int, key: str, colour: str, shape: str, seed: int,
               position: int, label: str | None = None) -> Canvas:
    canvas = Canvas(manifest_id=manifest_id, iiif_id=f"https://lib.test/canvas/{key}", position=position,
                    label={"none": [label or f"f. {position + 1}r"]}, width=96, height=96,
                    service_id=f"https://lib.test/iiif/{key}", service_api_version=3, service_level=2)
    session.add(canvas)
    session.flush()
    _embed(session, encoder, canvas.id, render_shape(colour, shape, size=96, seed=seed))
    return canvas


def build_library(factory, index_dir: Path, encoder, text_encoder, make_indexes: bool = True) -> Library:
    """The catalogue with image vectors; with ``make_indexes`` also the search documents, their
    sentence vectors and both indexes (what `msearch index` makes)."""
    library = Library(factory, index_dir, encoder, text_encoder)
    with session_scope(factory) as session:
        hours = Manifest(url="https://lib.test/hours/manifest.json", iiif_id="https://lib.test/hours/manifest.json",
                         iiif_version=3, label={"en": ["Book of hours, use of Rome"]},
                         summary={"fr": ["Livre d'heures enluminé"]},
                         metadata_entries=[{"label": {"en": ["Date"]}, "value": {"en": ["c. 1450"]}}],
                         providers=[{"fr": ["Bibliothèque municipale de Lyon"]}],
                         nav_date="1450-01-01T00:00:00Z")
        herbal = Manifest(url="https://lib.test/herbal/manifest.json", iiif_id="https://lib.test/herbal/manifest.json",
                          iiif_version=2, label={"en": ["Herbal with medicinal plants"]},
                          providers=[{"en": ["Bodleian Libraries"]}], nav_date="1520-06-01T00:00:00Z")
        sampler = Manifest(url="https://lib.test/sampler/manifest.json", iiif_id="https://lib.test/sampler/manifest.json",
                           iiif_version=3, label={"en": ["Pattern sampler"]})
        session.add_all([hours, herbal, sampler])
        session.flush()
        library.manifests = {"hours": hours.id, "herbal": herbal.id, "sampler": sampler.id}
        collection = Collection(iiif_id=library.collection_iiif, label={"en": ["Hours"]})
        session.add(collection)
        session.flush()
        session.add(CollectionMembership(collection_id=collection.id, manifest_id=hours.id))

        specs = [("red1", hours.id, "red", "circle", 1), ("blue", hours.id, "blue", "triangle", 2),
                 ("red2", herbal.id, "red", "circle", 3), ("green", herbal.id, "green", "square", 4),
                 ("yellow", herbal.id, "yellow", "square", 5)]
        for position, (key, manifest_id, colour, shape, seed) in enumerate(specs):
            library.canvases[key] = add_canvas(session, encoder, manifest_id, key, colour, shape, seed,
                                               position).id
        # A page showing four things: the whole page has a vector, and so does each quarter.
        grid = Canvas(manifest_id=hours.id, iiif_id="https://lib.test/canvas/grid", position=10,
                      label={"none": ["f. 11r"]}, width=2 * CELL, height=2 * CELL,
                      service_id="https://lib.test/iiif/grid", service_api_version=3, service_level=2)
        session.add(grid)
        session.flush()
        library.canvases["grid"] = grid.id
        image = _grid_image()
        _embed(session, encoder, grid.id, image)
        for position, (colour, shape) in enumerate(GRID_CELLS):
            x, y = (position % 2) * CELL, (position // 2) * CELL
            region = Region(canvas_id=grid.id, x=x, y=y, w=CELL, h=CELL)
            session.add(region)
            session.flush()
            _embed(session, encoder, grid.id, image.crop((x, y, x + CELL, y + CELL)), region_id=region.id)
            library.regions[f"{colour} {shape}"] = (region.id, f"{x},{y},{CELL},{CELL}")
        for number in range(24):
            colour, shape = FILLER_CLASSES[number % len(FILLER_CLASSES)]
            library.canvases[f"filler{number}"] = add_canvas(session, encoder, sampler.id, f"filler{number}",
                                                             colour, shape, 100 + number, number).id
        session.add_all([
            TextAnnotation(manifest_id=hours.id, canvas_id=library.canvases["blue"], motivation="supplementing",
                           language="la", text="Incipit officium de Pâques, <b>rubrica</b>", x=10, y=20, w=30, h=8),
            TextAnnotation(manifest_id=herbal.id, canvas_id=library.canvases["yellow"], motivation="supplementing",
                           language="la", text="Herba salvia: contra dolorem capitis", x=5, y=5, w=40, h=10),
        ])
        session.flush()
        if not make_indexes:
            return library
        sync_documents(session)
        sync_text_vectors(session, text_encoder)
        sync_index(session, index_dir, encoder.space_id)
        sync_index(session, index_dir, text_encoder.space_id)
    return library


@pytest.fixture(scope="module")
def encoder(trained_clip_dir):
    from manuscripts_search.embedding.encoders import load_vision_language_encoder

    return load_vision_language_encoder(str(trained_clip_dir), device="cpu")


@pytest.fixture(scope="session")
def text_encoder():
    from manuscripts_search.embedding.text_encoder import load_text_encoder

    return load_text_encoder()


@pytest.fixture(scope="module")
def module_db_url(request, tmp_path_factory):
    """A database for the whole module (the catalogue is built once)."""
    with module_database(request, tmp_path_factory, "msearch_search") as url:
        yield url


@pytest.fixture(scope="module")
def library(module_db_url, tmp_path_factory, encoder, text_encoder) -> Library:
    engine = make_engine(module_db_url)
    upgrade_database(engine)
    yield build_library(make_sessionmaker(engine), tmp_path_factory.mktemp("search-index"), encoder, text_encoder)
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
    page = library.search(text="a red circle", signals=("visual",), filters=filters, limit=50)
    assert set(canvas_ids(page)) == {library.canvases[key] for key in expected_keys}


def test_a_selective_filter_still_returns_k_results(library):
    # No red in the sampler: an unfiltered top-10 holds none of its pages, yet 10 come back.
    unfiltered = library.search(text="a red circle", signals=("visual",), limit=10)
    sampler = {library.canvases[f"filler{n}"] for n in range(24)}
    assert not set(canvas_ids(unfiltered)[:3]) & sampler
    filters = SearchFilters(manifests=(str(library.manifests["sampler"]),))
    page = library.search(text="a red circle", signals=("visual",), filters=filters, limit=10)
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


# -- grouping and pages ------------------------------------------------------------------------------

def test_pages_are_slices_of_one_stable_ordering(library):
    everything = library.search(text="a green square", limit=40)
    pages, offset = [], 0
    while True:
        page = library.search(text="a green square", limit=7, offset=offset)
        pages += canvas_ids(page)
        assert [hit.rank for hit in page.hits] == list(range(offset + 1, offset + 1 + len(page.hits)))
        if not page.has_more:
            break
        offset += 7
    assert pages == canvas_ids(everything) and len(pages) == len(set(pages)) == 30
    assert library.search(text="a green square", limit=7, offset=700).hits == []


def test_results_grouped_by_manifest(library):
    page = library.search(text="a red circle", signals=("visual",), group="manifest", limit=3)
    assert [g.manifest_id for g in page.groups][:2] == sorted(
        [library.manifests["hours"], library.manifests["herbal"]],
        key=lambda m: [g.manifest_id for g in page.groups].index(m))
    assert len({g.manifest_id for g in page.groups}) == len(page.groups) == 3
    first = page.groups[0]
    assert first.canvases[0].canvas_id in {library.canvases[k] for k in ("red1", "red2", "grid")}
    assert first.matching_canvases >= len(first.canvases)
    assert [g.score for g in page.groups] == sorted((g.score for g in page.groups), reverse=True)


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
