"""Perceptual hashes for near-duplicate (instance-level) matching: the same page re-encoded,
resized or slightly cropped gives hashes that differ in few bits; another page does not.

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
bytes. Pure numpy and Pillow.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image

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


def image_hashes(image: Image.Image) -> tuple[int, list[int]]:
    """Both kinds at once, from one grey copy: (64-bit hash, crop hashes)."""
    grey = _grey(image)
    whole = _dct_bits(_squares(grey, [(0, 0, *grey.size)], 32), 8)[0]
    return whole, _dct_bits(_squares(grey, _crop_boxes(*grey.size), 64), 16)


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
