"""Perceptual hashes for near-duplicate (instance-level) matching: computing them, storing them
per canvas and region image, and searching them ("other digitisations of this same page",
re-encoded, resized or slightly cropped, across institutions). The same page gives hashes
that differ in few bits; another page does not.

Two DCT hashes ("pHash"): the image as grey levels on a small square, its 2-D DCT, and one bit per
low-frequency coefficient, set when the coefficient is above their median (the DC term left out).
Low frequencies survive JPEG re-encoding and resizing almost unchanged.

- :func:`perceptual_hash`: the classic 64-bit hash (8x8 frequencies of a 32x32 image). Compact and
  good for re-encodings and resizes, but a crop of a few percent moves it by 10-25 bits, about as
  far as two different pages of one manuscript (measured on the corpus pages: 12 bits apart).
- :func:`crop_hashes`: 256-bit hashes (16x16 frequencies of a 64x64 image) of the whole image and of
  18 crops (92% and 96% of each side, anchored at the corners, edge centres and centre). A copy cut
  by a few percent on any sides lines up with one of those crops; comparing the whole image of one
  against the crops of the other, both ways (:func:`crop_distance`), finds it. More bits keep
  different pages apart. Measured on the 31 corpus images: copies re-encoded (JPEG quality 20-90),
  shrunk (to 30-100%) and cut (up to 4% per side) stay within 48 bits; the two closest different
  pages (two Florentine manuscripts of one layout) are 62 bits apart; :data:`CROP_MATCH_BITS`
  sits between.

Hashes are unsigned ints here; :func:`to_signed64` / :func:`from_signed64` convert the 64-bit one
for a signed BIGINT column, :func:`pack_hashes` / :func:`unpack_hashes` store 256-bit ones as
bytes. The hashing itself is pure numpy and Pillow.

The embedding worker computes both kinds (:func:`image_hashes`) while it decodes each image
and stores them with :func:`store_hashes`; :func:`find_near_duplicates` compares the 256-bit
crop hashes both ways, which also finds copies cut by a few percent.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

import numpy as np
from PIL import Image
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from ..models import PerceptualHash
from ..models.base import utcnow


HASH_BITS = 64
CROP_HASH_BITS = 256
CROP_HASH_BYTES = CROP_HASH_BITS // 8
# Crops hashed besides the whole image: share of each side kept, and where the crop sits along
# each axis (0 = at the left/top edge, 0.5 centred, 1 = at the right/bottom edge).
CROP_SCALES: tuple[float, ...] = (0.96, 0.92)
CROP_ANCHORS: tuple[float, ...] = (0.0, 0.5, 1.0)
CROP_VARIANTS = 1 + len(CROP_SCALES) * len(CROP_ANCHORS) ** 2
# Largest distance (of 256 bits) at which crop hashes call two images the same; see above.
CROP_MATCH_BITS = 55
_WORKING_SIDE = 128  # grey copy the crops are cut from: a 64 px hash of a crop needs no more
_MASK64 = (1 << 64) - 1


@lru_cache(maxsize=4)
def _dct_matrix(side: int) -> np.ndarray:
    """The orthonormal DCT-II matrix (rows are frequencies)."""
    k = np.arange(side)[:, None]
    i = np.arange(side)[None, :]
    matrix = np.cos(np.pi * (2 * i + 1) * k / (2 * side)) * np.sqrt(2.0 / side)
    matrix[0] /= np.sqrt(2.0)
    return matrix


def _grey(image: Image.Image) -> Image.Image:
    """A grey copy no larger than the working size (a box filter first, so text lines do not alias)."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ValueError(f"cannot hash an empty image ({image.width}x{image.height})")
    grey = image.convert("L")
    factor = max(grey.width, grey.height) // _WORKING_SIDE
    if factor >= 2:
        grey = grey.reduce(factor)
    return grey


