"""One rule for comparing words (search/text_folding.py), and every place that compares words
agreeing with the database's full-text index on it: SQLite FTS5 and PostgreSQL msearch_fold."""
from __future__ import annotations

import pytest

from manuscripts_search.search.content_matches import Scope, autocomplete_terms, find_term, text_hits
from manuscripts_search.search.documents import sync_documents
from manuscripts_search.search.filters import SearchFilters, canvas_filter_statement
from manuscripts_search.search.fulltext import search_fulltext, snippet
from manuscripts_search.search.text_folding import fold, words
from manuscripts_search.store.catalogue import save_manifest
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database

TEXT = "Die Straße nach Pâques, ÉCRIT à Ŝtrasbourg"
LABEL = "ms_bnf_fr-24428_bestiary_129"


def test_the_rule_folds_accents_and_case_one_character_for_one():
    assert fold("Pâques") == "paques" and fold("ÉCRIT") == "ecrit" and fold("Ŝtrasbourg") == "strasbourg"
    assert fold("Straße") == "straße" and fold("STRAẞE") == "straße"  # ß is its own lower case, not "ss"
    assert fold("E\u0301") == "e\u0301"  # a combining mark stays where it is: one character for one
    for text in (TEXT, "İstanbul", "ﬁnis", "ΆΈΉ", "e\u0301"):
        assert len(fold(text)) == len(text)  # positions in folded text are positions in the original


@pytest.fixture
def catalogue(db_url):
    engine = make_engine(db_url)
    upgrade_database(engine)
    factory = make_sessionmaker(engine)
    manifest = {
        "@context": "http://iiif.io/api/presentation/3/context.json", "id": "https://example.org/m/fold",
        "type": "Manifest", "label": {"de": ["Gebetbuch"]},
        "provider": [{"id": "https://example.org/lib", "type": "Agent",
                      "label": {"de": ["Bibliothèque Straße"]}}],
        "items": [{"id": "https://example.org/m/fold/c1", "type": "Canvas", "width": 100, "height": 100,
                   "label": {"none": ["f. 1r"]},
                   "annotations": [{"id": "https://example.org/m/fold/p1", "type": "AnnotationPage", "items": [{
                       "id": "https://example.org/m/fold/a1", "type": "Annotation", "motivation": "supplementing",
                       "body": {"type": "TextualBody", "value": TEXT, "format": "text/plain"},
                       "target": "https://example.org/m/fold/c1#xywh=0,0,50,10"}]}]},
                  # A label as some holders write them: words joined by "_" and "-".
                  {"id": "https://example.org/m/fold/c2", "type": "Canvas", "width": 100, "height": 100,
                   "label": {"none": [LABEL]}}],
    }
    from manuscripts_search.iiif.presentation import parse_document_with_text
    from manuscripts_search.store.catalogue import replace_text_annotations

    parsed, text = parse_document_with_text(manifest)
    with session_scope(factory) as session:
        row = save_manifest(session, parsed, url=parsed.id)
        replace_text_annotations(session, text.annotations, source_url=parsed.id, origin_url=parsed.id,
                                 manifest=row)
        sync_documents(session)
        manifest_id = row.id
    yield factory, manifest_id
    engine.dispose()


QUERIES = ["paques", "PÂQUES", "pâques", "Straße", "STRAßE", "straße", "strasse", "ecrit", "strasbourg",
           "ŝtrasbourg", "nach"]


@pytest.mark.parametrize("query", QUERIES)
def test_the_database_and_every_python_comparison_agree(catalogue, query):
    factory, manifest_id = catalogue
    expected = fold(query) in words(fold(TEXT))  # a whole word of the text, as the indexes match
    with session_scope(factory) as session:
        found_by_database = bool(search_fulltext(session, query, limit=10))
        annotation_hits = [hit for hit in text_hits(session, Scope(manifest_id=manifest_id), query)
                           if hit.kind == "annotation"]
        allowed = set(session.scalars(canvas_filter_statement(session, SearchFilters(providers=(query,)))))
    assert found_by_database == expected, f"full-text index on {query!r}"
    assert bool(annotation_hits) == expected, f"Content Search matches on {query!r}"
    assert (find_term(TEXT, [query]) is not None) == expected
    if expected:
        start, end = find_term(TEXT, [query])
        assert fold(TEXT[start:end]).startswith(fold(query))  # the highlight is the matched word
        assert fold(query) in fold(snippet("x " * 200 + TEXT + " y" * 200, query))
    provider_matches = fold(query) in fold("Bibliothèque Straße")
    assert bool(allowed) == provider_matches, f"provider filter on {query!r}"


def test_strasse_and_strasse_with_sharp_s_are_different_words_everywhere(catalogue):
    factory, manifest_id = catalogue
    with session_scope(factory) as session:
        assert search_fulltext(session, "Straße", limit=10) and not search_fulltext(session, "strasse", limit=10)
        assert autocomplete_terms(session, Scope(manifest_id=manifest_id), "stra") == \
            autocomplete_terms(session, Scope(manifest_id=manifest_id), "STRA")
        terms = [term for term, _count in autocomplete_terms(session, Scope(manifest_id=manifest_id), "stra")]
    assert any("straße" in term.lower() for term in terms), terms


# (Not "24428": PostgreSQL's parser reads "fr-24428" as "fr" and the signed integer "-24428".)
@pytest.mark.parametrize("query, expected", [
    ("bestiary", True), ("BESTIARY", True), ("bnf", True), ("129", True), ("ms_bnf", True), ("ms_bnf_fr", True),
    ('"bnf fr"', True), ("bestiary_129", True), ("bnf_ms", False), ("stiary", False), ("ms_bnf_fr_bestiary", False),
])
def test_site_search_and_content_search_split_words_alike(catalogue, query, expected):
    # "_" separates words in both full-text indexes; Content Search read "ms_bnf_fr-24428_bestiary_129"
    # as the words "ms_bnf_fr", "24428_bestiary_129" and found no "bestiary" that site search found.
    factory, manifest_id = catalogue
    with session_scope(factory) as session:
        found_by_database = bool(search_fulltext(session, query, limit=10))
        label_hits = [hit for hit in text_hits(session, Scope(manifest_id=manifest_id), query)
                      if hit.kind == "canvas-label"]
    assert found_by_database == expected, f"site search (full-text index) on {query!r}"
    assert bool(label_hits) == expected, f"Content Search on {query!r}"
    if expected:  # the highlight starts at the query's first word
        first_word = words(fold(query))[0]
        assert label_hits[0].text == LABEL and fold(label_hits[0].exact).startswith(first_word)


def test_autocomplete_suggests_the_words_of_an_underscored_label(catalogue):
    factory, manifest_id = catalogue
    with session_scope(factory) as session:
        assert autocomplete_terms(session, Scope(manifest_id=manifest_id), "best") == [("bestiary", 1)]
        assert autocomplete_terms(session, Scope(manifest_id=manifest_id), "ms_") == []  # a word has no "_"
