"""The weight-free colour/texture encoder: a stable space, unit vectors, and real image→image
retrieval on the corpus pages; no text tower."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from manuscripts_search.embedding.handcrafted import HANDCRAFTED_MODEL_ID, HandcraftedEncoder, TextNotSupportedError
from tests.helpers.model_factory import render_shape
from tests.helpers.worker_catalogue import corpus_image_names, load_corpus_image


@pytest.fixture(scope="module")
def corpus():
    return [load_corpus_image(name, long_edge=320) for name in corpus_image_names()]


def _another_copy(image: Image.Image) -> Image.Image:
    """Smaller, re-encoded, slightly cut: what another digitisation of the page looks like."""
    w, h = image.size
    cut = image.crop((round(w * 0.02), round(h * 0.02), round(w * 0.98), round(h * 0.97)))
    buffer = io.BytesIO()
    cut.resize((cut.width * 2 // 3, cut.height * 2 // 3), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=60)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_space_and_vectors():
    encoder = HandcraftedEncoder()
    assert encoder.space_id == f"{HANDCRAFTED_MODEL_ID}@{encoder.revision}"
    assert encoder.space_id.startswith("handcrafted/colour-texture-v1@1-") and not encoder.supports_text
    images = [render_shape("red", "circle", size=80, seed=1), Image.new("L", (40, 90), 200),
              Image.new("RGBA", (1, 1), (0, 0, 0, 0)), render_shape("blue", "square", size=64).convert("P")]
    vectors = encoder.encode_images(images)
    assert vectors.shape == (4, encoder.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, HandcraftedEncoder().encode_images(images))  # deterministic
    assert encoder.encode_images([]).shape == (0, encoder.dim)
    # The pipeline's two stages give exactly encode_images.
    assert np.array_equal(encoder.encode_prepared([encoder.prepare_image(im) for im in images]), vectors)


def test_colour_counts():
    encoder = HandcraftedEncoder()
    red_circle, red_square, blue_circle = encoder.encode_images([
        render_shape("red", "circle", size=96, seed=3), render_shape("red", "square", size=96, seed=4),
        render_shape("blue", "circle", size=96, seed=5)])
    assert float(red_circle @ red_square) > float(red_circle @ blue_circle)


def test_another_copy_of_each_corpus_page_finds_its_original_first(corpus):
    encoder = HandcraftedEncoder()
    originals = encoder.encode_images(corpus)
    copies = encoder.encode_images([_another_copy(image) for image in corpus])
    best = np.argmax(copies @ originals.T, axis=1)
    assert (best == np.arange(len(corpus))).all(), np.flatnonzero(best != np.arange(len(corpus)))


def test_no_text_and_bad_input():
    encoder = HandcraftedEncoder()
    with pytest.raises(TextNotSupportedError, match="cannot encode text"):
        encoder.encode_texts(["a red circle"])
    with pytest.raises(TypeError, match=r"images\[1\] is str"):
        encoder.encode_images([Image.new("RGB", (8, 8)), "page.jpg"])
    with pytest.raises(ValueError, match="empty image"):
        encoder.encode_images([Image.new("RGB", (0, 5))])
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode_images([], batch_size=0)
