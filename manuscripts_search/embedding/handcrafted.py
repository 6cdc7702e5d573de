"""Weight-free global image descriptors: image→image search where no vision-language model can be
loaded (no network, no local copy), and a cheap second opinion where one can.

One vector concatenates classic descriptors, each a normalised histogram:

- colour: a joint HSV histogram of the whole image, and a coarser one per quadrant (layout);
- edges: gradient orientations weighted by magnitude (whole image and per quadrant), and the
  distribution of gradient magnitudes (how much ink/line work, how sharp);
- texture: uniform local binary patterns at two scales (strokes, script, decoration).

Each histogram is L1-normalised and square-rooted (the Hellinger map, so a dot product compares
distributions fairly), weighted, and the whole vector is L2-normalised: rows are float32 with unit
length, like a model's. There is no text tower; :meth:`HandcraftedEncoder.encode_texts` raises.
Pure numpy and Pillow: no torch import.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np
from PIL import Image

from .interface import HANDCRAFTED

HANDCRAFTED_MODEL_ID = "handcrafted/colour-texture-v1"
HANDCRAFTED_NAME = "handcrafted"  # what MSEARCH_MODEL / --model may say to choose it

# Everything that changes the vector; its hash is the space's revision, so editing any value
# starts a new embedding space instead of mixing incompatible vectors.
_PARAMETERS = {
    "version": 1,
    "side": 128,  # images are resampled to side x side before any statistic
    "hsv_bins": (8, 3, 4),
    "layout_hsv_bins": (4, 2, 2),
    "orientation_bins": 12,
    "magnitude_edges": (0, 2, 4, 8, 16, 32, 64, 128),
    "lbp_scales": (1, 2),
    "weights": {"colour": 1.0, "colour_layout": 0.7, "orientation": 1.0, "orientation_layout": 0.7,
                "magnitude": 0.5, "lbp": 1.0},
}


class TextNotSupportedError(ValueError):
    """The handcrafted encoder compares images only; text needs a vision-language model."""


def _revision() -> str:
    canonical = json.dumps(_PARAMETERS, sort_keys=True).encode()
    return f"{_PARAMETERS['version']}-{hashlib.sha256(canonical).hexdigest()[:8]}"


@lru_cache(maxsize=1)
def _uniform_lbp_table() -> np.ndarray:
    """Maps each 8-bit LBP code to one of 59 bins: 58 uniform patterns (at most two 0/1
    transitions around the circle), then one bin for all others."""
    table = np.full(256, 58, dtype=np.int64)
    next_bin = 0
    for code in range(256):
        bits = [(code >> k) & 1 for k in range(8)]
        transitions = sum(bits[k] != bits[(k + 1) % 8] for k in range(8))
        if transitions <= 2:
            table[code] = next_bin
            next_bin += 1
    return table


_LBP_BINS = 59
# Neighbours of a pixel, clockwise from the left, as (row, column) offsets.
_NEIGHBOURS = ((0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1))


def _hellinger(histogram: np.ndarray) -> np.ndarray:
    total = float(histogram.sum())
    if total <= 0:
        return np.zeros(histogram.shape, dtype=np.float64)
    return np.sqrt(histogram / total)


def _quadrant_index(rows: int, cols: int) -> np.ndarray:
    """0..3 for each pixel: which quadrant of a rows x cols grid it lies in."""
    row_half = (np.arange(rows) >= rows // 2).astype(np.int64)
    col_half = (np.arange(cols) >= cols // 2).astype(np.int64)
    return row_half[:, None] * 2 + col_half[None, :]


def _colour_blocks(rgb: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    hsv = np.asarray(rgb.convert("HSV"), dtype=np.int64)
    h_bins, s_bins, v_bins = _PARAMETERS["hsv_bins"]
    joint = (hsv[..., 0] * h_bins // 256) * s_bins * v_bins + (hsv[..., 1] * s_bins // 256) * v_bins \
        + hsv[..., 2] * v_bins // 256
    colour = np.bincount(joint.ravel(), minlength=h_bins * s_bins * v_bins)
    lh, ls, lv = _PARAMETERS["layout_hsv_bins"]
    coarse = (hsv[..., 0] * lh // 256) * ls * lv + (hsv[..., 1] * ls // 256) * lv + hsv[..., 2] * lv // 256
    cells = lh * ls * lv
    layout = np.bincount((_quadrant_index(*coarse.shape) * cells + coarse).ravel(), minlength=4 * cells)
    return colour, layout


def _edge_blocks(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gx = grey[1:-1, 2:] - grey[1:-1, :-2]
    gy = grey[2:, 1:-1] - grey[:-2, 1:-1]
    magnitude = np.hypot(gx, gy)
    bins = _PARAMETERS["orientation_bins"]
    # Unsigned orientation: a stroke's edge and its other side point opposite ways.
    angle = np.mod(np.arctan2(gy, gx), np.pi)
    orientation = np.minimum((angle / np.pi * bins).astype(np.int64), bins - 1)
    whole = np.bincount(orientation.ravel(), weights=magnitude.ravel(), minlength=bins)
    layout = np.bincount((_quadrant_index(*orientation.shape) * bins + orientation).ravel(),
                         weights=magnitude.ravel(), minlength=4 * bins)
    edges = np.asarray(_PARAMETERS["magnitude_edges"], dtype=np.float64)
    strength = np.bincount(np.searchsorted(edges, magnitude.ravel(), side="right") - 1, minlength=len(edges))
    return whole, layout, strength


def _lbp_histogram(grey: np.ndarray) -> np.ndarray:
    centre = grey[1:-1, 1:-1]
    rows, cols = centre.shape
    codes = np.zeros(centre.shape, dtype=np.int64)
    for bit, (dr, dc) in enumerate(_NEIGHBOURS):
        neighbour = grey[1 + dr:1 + dr + rows, 1 + dc:1 + dc + cols]
        codes |= (neighbour >= centre).astype(np.int64) << bit
    return np.bincount(_uniform_lbp_table()[codes].ravel(), minlength=_LBP_BINS)


def _as_rgb_square(image: Image.Image) -> Image.Image:
    side = _PARAMETERS["side"]
    if image.mode != "RGB":
        # Transparent areas are composed on white, as a page would be shown.
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        image = image.convert("RGB")
    return image.resize((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)


def describe_image(image: Image.Image) -> np.ndarray:
    """The descriptor of one image: float32, unit length.

    Raises TypeError when ``image`` is not a PIL image, ValueError for an empty image.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ValueError(f"cannot describe an empty image ({image.width}x{image.height})")
    rgb = _as_rgb_square(image)
    colour, colour_layout = _colour_blocks(rgb)
    grey_image = rgb.convert("L")
    grey = np.asarray(grey_image, dtype=np.float64)
    orientation, orientation_layout, magnitude = _edge_blocks(grey)
    lbp = [_lbp_histogram(grey)]
    for scale in _PARAMETERS["lbp_scales"][1:]:
        coarser = np.asarray(grey_image.reduce(scale), dtype=np.float64)
        lbp.append(_lbp_histogram(coarser))
    weights = _PARAMETERS["weights"]
    blocks = [weights["colour"] * _hellinger(colour),
              weights["colour_layout"] * _hellinger(colour_layout),
              weights["orientation"] * _hellinger(orientation),
              weights["orientation_layout"] * _hellinger(orientation_layout),
              weights["magnitude"] * _hellinger(magnitude)]
    blocks += [weights["lbp"] * _hellinger(histogram) for histogram in lbp]
    vector = np.concatenate(blocks)
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float32)


