"""Perceptual hashes stored per canvas and region image, and near-duplicate search over them:
"other digitisations of this same page", re-encoded, resized or slightly cropped, across
institutions.

The embedding worker computes the hashes (:func:`image_hashes`) while it decodes each image and
stores them with :func:`store_hashes`. Two searches read them:

- :func:`load_canvas_hashes` gives ``(canvas_id, 64-bit hash)`` pairs for
  :mod:`manuscripts_search.near_duplicates` (Hamming distance of 64 bits: re-encodings and resizes);
- :func:`find_near_duplicates` compares the 256-bit crop hashes both ways (whole image against
  the other's crops), which also finds copies cut by a few percent (see :mod:`.phash`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
from PIL import Image
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from . import phash
from .models import PerceptualHash
from .models.base import utcnow

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
    from .claims import dialect_insert

    for regions in (False, True):
        values = [{"canvas_id": canvas_id, "region_id": region_id, "derivative_sha256": sha,
                   "algorithm": HASH_ALGORITHM, "phash64": phash.to_signed64(hashes.phash64),
                   "crop_hashes": phash.pack_hashes(hashes.crop_hashes), "created_at": utcnow()}
                  for canvas_id, region_id, sha, hashes in sorted(rows, key=lambda row: (row[0], row[1] or 0))
                  if (region_id is not None) == regions]
        if not values:
            continue
        statement = dialect_insert(session)(PerceptualHash).values(values)
        key, where = (["region_id"], text("region_id IS NOT NULL")) if regions else \
            (["canvas_id"], text("region_id IS NULL"))
        changed = {name: statement.excluded[name] for name in values[0] if name not in key}
        session.execute(statement.on_conflict_do_update(index_elements=key, index_where=where, set_=changed))


def load_canvas_hashes(session: Session) -> Iterator[tuple[int, int]]:
    """``(canvas_id, signed 64-bit hash)`` of every canvas hashed with the current recipe."""
    yield from session.execute(select(PerceptualHash.canvas_id, PerceptualHash.phash64).where(
        PerceptualHash.region_id.is_(None), PerceptualHash.algorithm == HASH_ALGORITHM)
        .order_by(PerceptualHash.canvas_id))


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
    statement = select(PerceptualHash.canvas_id, PerceptualHash.region_id, PerceptualHash.crop_hashes).where(
        PerceptualHash.algorithm == HASH_ALGORITHM).order_by(PerceptualHash.id)
    if not include_regions:
        statement = statement.where(PerceptualHash.region_id.is_(None))
    rows = session.execute(statement).all()
    if not rows:
        return []
    stored = phash.hashes_as_words([blob for _, _, blob in rows])
    distances = crop_distances(query, stored)
    hits = [NearDuplicate(int(row[0]), None if row[1] is None else int(row[1]), int(distance))
            for row, distance in zip(rows, distances) if distance <= max_distance
            and not (canvas_id is not None and row[0] == canvas_id and row[1] is None)]
    hits.sort(key=lambda hit: (hit.distance, hit.canvas_id, hit.region_id or 0))
    return hits[:limit] if limit is not None else hits


def crop_distances(query: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """:func:`phash.crop_distance` of one image (variants, words) against many (n, variants, words)."""
    whole_vs_crops = _popcount(np.bitwise_xor(stored, query[0][None, None, :])).min(axis=1)
    crops_vs_whole = _popcount(np.bitwise_xor(stored[:, :1, :], query[None, :, :])).min(axis=1)
    return np.minimum(whole_vs_crops, crops_vs_whole)


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per hash: sums over the last axis (the 64-bit words of one hash)."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(words).sum(axis=-1, dtype=np.int64)
    as_bytes = words.view(np.uint8).reshape(*words.shape, 8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=(-1, -2), dtype=np.int64)
