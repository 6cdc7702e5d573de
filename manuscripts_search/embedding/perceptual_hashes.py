"""Perceptual hashes stored per canvas and region image, and near-duplicate search over them:
"other digitisations of this same page", re-encoded, resized or slightly cropped, across
institutions.

The embedding worker computes the hashes (:func:`image_hashes`) while it decodes each image and
stores them with :func:`store_hashes`. :func:`find_near_duplicates` compares the 256-bit crop hashes both ways (whole image against
  the other's crops), which also finds copies cut by a few percent (see :mod:`.phash`).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from . import phash
from ..models import PerceptualHash
from ..models.base import utcnow

# Names the hash recipe: stored rows of another recipe count as missing and are recomputed.
HASH_ALGORITHM = f"dct64+dct256x{phash.CROP_VARIANTS}-v1"
perceptual_hash = phash.perceptual_hash  # what the web app hashes a drawn region with


class HashLookupError(ValueError):
    """A near-duplicate query cannot be answered (no hashes for that canvas); says why."""


@dataclass(frozen=True)
class ImageHashes:
    phash64: int  # unsigned
    crop_hashes: tuple[int, ...]


@dataclass(frozen=True)
class NearDuplicate:
    canvas_id: int
    region_id: Optional[int]
    distance: int  # differing bits of 256 (crop hashes)

    @property
    def similarity(self) -> float:
        return 1.0 - self.distance / phash.CROP_HASH_BITS

    def as_dict(self) -> dict:
        return {"canvas_id": self.canvas_id, "region_id": self.region_id, "distance": self.distance,
                "similarity": round(self.similarity, 4)}


def image_hashes(image: Image.Image) -> ImageHashes:
    """Both hashes of one image. Raises TypeError for a non-image, ValueError for an empty one."""
    whole, crops = phash.image_hashes(image)
    return ImageHashes(whole, tuple(crops))


def store_hashes(session: Session, canvas_id: int, region_id: Optional[int], derivative_sha256: str,
                 hashes: ImageHashes) -> None:
    """Insert or replace the hashes of one canvas or region."""
    store_many_hashes(session, [(canvas_id, region_id, derivative_sha256, hashes)])


def store_many_hashes(session: Session, rows: list[tuple[int, Optional[int], str, ImageHashes]]) -> None:
    """Insert or replace the hashes of ``(canvas id, region id or None, derivative, hashes)`` rows:
    one upsert statement for canvases, one for regions (workers of two model spaces may hash the
    same image at the same time; rows are written in id order so their locks never cross)."""
    from ..store.claims import dialect_insert

    for regions in (False, True):
        values = [{"canvas_id": canvas_id, "region_id": region_id, "derivative_sha256": sha,
                   "algorithm": HASH_ALGORITHM, "phash64": phash.to_signed64(hashes.phash64),
                   "crop_hashes": phash.pack_hashes(hashes.crop_hashes), "created_at": utcnow()}
                  for canvas_id, region_id, sha, hashes in sorted(rows, key=lambda row: (row[0], row[1] or 0))
                  if (region_id is not None) == regions]
        if not values:
            continue
        _written()
        statement = dialect_insert(session)(PerceptualHash).values(values)
        key, where = (["region_id"], text("region_id IS NOT NULL")) if regions else \
            (["canvas_id"], text("region_id IS NULL"))
        changed = {name: statement.excluded[name] for name in values[0] if name not in key}
        session.execute(statement.on_conflict_do_update(index_elements=key, index_where=where, set_=changed))


def _written() -> None:
    global _generation
    with _stored_lock:
        _generation += 1


def _words(hashes) -> np.ndarray:
    return phash.hashes_as_words([phash.pack_hashes(hashes)])[0]


def find_near_duplicates(session: Session, *, canvas_id: Optional[int] = None, image: Optional[Image.Image] = None,
                         max_distance: int = phash.CROP_MATCH_BITS, include_regions: bool = False,
                         limit: Optional[int] = 100) -> list[NearDuplicate]:
    """Canvases (and, with ``include_regions``, regions) whose image is a near-duplicate of
    canvas ``canvas_id`` or of ``image``, closest first (the canvas itself left out).

    Raises HashLookupError when the canvas has no hashes yet, ValueError for a bad argument.
    """
    if (canvas_id is None) == (image is None):
        raise ValueError("give either canvas_id or image")
    if not 0 <= max_distance <= phash.CROP_HASH_BITS:
        raise ValueError(f"max distance must be between 0 and {phash.CROP_HASH_BITS} bits, got {max_distance}")
    if image is not None:
        query = _words(image_hashes(image).crop_hashes)
    else:
        blob = session.scalar(select(PerceptualHash.crop_hashes).where(
            PerceptualHash.canvas_id == canvas_id, PerceptualHash.region_id.is_(None),
            PerceptualHash.algorithm == HASH_ALGORITHM))
        if blob is None:
            raise HashLookupError(f"canvas {canvas_id} has no perceptual hashes (unknown canvas, or not "
                                  "processed by `msearch embed` yet)")
        query = phash.hashes_as_words([blob])[0]
    stored = stored_hashes(session, include_regions)
    if not len(stored.canvas_ids):
        return []
    distances = crop_distances(query, stored.words)
    close = np.flatnonzero(distances <= max_distance)
    hits = [NearDuplicate(int(stored.canvas_ids[i]), None if stored.region_ids[i] < 0 else int(stored.region_ids[i]),
                          int(distances[i]))
            for i in close if not (canvas_id is not None and stored.canvas_ids[i] == canvas_id
                                   and stored.region_ids[i] < 0)]
    hits.sort(key=lambda hit: (hit.distance, hit.canvas_id, hit.region_id or 0))
    return hits[:limit] if limit is not None else hits


@dataclass(frozen=True)
class StoredHashes:
    """Every stored crop hash of the current recipe, as arrays; ``region_ids`` is -1 for canvases."""

    signature: tuple  # (rows, largest id, latest write): changes whenever a row is added, replaced or deleted
    canvas_ids: np.ndarray
    region_ids: np.ndarray
    words: np.ndarray  # (rows, variants, 4) uint64


_stored_lock = threading.Lock()
_stored: dict[tuple[str, bool], tuple[StoredHashes, float, int]] = {}  # copy, when checked, generation
_generation = 0  # bumped by every write of this process: its own writes are seen at once
CHECK_INTERVAL_S = 10.0  # other processes' writes are seen within this long (checking scans the table)
loads = 0  # how many times the hashes were read from the database (for tests and benchmarks)


def stored_hashes(session: Session, include_regions: bool = False) -> StoredHashes:
    """The stored hashes, kept in memory between queries while the table is unchanged.

    Reading them is most of what a near-duplicate query costs (5.6 s per million canvases from
    SQLite, measured by bench/duplicates.py); comparing them takes a tenth of that. So a process
    keeps the last copy per database and, at most every CHECK_INTERVAL_S, checks an aggregate of
    the table (rows, largest id, latest write; itself a scan, 0.5 s per million) before using
    it: a web process answers from memory until `msearch embed` writes new hashes, and sees them
    within seconds. Its own writes are seen at once. Memory: 288 bytes per canvas (~275 MiB per
    million).
    """
    global loads
    import time

    where = [PerceptualHash.algorithm == HASH_ALGORITHM]
    if not include_regions:
        where.append(PerceptualHash.region_id.is_(None))
    key = (session.get_bind().url.render_as_string(hide_password=True), include_regions)
    now = time.monotonic()
    with _stored_lock:
        cached, checked_at, generation = _stored.get(key, (None, 0.0, -1))
        if cached is not None and generation == _generation and now - checked_at < CHECK_INTERVAL_S:
            return cached
    signature = tuple(session.execute(select(func.count(PerceptualHash.id), func.max(PerceptualHash.id),
                                             func.max(PerceptualHash.created_at)).where(*where)).one())
    with _stored_lock:
        generation = _generation
        cached = (_stored.get(key) or (None,))[0]
        if cached is not None and cached.signature == signature:
            _stored[key] = (cached, now, generation)
            return cached
        rows = session.execute(select(PerceptualHash.canvas_id, PerceptualHash.region_id, PerceptualHash.crop_hashes)
                               .where(*where).order_by(PerceptualHash.id)).all()
        loaded = StoredHashes(signature, np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)),
                              np.fromiter((-1 if row[1] is None else row[1] for row in rows), dtype=np.int64,
                                          count=len(rows)),
                              phash.hashes_as_words([row[2] for row in rows]))
        _stored[key] = (loaded, now, generation)
        loads += 1
        return loaded


def crop_distances(query: np.ndarray, stored: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """:func:`phash.crop_distance` of one image (variants, words) against many (n, variants, words).
    Done in chunks, so that the temporaries stay small and in cache (a sixth faster at 1M)."""
    distances = np.empty(len(stored), dtype=np.int64)
    for start in range(0, len(stored), chunk):
        part = stored[start:start + chunk]
        whole_vs_crops = _popcount(np.bitwise_xor(part, query[0][None, None, :])).min(axis=1)
        crops_vs_whole = _popcount(np.bitwise_xor(part[:, :1, :], query[None, :, :])).min(axis=1)
        np.minimum(whole_vs_crops, crops_vs_whole, out=distances[start:start + chunk])
    return distances


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per hash: sums over the last axis (the 64-bit words of one hash)."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        counts = np.bitwise_count(words)
        # Adding the few words' counts one by one in 16 bits is twice as fast as a reduction.
        total = counts[..., 0].astype(np.uint16)
        for word in range(1, counts.shape[-1]):
            total += counts[..., word]
        return total
    as_bytes = words.view(np.uint8).reshape(*words.shape, 8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=(-1, -2), dtype=np.int64)