def _dct_bits(grey_squares: np.ndarray, low: int) -> list[int]:
    """One hash per square grey array in ``grey_squares`` (n, side, side)."""
    dct = _dct_matrix(grey_squares.shape[-1])
    coefficients = (dct @ grey_squares @ dct.T)[:, :low, :low].reshape(len(grey_squares), -1)
    # The median leaves out the DC term (overall brightness), which would skew it on dark pages.
    bits = coefficients > np.median(coefficients[:, 1:], axis=1, keepdims=True)
    packed = np.packbits(bits.astype(np.uint8), axis=1)
    return [int.from_bytes(row.tobytes(), "big") for row in packed]


def _squares(grey: Image.Image, boxes: list[tuple[int, int, int, int]], side: int) -> np.ndarray:
    return np.stack([np.asarray(grey.resize((side, side), Image.Resampling.BILINEAR, box=box), dtype=np.float64)
                     for box in boxes])


def perceptual_hash(image: Image.Image) -> int:
    """The 64-bit DCT pHash of ``image`` as an unsigned int.

    Raises TypeError when ``image`` is not a PIL image, ValueError for an empty image.
    """
    grey = _grey(image)
    return _dct_bits(_squares(grey, [(0, 0, *grey.size)], 32), 8)[0]


def _crop_boxes(width: int, height: int) -> list[tuple[int, int, int, int]]:
    boxes = [(0, 0, width, height)]
    for scale in CROP_SCALES:
        keep_w, keep_h = max(1, round(width * scale)), max(1, round(height * scale))
        for anchor_y in CROP_ANCHORS:
            for anchor_x in CROP_ANCHORS:
                left, top = round((width - keep_w) * anchor_x), round((height - keep_h) * anchor_y)
                boxes.append((left, top, left + keep_w, top + keep_h))
    return boxes


def crop_hashes(image: Image.Image) -> list[int]:
    """:data:`CROP_VARIANTS` 256-bit hashes: the whole image first, then its crops.

    Raises TypeError when ``image`` is not a PIL image, ValueError for an empty image.
    """
    grey = _grey(image)
    return _dct_bits(_squares(grey, _crop_boxes(*grey.size), 64), 16)


def hamming_distance(first: int, second: int) -> int:
    """Bits that differ between two hashes of one kind (64-bit ones signed or unsigned)."""
    if first < 0 or second < 0:
        first, second = first & _MASK64, second & _MASK64
    return (first ^ second).bit_count()


def crop_distance(first: Sequence[int], second: Sequence[int]) -> int:
    """How far apart two images are by their crop hashes: the smaller of (whole first vs every
    crop of second) and (whole second vs every crop of first).

    Comparing crops with crops is left out on purpose: it adds many chances for two different
    pages to look alike. Raises ValueError when either side has no hash.
    """
    if not first or not second:
        raise ValueError("both images need their crop hashes")
    return min(min(hamming_distance(first[0], other) for other in second),
               min(hamming_distance(second[0], other) for other in first))


def to_signed64(value: int) -> int:
    """An unsigned 64-bit hash as the signed value a BIGINT column holds."""
    value &= _MASK64
    return value - (1 << 64) if value >= (1 << 63) else value


def from_signed64(value: int) -> int:
    """A BIGINT column's value back as the unsigned 64-bit hash."""
    return value & _MASK64


def hash_hex(value: int, bits: int = HASH_BITS) -> str:
    """Hex digits, the usual way to show a hash (16 for 64 bits)."""
    return f"{value & ((1 << bits) - 1):0{bits // 4}x}"


def pack_hashes(hashes: Sequence[int]) -> bytes:
    """Crop hashes as bytes, 32 per hash, big-endian."""
    return b"".join(value.to_bytes(CROP_HASH_BYTES, "big") for value in hashes)


def unpack_hashes(blob: bytes) -> list[int]:
    """The inverse of :func:`pack_hashes`; raises ValueError for a length that is not a multiple of 32."""
    if len(blob) % CROP_HASH_BYTES:
        raise ValueError(f"packed crop hashes must be a multiple of {CROP_HASH_BYTES} bytes, got {len(blob)}")
    return [int.from_bytes(blob[start:start + CROP_HASH_BYTES], "big")
            for start in range(0, len(blob), CROP_HASH_BYTES)]


