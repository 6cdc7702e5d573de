"""Perceptual hashes on the real corpus pages: re-encoded, resized and slightly cropped copies are
near-duplicates; different pages (even of one manuscript's layout) are not. Then stored by the
worker and searched through the database."""
from __future__ import annotations

import io
import itertools

import pytest
from PIL import Image

from manuscripts_search.embedding import perceptual_hashes as phash
from manuscripts_search.store.db import session_scope
from manuscripts_search.embedding.perceptual_hashes import (HashLookupError, find_near_duplicates, image_hashes)
from manuscripts_search.embedding.worker import WorkerOptions, embed_pending
from manuscripts_search.embedding.handcrafted import HandcraftedEncoder
from tests.helpers.worker_catalogue import build_catalogue, corpus_image_names, load_corpus_image, migrated_factory

PHASH64_MATCH_BITS = 10  # what `msearch search --duplicates-of` uses by default


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _cut(image: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = image.size
    return image.crop((round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom))))


def _scaled(image: Image.Image, factor: float) -> Image.Image:
    return image.resize((max(8, round(image.width * factor)), max(8, round(image.height * factor))),
                        Image.Resampling.LANCZOS)


# Copies that must be found: (name, transformation, whether the 64-bit hash must find it too).
COPIES = [
    ("JPEG quality 25", lambda im: _jpeg(im, 25), True),
    ("half size", lambda im: _jpeg(_scaled(im, 0.5), 85), True),
    ("third size, quality 40", lambda im: _jpeg(_scaled(im, 0.33), 40), True),
    ("3% cut on every side", lambda im: _jpeg(_cut(im, 0.03, 0.03, 0.03, 0.03), 85), False),
    ("4% cut left and top", lambda im: _jpeg(_cut(im, 0.04, 0.04, 0, 0), 85), False),
    ("cut, shrunk and re-encoded", lambda im: _jpeg(_scaled(_cut(im, 0.01, 0.03, 0.03, 0.02), 0.6), 50), False),
]


@pytest.fixture(scope="module")
def corpus():
    return {name: load_corpus_image(name) for name in corpus_image_names()}


@pytest.fixture(scope="module")
def corpus_hashes(corpus):
    return {name: image_hashes(image) for name, image in corpus.items()}


def test_the_corpus_is_there(corpus):
    assert len(corpus) >= 30  # manuscripts, paintings and prints from /work/shared/corpus/images


@pytest.mark.parametrize("copy_name, transform, phash64_finds_it", COPIES, ids=[c[0] for c in COPIES])
def test_copies_of_every_corpus_image_are_near_duplicates(corpus, corpus_hashes, copy_name, transform,
                                                          phash64_finds_it):
    for name, image in corpus.items():
        copy = image_hashes(transform(image))
        original = corpus_hashes[name]
        distance = phash.crop_distance(original.crop_hashes, copy.crop_hashes)
        assert distance <= phash.CROP_MATCH_BITS, (name, copy_name, distance)
        if phash64_finds_it:
            assert phash.hamming_distance(original.phash64, copy.phash64) <= PHASH64_MATCH_BITS, (name, copy_name)


def test_different_images_are_not_near_duplicates(corpus_hashes):
    closest = min((phash.crop_distance(a.crop_hashes, b.crop_hashes), first, second)
                  for (first, a), (second, b) in itertools.combinations(corpus_hashes.items(), 2))
    assert closest[0] > phash.CROP_MATCH_BITS, closest
    closest64 = min(phash.hamming_distance(a.phash64, b.phash64)
                    for a, b in itertools.combinations(corpus_hashes.values(), 2))
    assert closest64 > PHASH64_MATCH_BITS


