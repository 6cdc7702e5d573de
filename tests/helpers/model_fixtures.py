"""Model fixtures: small HF-format models built once per test run (see model_factory), each the
directory holding the saved model and processor, and the encoders the tests load from them.

A pytest plugin (listed in conftest.py's ``pytest_plugins``).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.model_factory import build_random_clip, build_random_siglip, train_tiny_clip


@pytest.fixture(scope="session")
def random_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP with random weights (24-d embeddings)."""
    return build_random_clip(tmp_path_factory.mktemp("random-clip"))


@pytest.fixture(scope="session")
def random_siglip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SigLIP with random weights (32-d embeddings)."""
    return build_random_siglip(tmp_path_factory.mktemp("random-siglip"))


@pytest.fixture(scope="session")
def trained_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP trained to match "a red circle"-style captions to ``render_shape`` images."""
    return train_tiny_clip(tmp_path_factory.mktemp("trained-clip"))


@pytest.fixture(scope="module")
def trained_clip_encoder(trained_clip_dir):
    """``trained_clip_dir`` loaded as the product loads a model (CPU), once per test module."""
    from manuscripts_search.embedding.encoders import load_vision_language_encoder

    return load_vision_language_encoder(str(trained_clip_dir), device="cpu")


@pytest.fixture(scope="session")
def text_encoder():
    """The product's sentence encoder (the packaged MiniLM), loaded once per test session."""
    from manuscripts_search.embedding.text_encoder import load_text_encoder

    return load_text_encoder()
