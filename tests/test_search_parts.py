"""The small parts of search on their own: rank fusion, query words, near-duplicate hashing,
search documents from catalogue records, and the sentence encoder."""
from __future__ import annotations

import numpy as np
import pytest

from manuscripts_search.search.documents import language_map_texts, manifest_text, plain_text
from manuscripts_search.search.fulltext import query_terms, snippet
from manuscripts_search.search.fusion import RankedSignal, reciprocal_rank_fusion
from manuscripts_search.models import Manifest
from manuscripts_search.near_duplicates import (NearDuplicateError, hamming_search, hash_to_uint64,
                                                near_duplicates)


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


def test_hamming_search_finds_close_hashes_in_order():
    base = 0xF0F0_F0F0_1234_5678
    hashes = np.array([base, base ^ 0b1, base ^ 0b111, base ^ 0xFFFF_0000_0000_0000, 0], dtype=np.uint64)
    ids = np.array([10, 11, 12, 13, 14])
    hits = hamming_search(base, ids, hashes, max_distance=3)
    assert [(h.canvas_id, h.distance) for h in hits] == [(10, 0), (11, 1), (12, 3)]
    assert hits[1].similarity == pytest.approx(1 - 1 / 64)
    assert hash_to_uint64(-1) == np.uint64(0xFFFF_FFFF_FFFF_FFFF)  # signed BIGINT storage
    assert hash_to_uint64("f0f0f0f012345678") == np.uint64(base)
    assert hash_to_uint64(base.to_bytes(8, "big")) == np.uint64(base)
    with pytest.raises(NearDuplicateError, match="8 bytes"):
        hash_to_uint64(b"abc")
    with pytest.raises(NearDuplicateError, match="hexadecimal"):
        hash_to_uint64("zz")
    with pytest.raises(NearDuplicateError, match="between 0 and 64"):
        hamming_search(base, ids, hashes, max_distance=65)


def test_near_duplicates_through_the_loader_interface():
    stored = [(1, 0xAAAA_AAAA_AAAA_AAAA), (2, 0xAAAA_AAAA_AAAA_AAAB), (3, 0x5555_5555_5555_5555), (4, None)]
    hits = near_duplicates(None, 1, lambda _session: stored, max_distance=4)
    assert [hit.canvas_id for hit in hits] == [2]
    with pytest.raises(NearDuplicateError, match="canvas 9 has no perceptual hash"):
        near_duplicates(None, 9, lambda _session: stored)


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


def test_hashes_from_the_embedding_worker_find_a_re_encoded_copy():
    import io

    from PIL import Image

    from manuscripts_search.embedding.perceptual_hashes import image_hashes
    from tests.model_factory import render_shape

    original = render_shape("red", "circle", size=256, seed=5)
    buffer = io.BytesIO()
    original.resize((200, 200)).save(buffer, format="JPEG", quality=60)
    copy = Image.open(io.BytesIO(buffer.getvalue()))
    other = render_shape("blue", "square", size=256, seed=6)
    stored = [(1, image_hashes(original).phash64), (2, image_hashes(copy).phash64),
              (3, image_hashes(other).phash64)]
    hits = near_duplicates(None, 1, lambda _session: stored)
    assert [hit.canvas_id for hit in hits] == [2]
