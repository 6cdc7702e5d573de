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

from manuscripts_search.distributed.runtime import RayUnavailableError
from manuscripts_search.index.vector_index import IndexReadError
from manuscripts_search.search.space_index import LiveSpaceIndex, SpaceIndex

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
    live_indexes: dict[str, LiveSpaceIndex] = field(default_factory=dict)
    search_backend: str = "local"  # where a sharded index's shards are searched: local | ray
    ray_address: Optional[str] = None
    shard_deadline: float = 2.0
    encoder_lock: threading.Lock = field(default_factory=threading.Lock)
    index_lock: threading.Lock = field(default_factory=threading.Lock)
    retry_interval: float = 60.0  # seconds before the first background retry of the model
    retry_delay: float = 60.0  # the current wait (doubles after each failed retry)
    retrying: bool = False
    retries: int = 0  # background attempts made (for the admin page and tests)
    retry_lock: threading.Lock = field(default_factory=threading.Lock)


def init_app(app: Flask, model: str, device: Optional[str], index_dir: Path,
             index_check_interval: float = 1.0, model_retry_interval: float = 60.0,
             search_backend: str = "local", ray_address: Optional[str] = None,
             shard_deadline: float = 2.0) -> None:
    app.extensions[_EXTENSION] = SearchResources(model=model, device=device, index_dir=Path(index_dir),
                                                 index_check_interval=index_check_interval,
                                                 retry_interval=model_retry_interval,
                                                 retry_delay=model_retry_interval,
                                                 search_backend=search_backend, ray_address=ray_address,
                                                 shard_deadline=shard_deadline)


def _resources(app: Flask) -> SearchResources:
    return app.extensions[_EXTENSION]


def get_encoder(app: Flask):
    """The app's image encoder, loaded on first call: the configured vision-language model, or,
    when it cannot be loaded, the handcrafted fallback (image similarity only; its
    ``supports_text`` is False) with :func:`encoder_fallback_reason` saying why.

    While on the fallback, the model is tried again in a background thread, after
    ``MODEL_RETRY_INTERVAL`` seconds and then twice as long each time (to 16 times); a request
    never waits for a retry — loading through an unreachable hub takes tens of seconds — and
    uses whatever is loaded now, so fixing MSEARCH_MODEL needs no restart and stalls no one.

    Raises AppError (503) only when no encoder at all can be made.
    """
    resources = _resources(app)
    if resources.encoder is None:
        with resources.encoder_lock:
            if resources.encoder is None:
                encoder, reason = _load_encoder(resources)
                if encoder is None:
                    raise AppError(f"The search model cannot be loaded: {reason}", 503)
                resources.encoder, resources.fallback_reason = encoder, reason
                resources.loaded_at = time.monotonic()
    if resources.fallback_reason is not None:
        _schedule_retry(resources)
    return resources.encoder


def _load_encoder(resources: SearchResources):
    """(encoder, why it is the fallback or None); (None, reason) when nothing can be made."""
    from manuscripts_search.embedding.encoders import EncoderLoadError
    from manuscripts_search.embedding.registry import resolve_image_encoder

    try:
        resolved = resolve_image_encoder(resources.model, device=resources.device, fallback=True)
    except (EncoderLoadError, ValueError) as error:
        log.error("cannot load the search model: %s", error)
        return None, str(error)
    if resolved.fallback_reason:
        log.error("cannot load the search model, using the handcrafted fallback: %s", resolved.fallback_reason)
    return resolved.encoder, resolved.fallback_reason


def _schedule_retry(resources: SearchResources) -> None:
    """Start one background attempt at the configured model when the next one is due."""
    now = time.monotonic()
    with resources.retry_lock:
        if resources.retrying or now < resources.loaded_at + resources.retry_delay:
            return
        resources.retrying = True
    threading.Thread(target=_retry_model, args=(resources,), name="msearch-model-retry", daemon=True).start()


def _retry_model(resources: SearchResources) -> None:
    try:
        encoder, reason = _load_encoder(resources)
        if encoder is not None and reason is None:
            log.info("the search model %s loaded; leaving the handcrafted fallback", resources.model)
            with resources.encoder_lock:
                resources.encoder, resources.fallback_reason = encoder, None
        else:
            resources.retry_delay = min(resources.retry_delay * 2, 16 * resources.retry_interval)
    finally:
        resources.loaded_at = time.monotonic()
        with resources.retry_lock:
            resources.retrying = False
        resources.retries += 1


def encoder_fallback_reason(app: Flask) -> Optional[str]:
    """Why the configured model is not the encoder in use (None when it is, or none is loaded)."""
    return _resources(app).fallback_reason


def has_any_index(app: Flask) -> bool:
    """Whether any index was ever saved (of any layout: each has its metadata file); answering
    this needs no model."""
    index_dir = _resources(app).index_dir
    return index_dir.is_dir() and any(index_dir.glob("*.json"))


def get_index(app: Flask, space: str) -> SpaceIndex:
    """The saved index of embedding ``space``, as it is on disk now (reloaded after a new save):
    one index, or its shards (searched here or on Ray Serve: MSEARCH_SEARCH_BACKEND).

    Raises AppError (503) when there is no index for ``space`` or it cannot be read or reached.
    """
    resources = _resources(app)
    with resources.index_lock:
        live = resources.live_indexes.get(space)
        if live is None:
            # Text spaces are never sharded: they are searched here whatever the backend.
            backend = "local" if space.startswith("text:") else resources.search_backend
            live = resources.live_indexes[space] = LiveSpaceIndex(
                resources.index_dir, space, check_interval=resources.index_check_interval, backend=backend,
                ray_address=resources.ray_address, deadline_s=resources.shard_deadline)
    try:
        index = live.get()
    except IndexReadError as error:
        log.error("cannot read the search index: %s", error)
        raise AppError(f"The search index cannot be read: {error}", 503) from None
    except RayUnavailableError as error:
        log.error("cannot reach the index shards on Ray: %s", error)
        raise AppError(f"The search index shards cannot be reached: {error}", 503) from None
    if index is None:
        raise AppError(f"{NO_INDEX_MESSAGE} (No index for the model space {space!r}.)", 503)
    return index


def saved_indexes(app: Flask) -> list[dict]:
    """What each saved index's metadata says (space, vector count, dimension), without loading it."""
    index_dir = _resources(app).index_dir
    if not index_dir.is_dir():
        return []
    summaries = []
    sharded: dict[str, dict] = {}  # a sharded space is one entry, its shards summed
    for meta_path in sorted(index_dir.glob("*.json")):
        if meta_path.name.endswith(".shards.json"):
            continue  # a shard plan: its shards' own metadata are read below
        try:
            meta = json.loads(meta_path.read_text())
            space, layout = str(meta["space"]), str(meta.get("layout", "hnsw"))
            summary = {"space": space, "vectors": int(meta["count"]), "dim": int(meta["dim"]), "layout": layout}
        except (OSError, ValueError, KeyError, TypeError):
            summaries.append({"space": None, "file": meta_path.name, "error": "unreadable metadata"})
            continue
        owner, marker, _which = space.rpartition("#shard-")
        if not marker:
            summaries.append(summary)
        elif owner in sharded:
            sharded[owner]["vectors"] += summary["vectors"]
            sharded[owner]["shards"] += 1
        else:
            sharded[owner] = summaries.append({**summary, "space": owner, "shards": 1}) or summaries[-1]
    return summaries
