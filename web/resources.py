"""The encoder and the HNSW index, loaded on first search and shared by all requests of a process.

Loading a model takes seconds and memory, so it happens once per process under a lock, never at
import time. The index is written by another process (``msearch embed`` / ``msearch index``,
atomically); each process reads it through a :class:`LiveIndex`, which loads it again when its
files change on disk, so a new embed run is picked up without restarting the server.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from flask import Flask

from manuscripts_search.index.live import LiveIndex
from manuscripts_search.index.vector_index import IndexReadError, VectorIndex

from .errors import AppError

log = logging.getLogger(__name__)

_EXTENSION = "msearch.resources"
NO_INDEX_MESSAGE = ("No search index yet: run msearch embed first "
                    "(it encodes the harvested canvases and builds the index).")


@dataclass
class SearchResources:
    model: str
    device: Optional[str]
    index_dir: Path
    index_check_interval: float  # seconds between checks of the index files for a newer save
    encoder: Any = None
    fallback_reason: Optional[str] = None  # why the configured model is not the encoder in use
    loaded_at: float = 0.0
    live_indexes: dict[str, LiveIndex] = field(default_factory=dict)
    encoder_lock: threading.Lock = field(default_factory=threading.Lock)
    index_lock: threading.Lock = field(default_factory=threading.Lock)


def init_app(app: Flask, model: str, device: Optional[str], index_dir: Path,
             index_check_interval: float = 1.0) -> None:
    app.extensions[_EXTENSION] = SearchResources(model=model, device=device, index_dir=Path(index_dir),
                                                 index_check_interval=index_check_interval)


def _resources(app: Flask) -> SearchResources:
    return app.extensions[_EXTENSION]


def get_encoder(app: Flask):
    """The app's image encoder, loaded on first call: the configured vision-language model, or,
    when it cannot be loaded, the handcrafted fallback (image similarity only; its
    ``supports_text`` is False) with :func:`encoder_fallback_reason` saying why. While on the
    fallback, the model is tried again at most once a minute, so fixing MSEARCH_MODEL's directory
    needs no restart.

    Raises AppError (503) only when no encoder at all can be made.
    """
    resources = _resources(app)
    stale_fallback = resources.fallback_reason is not None and time.monotonic() - resources.loaded_at > 60
    if resources.encoder is None or stale_fallback:
        with resources.encoder_lock:
            if resources.encoder is None or stale_fallback:
                from manuscripts_search.embedding.registry import resolve_image_encoder
                from manuscripts_search.embedding.encoders import EncoderLoadError

                try:
                    resolved = resolve_image_encoder(resources.model, device=resources.device, fallback=True)
                    encoder, reason = resolved.encoder, resolved.fallback_reason
                except (EncoderLoadError, ValueError) as error:
                    log.error("cannot load the search model: %s", error)
                    raise AppError(f"The search model cannot be loaded: {error}", 503) from None
                if reason:
                    log.error("cannot load the search model, using the handcrafted fallback: %s", reason)
                resources.encoder, resources.fallback_reason = encoder, reason
                resources.loaded_at = time.monotonic()
    return resources.encoder


def encoder_fallback_reason(app: Flask) -> Optional[str]:
    """Why the configured model is not the encoder in use (None when it is, or none is loaded)."""
    return _resources(app).fallback_reason


def has_any_index(app: Flask) -> bool:
    """Whether any index was ever saved (of any layout: each has its metadata file); answering
    this needs no model."""
    index_dir = _resources(app).index_dir
    return index_dir.is_dir() and any(index_dir.glob("*.json"))


def get_index(app: Flask, space: str) -> VectorIndex:
    """The saved index of embedding ``space``, as it is on disk now (reloaded after a new save).

    Raises AppError (503) when there is no index for ``space`` or it cannot be read.
    """
    resources = _resources(app)
    with resources.index_lock:
        live = resources.live_indexes.get(space)
        if live is None:
            live = resources.live_indexes[space] = LiveIndex(
                resources.index_dir, space, check_interval=resources.index_check_interval)
    try:
        index = live.get()
    except IndexReadError as error:
        log.error("cannot read the search index: %s", error)
        raise AppError(f"The search index cannot be read: {error}", 503) from None
    if index is None:
        raise AppError(f"{NO_INDEX_MESSAGE} (No index for the model space {space!r}.)", 503)
    return index


def saved_indexes(app: Flask) -> list[dict]:
    """What each saved index's metadata says (space, vector count, dimension), without loading it."""
    index_dir = _resources(app).index_dir
    if not index_dir.is_dir():
        return []
    summaries = []
    for meta_path in sorted(index_dir.glob("*.json")):
        try:
            meta = json.loads(meta_path.read_text())
            summaries.append({"space": str(meta["space"]), "vectors": int(meta["count"]),
                              "dim": int(meta["dim"]), "layout": str(meta.get("layout", "hnsw"))})
        except (OSError, ValueError, KeyError, TypeError):
            summaries.append({"space": None, "file": meta_path.name, "error": "unreadable metadata"})
    return summaries
