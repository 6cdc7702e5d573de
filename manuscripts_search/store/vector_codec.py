"""How vectors are stored: the bytes of ``embeddings.vector``, ``text_vectors.vector`` and
``category_prototypes.vector``.

A stored vector is L2-normalised and written as little-endian float16: 2 bytes per dimension
(1,536 bytes for a 768-d vector; float32 took 3,072). The vectors are unit length, so every
component is at most 1 in magnitude and float16's 11-bit significand rounds each to within
2^-11 of itself (relative): the cosine between a vector and its stored copy is about 0.999999,
and k-NN over stored vectors finds the same neighbours (``bench/float16_recall.py``). Searches and
the HNSW index work in float32, from the decoded vectors, which are scaled back to unit length
(rounding leaves a float16 vector's norm up to ~5e-4 from 1, about 5e-5 for a 768-d one), so
dot products stay cosines, as they were with float32 rows.

Databases written before migration 0006 hold float32 rows (4 bytes per dimension), and a
database stopped halfway through that migration holds both. Every row has its ``dim``, so the
readers here tell the two apart by length: ``2 * dim`` bytes is float16, ``4 * dim`` is float32.
Every reader and writer of those columns goes through this module.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np

STORED_DTYPE = np.dtype("<f2")  # what is written
LEGACY_DTYPE = np.dtype("<f4")  # what databases before migration 0006 hold, still read
# A vector whose norm is this close to 1 is already unit length at float16 precision and is
# written as it is, so that encoding a decoded vector again gives the same bytes (every time in
# measurements from 64 dimensions up; a very short vector may move by one float16 step).
_UNIT_TOLERANCE = 1e-3


def stored_size(dim: int) -> int:
    """Bytes of a stored (float16) vector of ``dim`` dimensions."""
    return STORED_DTYPE.itemsize * int(dim)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` (2-D float) with each row scaled to unit length, unless it already is (within
    float16 precision) or is all zeros. Raises ValueError for non-finite values."""
    if not np.all(np.isfinite(matrix)):
        raise ValueError("a vector to store has NaN or infinite components")
    wide = matrix.astype(np.float64)
    norms = np.linalg.norm(wide, axis=1, keepdims=True)
    rescale = (np.abs(norms - 1.0) > _UNIT_TOLERANCE) & (norms > 0)
    return np.where(rescale, wide / np.where(norms > 0, norms, 1.0), wide)


def encode_vector(vector, dim: Optional[int] = None) -> bytes:
    """The stored bytes of one vector: L2-normalised, little-endian float16.

    ``vector`` is 1-D (any float dtype; the encoders give float32 unit rows). ``dim``, when
    given, is the length it must have. Raises ValueError for another shape, an empty vector, or
    NaN/infinite components. (A vector of zeros stays zeros: it has no direction to keep.)
    """
    array = np.asarray(vector)
    if array.ndim != 1 or array.shape[0] == 0:
        raise ValueError(f"a vector to store must be 1-D and non-empty, got shape {array.shape}")
    _check_numbers(array, dim, "a vector to store")
    return _unit_rows(array.reshape(1, -1))[0].astype(STORED_DTYPE).tobytes()


def encode_vectors(matrix, dim: Optional[int] = None) -> list[bytes]:
    """:func:`encode_vector` of every row of a 2-D ``matrix`` (``(n, dim)``), in order."""
    array = np.asarray(matrix)
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"vectors to store must be a 2-D (n, dim) array, got shape {array.shape}")
    _check_numbers(array, dim, "vectors to store")
    stored = _unit_rows(array).astype(STORED_DTYPE)
    return [row.tobytes() for row in stored]


def _check_numbers(array: np.ndarray, dim: Optional[int], what: str) -> None:
    """The checks both encoders make of their rows: ``dim`` components, real numbers."""
    width = array.shape[-1]
    if dim is not None and width != int(dim):
        raise ValueError(f"{what} must have {dim} dimensions, got {width}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f"{what} must be real numbers, got {array.dtype}")


def _unit_length(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` (2-D float32) with each non-zero row scaled to unit length, in place."""
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
    nonzero = norms > 0
    if not nonzero.all():
        norms[~nonzero] = 1.0
    matrix /= norms[:, None]
    return matrix


def _dtype_of(size: int, dim: Optional[int]) -> np.dtype:
    if dim is None:
        if size == 0 or size % STORED_DTYPE.itemsize:
            raise ValueError(f"a stored float16 vector has an even, non-zero number of bytes, got {size}")
        return STORED_DTYPE
    dim = int(dim)
    if dim > 0 and size == STORED_DTYPE.itemsize * dim:
        return STORED_DTYPE
    if dim > 0 and size == LEGACY_DTYPE.itemsize * dim:
        return LEGACY_DTYPE
    raise ValueError(f"a stored {dim}-d vector has {STORED_DTYPE.itemsize * dim} bytes (float16) or "
                     f"{LEGACY_DTYPE.itemsize * dim} (float32, before migration 0006); this one has {size}")


def decode_vector(blob, dim: Optional[int] = None) -> np.ndarray:
    """A stored vector as a new float32 array of unit length (a stored zero vector stays zeros).

    ``dim`` (the row's ``dim`` column) tells float16 (``2 * dim`` bytes) from legacy float32
    (``4 * dim``) rows; without it the blob is read as float16, what is written today. Raises
    ValueError for a blob of any other length.
    """
    data = memoryview(blob).cast("B")
    dtype = _dtype_of(len(data), dim)
    return _unit_length(np.frombuffer(data, dtype=dtype).astype(np.float32).reshape(1, -1))[0]


def decode_vectors(blobs: Iterable, dim: int) -> np.ndarray:
    """Stored vectors of ``dim`` dimensions as a float32 ``(n, dim)`` array of unit rows, in order
    (as :func:`decode_vector`).

    Float16 and legacy float32 rows may be mixed. Raises ValueError for a blob whose length is
    neither ``2 * dim`` nor ``4 * dim``.
    """
    dim = int(dim)
    views: Sequence[memoryview] = [memoryview(blob).cast("B") for blob in blobs]
    if not views:
        return np.zeros((0, dim), dtype=np.float32)
    size = stored_size(dim)
    if all(len(view) == size for view in views):  # the usual case: one conversion for the block
        joined = np.frombuffer(b"".join(views), dtype=STORED_DTYPE)
        return _unit_length(joined.reshape(len(views), dim).astype(np.float32))
    out = np.empty((len(views), dim), dtype=np.float32)
    for row, view in enumerate(views):
        out[row] = np.frombuffer(view, dtype=_dtype_of(len(view), dim))
    return _unit_length(out)
