"""Stored vectors (store/vector_codec.py): float16 written, float16 and legacy float32 read, told
apart by the row's dim; unit length kept; bad input refused."""
from __future__ import annotations

import numpy as np
import pytest

from manuscripts_search.store.vector_codec import (decode_vector, decode_vectors, encode_vector, encode_vectors,
                                                   stored_size)


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_a_768_d_vector_takes_1536_bytes_and_comes_back_within_float16_precision():
    vectors = unit_rows(2000, 768)
    blobs = [encode_vector(v) for v in vectors]
    assert {len(blob) for blob in blobs} == {1536} == {stored_size(768)}
    assert blobs[0] == vectors[0].astype("<f2").tobytes()  # little-endian float16, nothing else
    decoded = decode_vectors(blobs, 768)
    assert decoded.dtype == np.float32 and decoded.shape == (2000, 768)
    assert float(np.max(np.abs(decoded - vectors))) < 1e-3
    raw = np.stack([np.frombuffer(blob, "<f2").astype(np.float32) for blob in blobs])
    assert float(np.max(np.abs(np.linalg.norm(raw, axis=1) - 1.0))) < 5e-4  # float16 rounding...
    assert float(np.max(np.abs(np.linalg.norm(decoded, axis=1) - 1.0))) < 1e-6  # ...scaled away
    assert float(np.max(np.abs(decoded - raw / np.linalg.norm(raw, axis=1, keepdims=True)))) < 1e-6
    # What `msearch index verify --deep` asks of an index built from float32 against stored rows.
    assert float(np.sum(decoded * vectors, axis=1).min()) > 0.99999
    for blob, row in zip(blobs[:20], decoded[:20]):
        assert np.allclose(decode_vector(blob, 768), row, rtol=0, atol=1e-7)
        assert np.allclose(decode_vector(blob), row, rtol=0, atol=1e-7)  # without dim: read as float16


def test_encoding_a_decoded_vector_again_gives_the_same_bytes():
    for dim in (64, 384, 768):
        for vector in unit_rows(300, dim, seed=dim):
            blob = encode_vector(vector)
            assert encode_vector(decode_vector(blob, dim)) == blob


def test_legacy_float32_rows_still_read_and_mix_with_float16_ones():
    """A database before (or halfway through) migration 0006 holds float32 rows: 4*dim bytes."""
    vectors = unit_rows(6, 16, seed=2)
    legacy = [v.astype("<f4").tobytes() for v in vectors[:3]]
    current = encode_vectors(vectors[3:])
    assert np.allclose(decode_vector(legacy[0], 16), vectors[0], rtol=0, atol=1e-7)  # nothing rounded
    mixed = decode_vectors([legacy[0], current[0], legacy[1], current[1], legacy[2], current[2]], 16)
    expected = np.stack([vectors[0], vectors[3], vectors[1], vectors[4], vectors[2], vectors[5]])
    assert float(np.max(np.abs(mixed - expected))) < 1e-3
    assert np.allclose(mixed[[0, 2, 4]], vectors[:3], rtol=0, atol=1e-7)
    # 16 float16 values and 8 float32 ones are both 32 bytes: the row's dim decides.
    assert decode_vector(legacy[0][:32], 8).shape == (8,)
    assert decode_vector(current[0], 16).shape == (16,)
    assert decode_vectors([], 16).shape == (0, 16)
    assert decode_vector(memoryview(current[0]), 16).shape == (16,)  # what some drivers hand back


def test_vectors_are_stored_unit_length_and_zeros_stay_zeros():
    scaled = np.arange(1, 9, dtype=np.float64) * 10.0  # not unit length, and float64
    decoded = decode_vector(encode_vector(scaled), 8)
    assert float(np.linalg.norm(decoded)) == pytest.approx(1.0, abs=1e-3)
    assert float(decoded @ (scaled / np.linalg.norm(scaled))) > 0.9999
    huge = np.full(4, 1e6, dtype=np.float32)  # beyond float16's range before normalising
    assert np.allclose(decode_vector(encode_vector(huge), 4), 0.5, atol=1e-3)
    assert not decode_vector(encode_vector(np.zeros(5)), 5).any()
    assert [decode_vector(b, 3).tolist() for b in encode_vectors(np.eye(3, dtype=np.float32) * 2)] == \
        np.eye(3).tolist()


@pytest.mark.parametrize("bad", [np.zeros((2, 3)), np.zeros(0), np.float32(1.0), np.array([1.0, np.nan]),
                                 np.array([np.inf, 0.0]), np.array(["a", "b"]), np.array([1 + 2j, 0])])
def test_bad_vectors_are_refused(bad):
    with pytest.raises(ValueError):
        encode_vector(bad)


def test_bad_shapes_and_lengths_are_refused():
    with pytest.raises(ValueError, match="4 dimensions"):
        encode_vector(np.ones(3), dim=4)
    with pytest.raises(ValueError):
        encode_vectors(np.ones(3))
    with pytest.raises(ValueError):
        encode_vectors(np.ones((2, 3)), dim=4)
    with pytest.raises(ValueError):
        encode_vectors(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="has 10"):
        decode_vector(b"\0" * 10, 4)  # neither 8 (float16) nor 16 (float32) bytes
    with pytest.raises(ValueError):
        decode_vector(b"\0" * 3)
    with pytest.raises(ValueError):
        decode_vector(b"", 0)
    with pytest.raises(ValueError):
        decode_vectors([b"\0" * 8, b"\0" * 12], 4)