def test_hash_values_and_conversions():
    image = load_corpus_image("print_hokusai_great-wave.jpg", long_edge=256)
    value = phash.perceptual_hash(image)
    assert 0 <= value < 2 ** 64 and value == phash.perceptual_hash(image.copy())
    assert phash.from_signed64(phash.to_signed64(value)) == value
    assert -2 ** 63 <= phash.to_signed64(value) < 2 ** 63
    assert phash.hamming_distance(value, phash.to_signed64(value)) == 0
    assert phash.hamming_distance(0, 2 ** 64 - 1) == 64 and len(phash.hash_hex(value)) == 16
    crops = phash.crop_hashes(image)
    assert len(crops) == phash.CROP_VARIANTS == 19 and all(0 <= c < 2 ** 256 for c in crops)
    assert phash.unpack_hashes(phash.pack_hashes(crops)) == crops
    assert phash.crop_distance(crops, crops) == 0
    # Any mode and size is accepted: grey, palette with transparency, a single pixel.
    for odd in (image.convert("L"), image.convert("P"), Image.new("RGBA", (1, 1)), Image.new("RGB", (3, 500))):
        assert 0 <= phash.perceptual_hash(odd) < 2 ** 64 and len(phash.crop_hashes(odd)) == 19


def test_bad_input_is_refused_clearly():
    with pytest.raises(TypeError, match="expected a PIL image"):
        phash.perceptual_hash(b"not an image")
    with pytest.raises(ValueError, match="empty image"):
        phash.crop_hashes(Image.new("RGB", (0, 0)))
    with pytest.raises(ValueError, match="multiple of 32"):
        phash.unpack_hashes(b"\x00" * 33)
    with pytest.raises(ValueError, match="both images need"):
        phash.crop_distance([], [1])


def test_stored_by_the_worker_and_found_in_the_database(db_url, tmp_path, corpus):
    factory = migrated_factory(db_url)
    try:
        wave, scream, starry = (corpus[n] for n in ("print_hokusai_great-wave.jpg", "painting_munch_the-scream.jpg",
                                                     "painting_vangogh_starry-night.jpg"))
        pages = [(name, corpus[name]) for name in ("ms_bnf_fr-844_20_music.jpg", "ms_bnf_fr-844_26_historiated-initial.jpg",
                                                    "ms_bml_plut-53.08_101v.jpg", "ms_bml_plut-53.09_0394.jpg")]
        images = [("wave", wave), ("scream", scream), ("starry", starry), *pages,
                  ("wave, another digitisation", _jpeg(_scaled(_cut(wave, 0.03, 0.02, 0.01, 0.04), 0.7), 60)),
                  ("wave, re-encoded", _jpeg(wave, 30)),
                  ("scream, cut", _jpeg(_cut(scream, 0.0, 0.04, 0.04, 0.0), 80))]
        catalogue = build_catalogue(factory, tmp_path, images, regions_per_canvas=2)
        report = embed_pending(factory, HandcraftedEncoder(), catalogue.store, WorkerOptions(batch_size=4))
        assert report.hashed == catalogue.items
        ids = dict(zip([label for label, _ in images], catalogue.canvas_ids))

        with session_scope(factory) as session:
            found = find_near_duplicates(session, canvas_id=ids["wave"])
            assert [hit.canvas_id for hit in found] and {hit.canvas_id for hit in found} == \
                {ids["wave, another digitisation"], ids["wave, re-encoded"]}
            assert [h.canvas_id for h in find_near_duplicates(session, canvas_id=ids["scream"])] == [ids["scream, cut"]]
            for name, _ in pages:
                assert find_near_duplicates(session, canvas_id=ids[name]) == []
            # A photo of the page from elsewhere, not in the catalogue, finds it too.
            query = _jpeg(_scaled(_cut(starry, 0.02, 0.0, 0.0, 0.03), 0.5), 70)
            assert [hit.canvas_id for hit in find_near_duplicates(session, image=query)] == [ids["starry"]]
            with pytest.raises(HashLookupError, match="no perceptual hashes"):
                find_near_duplicates(session, canvas_id=10_000)
            with_regions = find_near_duplicates(session, canvas_id=ids["wave"], include_regions=True)
            assert len(with_regions) >= len(found)
    finally:
        factory.kw["bind"].dispose()
