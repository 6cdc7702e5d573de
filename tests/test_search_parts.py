"""The small parts of search on their own: rank fusion, query words, near-duplicate hashing,
search documents from catalogue records, the sentence encoder, score floors and date statements."""
from __future__ import annotations

import numpy as np
import pytest

from manuscripts_search.search.documents import language_map_texts, manifest_text, plain_text
from manuscripts_search.search.fulltext import query_terms, snippet
from manuscripts_search.search.fusion import RankedSignal, reciprocal_rank_fusion
from manuscripts_search.models import Manifest


def test_rrf_adds_reciprocal_ranks_and_rewards_agreement():
    fused = reciprocal_rank_fusion([
        RankedSignal("visual", [("a", 0.9), ("b", 0.8), ("c", 0.7)]),
        RankedSignal("fulltext", [("c", 12.0), ("b", 3.0)]),
    ])
    scores = {item.key: item.score for item in fused}
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["a"] == pytest.approx(1 / 61)
    assert [item.key for item in fused] == ["c", "b", "a"]  # both signals beat one signal's top
    assert fused[0].contributions["fulltext"].rank == 1 and fused[0].contributions["fulltext"].score == 12.0


def test_rrf_weights_ties_and_bad_input():
    fused = reciprocal_rank_fusion([RankedSignal("x", [("a", 1.0)], weight=2.0),
                                    RankedSignal("y", [("b", 1.0)], weight=2.0)])
    assert [item.key for item in fused] == ["a", "b"]  # equal score and rank: by key, always
    assert fused[0].score == pytest.approx(2 / 61)
    assert reciprocal_rank_fusion([RankedSignal("x", [("a", 1.0)], weight=0)]) == []
    duplicated = reciprocal_rank_fusion([RankedSignal("x", [("a", 1.0), ("a", 0.5)])])
    assert duplicated[0].contributions["x"].rank == 1
    with pytest.raises(ValueError, match="negative weight"):
        reciprocal_rank_fusion([RankedSignal("x", [("a", 1.0)], weight=-1)])


def test_query_terms_keep_words_and_phrases_and_drop_syntax():
    assert query_terms('the "book of hours" de Lyon') == ["book of hours", "Lyon"]
    assert query_terms('NEAR(a b) OR col:text* -x') == ["NEAR", "col", "text"]
    assert query_terms("of the") == ["of", "the"]  # only function words: search them anyway
    assert query_terms("1450 a") == ["1450"]
    assert query_terms("!!! ...") == []


def test_snippet_centres_on_the_first_match_ignoring_accents():
    text = "x" * 300 + " officium de Pâques " + "y" * 300
    cut = snippet(text, "paques")
    assert "Pâques" in cut and cut.startswith("…") and cut.endswith("…") and len(cut) <= 162


def test_search_document_text_from_catalogue_records():
    assert plain_text("<p>Livre <b>d&#39;heures</b></p><script>alert(1)</script>") == "Livre d'heures"
    assert language_map_texts({"en": ["Hours", "Hours"], "fr": ["Heures"]}) == ["Hours", "Heures"]
    assert language_map_texts(None) == [] and language_map_texts("Plain") == ["Plain"]
    manifest = Manifest(url="u", iiif_id="u", label={"en": ["Psalter"]}, summary={},
                        metadata_entries=[{"label": {"en": ["Author"]}, "value": {"la": ["<i>Beda</i>"]}},
                                          "not a dict", {"value": {"none": ["no label"]}}],
                        providers=[{"en": ["Some Library"]}, {"label": {"en": ["Other Library"]}}],
                        required_statement={"label": {"en": ["Attribution"]}, "value": {"en": ["CC-BY"]}},
                        nav_date="1200-01-01T00:00:00Z")
    assert manifest_text(manifest).splitlines() == ["Psalter", "Author: Beda", "no label", "Some Library",
                                                    "Other Library", "CC-BY", "1200-01-01T00:00:00Z"]