@lru_cache(maxsize=1)
def _dimension() -> int:
    return int(describe_image(Image.new("RGB", (8, 8))).shape[0])


@dataclass(frozen=True)
class HandcraftedEncoder:
    """An :class:`~.interface.ImageEncoder` with no weights and no text tower. Also offers the two pipeline stages the embedding worker runs apart:
    :meth:`prepare_image` (in decoding threads) and :meth:`encode_prepared` (per batch)."""

    model_id: str = HANDCRAFTED_MODEL_ID
    revision: str = _revision()
    device: str = "cpu"
    supports_text: bool = False
    kind: ClassVar[str] = HANDCRAFTED
    input_side: int = _PARAMETERS["side"]  # the smallest decode that loses nothing

    def preparer_source(self) -> str:
        return HANDCRAFTED_NAME

    @property
    def dim(self) -> int:
        return _dimension()

    @property
    def space_id(self) -> str:
        return f"{self.model_id}@{self.revision}"

    def encode_images(self, images: list[Image.Image], batch_size: int = 32) -> np.ndarray:
        """float32 ``(len(images), dim)`` unit rows. Raises TypeError for a non-image item,
        ValueError for a batch size below 1 or an empty image."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        for position, image in enumerate(images):
            if not isinstance(image, Image.Image):
                raise TypeError(f"images[{position}] is {type(image).__name__}, expected a PIL image")
        return self.encode_prepared([describe_image(image) for image in images])

    def encode_texts(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Always raises TextNotSupportedError: these features have no text side."""
        raise TextNotSupportedError(
            "the handcrafted image features cannot encode text; text queries need a vision-language "
            "model (set MSEARCH_MODEL), while metadata and transcription search work without one")

    def prepare_image(self, image: Image.Image) -> np.ndarray:
        """The whole computation: it is cheap and runs in the worker's decoding threads."""
        return describe_image(image)

    def encode_prepared(self, prepared: list[np.ndarray]) -> np.ndarray:
        if not prepared:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(prepared).astype(np.float32, copy=False)