def hashes_as_words(blobs: Sequence[bytes]) -> np.ndarray:
    """Packed crop hashes of many images as a uint64 array (images, variants, 4 words), for
    vectorised comparison; every blob must hold the same number of hashes."""
    if not blobs:
        return np.zeros((0, CROP_VARIANTS, CROP_HASH_BITS // 64), dtype=np.uint64)
    joined = np.frombuffer(b"".join(blobs), dtype=">u8").astype(np.uint64)
    return joined.reshape(len(blobs), -1, CROP_HASH_BITS // 64)


# -- stored hashes and near-duplicate search ------------------------------------------------------


# Names the hash recipe: stored rows of another recipe count as missing and are recomputed.
HASH_ALGORITHM = f"dct64+dct256x{CROP_VARIANTS}-v1"


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
        return 1.0 - self.distance / CROP_HASH_BITS

    def as_dict(self) -> dict:
        return {"canvas_id": self.canvas_id, "region_id": self.region_id, "distance": self.distance,
                "similarity": round(self.similarity, 4)}


def image_hashes(image: Image.Image) -> ImageHashes:
    """Both hashes of one image. Raises TypeError for a non-image, ValueError for an empty one."""
    grey = _grey(image)  # one grey copy for both kinds
    whole = _dct_bits(_squares(grey, [(0, 0, *grey.size)], 32), 8)[0]
    return ImageHashes(whole, tuple(_dct_bits(_squares(grey, _crop_boxes(*grey.size), 64), 16)))


def store_hashes(session: Session, canvas_id: int, region_id: Optional[int], derivative_sha256: str,
                 hashes: ImageHashes) -> None:
    """Insert or replace the hashes of one canvas or region."""
    store_many_hashes(session, [(canvas_id, region_id, derivative_sha256, hashes)])


def store_many_hashes(session: Session, rows: list[tuple[int, Optional[int], str, ImageHashes]]) -> None:
    """Insert or replace the hashes of ``(canvas id, region id or None, derivative, hashes)`` rows:
    one upsert statement for canvases, one for regions (workers of two model spaces may hash the
    same image at the same time; rows are written in id order so their locks never cross)."""
    from ..store.db import dialect_insert

    for regions in (False, True):
        values = [{"canvas_id": canvas_id, "region_id": region_id, "derivative_sha256": sha,
                   "algorithm": HASH_ALGORITHM, "phash64": to_signed64(hashes.phash64),
                   "crop_hashes": pack_hashes(hashes.crop_hashes), "created_at": utcnow()}
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
    return hashes_as_words([pack_hashes(hashes)])[0]


def find_near_duplicates(session: Session, *, canvas_id: Optional[int] = None, image: Optional[Image.Image] = None,
                         max_distance: int = CROP_MATCH_BITS, include_regions: bool = False,
                         limit: Optional[int] = 100) -> list[NearDuplicate]:
    """Canvases (and, with ``include_regions``, regions) whose image is a near-duplicate of
    canvas ``canvas_id`` or of ``image``, closest first (the canvas itself left out).

    Raises HashLookupError when the canvas has no hashes yet, ValueError for a bad argument.
    """
    if (canvas_id is None) == (image is None):
        raise ValueError("give either canvas_id or image")
    if not 0 <= max_distance <= CROP_HASH_BITS:
        raise ValueError(f"max distance must be between 0 and {CROP_HASH_BITS} bits, got {max_distance}")
    if image is not None:
        query = _words(image_hashes(image).crop_hashes)
    else:
        blob = session.scalar(select(PerceptualHash.crop_hashes).where(
            PerceptualHash.canvas_id == canvas_id, PerceptualHash.region_id.is_(None),
            PerceptualHash.algorithm == HASH_ALGORITHM))
        if blob is None:
            raise HashLookupError(f"canvas {canvas_id} has no perceptual hashes (unknown canvas, or not "
                                  "processed by `msearch embed` yet)")
        query = hashes_as_words([blob])[0]
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
                              hashes_as_words([row[2] for row in rows]))
        _stored[key] = (loaded, now, generation)
        loads += 1
        return loaded


def crop_distances(query: np.ndarray, stored: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """:func:`crop_distance` of one image (variants, words) against many (n, variants, words).
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