def test_minilm_sentence_vectors_are_unit_length_and_meaningful():
    from manuscripts_search.embedding.text_encoder import load_text_encoder, text_space_id

    encoder = load_text_encoder()
    assert encoder.dim == 384 and encoder.space_id == text_space_id()
    vectors = encoder.encode(["a book of hours", "a prayer book for the hours of the day", "a map of the sea"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    with pytest.raises(TypeError, match="expected str"):
        encoder.encode([b"bytes"])


# -- score floors and date statements -------------------------------------------------------------

def test_score_floor_setting_is_parsed_and_bad_values_are_named():
    from manuscripts_search.config import ConfigError, load_config
    from manuscripts_search.search.calibration import parse_score_floors

    assert parse_score_floors(None) == {"visual": "auto", "semantic": "auto"}
    assert parse_score_floors("off") == {"visual": None, "semantic": None}
    assert parse_score_floors("visual=0.22, semantic=off") == {"visual": 0.22, "semantic": None}
    for bad, message in (("visual=high", "auto, off or a number"), ("visual=2", "from -1 to 1"),
                         ("colour=0.2", "signal=value"), ("0.3", "signal=value")):
        with pytest.raises(ValueError, match=message):
            parse_score_floors(bad)
    with pytest.raises(ConfigError, match="MSEARCH_SCORE_FLOORS"):
        load_config({"MSEARCH_SCORE_FLOORS": "visual=nan"})
    assert load_config({"MSEARCH_SCORE_FLOORS": "semantic=0.4"}).score_floors == {"visual": "auto", "semantic": 0.4}


def test_the_floor_is_the_90th_percentile_of_what_nonsense_finds_in_the_index():
    import numpy as np

    from manuscripts_search.index.layouts import new_index
    from manuscripts_search.search.calibration import NONSENSE_QUERIES, calibrated_floor

    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = new_index("test@floor", 8)
    index.add(list(range(1, 51)), vectors)
    queries = rng.normal(size=(len(NONSENSE_QUERIES), 8)).astype(np.float32)
    calls = []

    def encode(texts):
        calls.append(list(texts))
        return queries

    floor = calibrated_floor("visual", index, "encoder-a", encode)
    unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    expected = np.percentile((unit @ vectors.T).max(axis=1), 90)
    assert floor.source == "calibrated" and floor.queries == len(NONSENSE_QUERIES)
    assert floor.value == pytest.approx(float(expected), abs=1e-5)
    assert calls == [list(NONSENSE_QUERIES)]
    calibrated_floor("visual", index, "encoder-a", encode)  # kept with the index: not computed again
    assert len(calls) == 1
    index.add([51], vectors[:1])  # the index grew: learned again
    calibrated_floor("visual", index, "encoder-a", encode)
    assert len(calls) == 2


@pytest.mark.parametrize("text, years", [
    ("c. 1450", (1450, 1450)), ("1450–1475", (1450, 1475)), ("15th century", (1400, 1499)),
    ("s. XV", (1400, 1499)), ("saec. XII", (1100, 1199)), ("XIVe siècle", None), ("12 folios", None),
    ("Dated 1302", (1302, 1302)), ("1475-1450", None),
])
def test_date_statements_name_their_years(text, years):
    from manuscripts_search.search.dates import years_in_text

    assert years_in_text(text) == years


def test_a_manuscript_is_dated_by_navdate_before_its_metadata():
    from manuscripts_search.search.dates import century_key, decade_key, manuscript_years

    metadata = [{"label": {"en": ["Shelfmark"]}, "value": {"none": ["MS 1200"]}},
                {"label": {"fr": ["Datation"]}, "value": {"fr": ["vers 1460"]}}]
    assert manuscript_years(None, metadata) == (1460, 1460)  # not the shelfmark's number
    assert manuscript_years("1520-06-01T00:00:00Z", metadata) == (1520, 1520)
    assert manuscript_years(None, None) is None
    assert century_key((1460, 1460)) == "1400-1499" and decade_key((1460, 1460)) == "1460-1469"
    assert decade_key((1400, 1499)) is None
