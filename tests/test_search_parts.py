"""The small parts of search on their own: rank fusion, query words, near-duplicate hashing,
search documents from catalogue records, and the sentence encoder."""
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
