"""Near-duplicate search by perceptual hash: other digitisations, crops and re-encodings of the
same page, found by Hamming distance between 64-bit hashes.

The hashes are computed and stored by the embedding worker (its table, its module); this module
only searches them, through one function interface: a loader returning ``(canvas_id, hash)``
pairs, where a hash is an int (signed or unsigned 64-bit), 16 hex digits, or 8 bytes. A linear
scan with a vectorised popcount is exact and takes about 2 ms per million hashes, so no index
is needed at the scale of a library's catalogue.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Union

import numpy as np
from sqlalchemy.orm import Session

HashValue = Union[int, str, bytes]
HashLoader = Callable[[Session], Iterable[tuple[int, HashValue]]]
DEFAULT_MAX_DISTANCE = 10  # of 64 bits; resized, re-encoded or slightly cropped copies stay below


class NearDuplicateError(ValueError):
    """The query cannot be answered (no hash for the canvas, hashes not available, bad value)."""


@dataclass
class DuplicateHit:
    canvas_id: int
    distance: int  # differing bits, 0..64
    similarity: float  # 1 - distance / 64

    def as_dict(self) -> dict:
        return {"canvas_id": self.canvas_id, "distance": self.distance, "similarity": round(self.similarity, 4)}


def hash_to_uint64(value: HashValue) -> np.uint64:
    """One stored hash as an unsigned 64-bit integer; raises NearDuplicateError when malformed."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) != 8:
            raise NearDuplicateError(f"a perceptual hash has 8 bytes, got {len(value)}")
        return np.uint64(int.from_bytes(bytes(value), "big"))
    if isinstance(value, str):
        try:
            return np.uint64(int(value, 16) & 0xFFFF_FFFF_FFFF_FFFF)
        except ValueError:
            raise NearDuplicateError(f"not a hexadecimal perceptual hash: {value[:40]!r}") from None
    if isinstance(value, (int, np.integer)):
        return np.uint64(int(value) & 0xFFFF_FFFF_FFFF_FFFF)  # signed BIGINT columns wrap around
    raise NearDuplicateError(f"unsupported perceptual hash type {type(value).__name__}")


def hamming_search(query: HashValue, canvas_ids: np.ndarray, hashes: np.ndarray,
                   max_distance: int = DEFAULT_MAX_DISTANCE, limit: Optional[int] = None) -> list[DuplicateHit]:
    """Canvases whose hash differs from ``query`` in at most ``max_distance`` bits, closest first
    (ties by canvas id). ``hashes`` is a uint64 array aligned with ``canvas_ids``."""
    if not 0 <= max_distance <= 64:
        raise NearDuplicateError(f"max distance must be between 0 and 64 bits, got {max_distance}")
    if len(hashes) == 0:
        return []
    distances = _popcount(np.bitwise_xor(hashes.astype(np.uint64), hash_to_uint64(query)))
    close = np.flatnonzero(distances <= max_distance)
    order = close[np.lexsort((canvas_ids[close], distances[close]))]
    if limit is not None:
        order = order[:limit]
    return [DuplicateHit(int(canvas_ids[i]), int(distances[i]), 1.0 - int(distances[i]) / 64) for i in order]


_BYTE_BITS = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)


def _popcount(values: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(values).astype(np.int64)
    return _BYTE_BITS[values.view(np.uint8).reshape(-1, 8)].sum(axis=1, dtype=np.int64)


def near_duplicates(session: Session, canvas_id: int, load_hashes: HashLoader,
                    max_distance: int = DEFAULT_MAX_DISTANCE, limit: Optional[int] = 100) -> list[DuplicateHit]:
    """Canvases that look like near-duplicates of ``canvas_id`` (itself excluded).

    Raises NearDuplicateError when the canvas has no hash.
    """
    pairs = [(int(c), hash_to_uint64(h)) for c, h in load_hashes(session) if h is not None]
    ids = np.fromiter((c for c, _ in pairs), dtype=np.int64, count=len(pairs))
    values = np.fromiter((h for _, h in pairs), dtype=np.uint64, count=len(pairs))
    own = np.flatnonzero(ids == canvas_id)
    if len(own) == 0:
        raise NearDuplicateError(f"canvas {canvas_id} has no perceptual hash (unknown canvas, or not "
                                 "processed by `msearch embed` yet)")
    hits = hamming_search(values[own[0]], ids, values, max_distance, None)
    hits = [hit for hit in hits if hit.canvas_id != canvas_id]
    return hits[:limit] if limit is not None else hits
