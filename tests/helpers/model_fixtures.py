"""Session-scoped fixtures: small HF-format models built once per test run (see model_factory).

A pytest plugin (listed in conftest.py's ``pytest_plugins``); each fixture yields the directory
holding the saved model and processor.
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
