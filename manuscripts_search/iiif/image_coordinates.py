"""Coordinates: canvas boxes to image pixels and back, and covering integer pixel boxes.

An IIIF canvas has its own coordinate space, independent of the pixel size of the image painted on
it (and of where on the canvas it is painted), so regions found on one side are mapped to the
other here. :func:`outer_box` (the smallest integer box covering a float box) is shared with fetch
planning and stitching, which scale boxes between full-image and response pixels. Pure functions.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

XYWH = tuple[int, int, int, int]


def canvas_to_image_xywh(
    canvas_xywh: Sequence[float],
    canvas_w: float,
    canvas_h: float,
    image_w: int,
    image_h: int,
    target_xywh: Sequence[float] | None = None,
) -> XYWH:
    """Map a canvas-coordinate box to the smallest covering box of image pixels.

    ``target_xywh`` is where the image is painted on the canvas (None: the whole canvas); the
    canvas and the image have independent sizes, so the x and y scales may differ.

    Raises:
        ValueError: a non-positive size, or a box that does not overlap the painted image.
    """
    tx, ty, tw, th = _painted_area(canvas_w, canvas_h, target_xywh)
    image_w, image_h = _positive_size(image_w, image_h, "image")
    cx, cy, cw, ch = _float_box(canvas_xywh, "canvas_xywh")
    sx, sy = image_w / tw, image_h / th
    box = outer_box((cx - tx) * sx, (cy - ty) * sy, (cx + cw - tx) * sx, (cy + ch - ty) * sy, image_w, image_h)
    return _non_empty(box, f"canvas box {tuple(canvas_xywh)} does not overlap the painted image")


def image_to_canvas_xywh(
    image_xywh: Sequence[float],
    canvas_w: float,
    canvas_h: float,
    image_w: int,
    image_h: int,
    target_xywh: Sequence[float] | None = None,
) -> XYWH:
    """Inverse of :func:`canvas_to_image_xywh`: image pixels to the covering canvas box.

    Raises:
        ValueError: a non-positive size, or a box that maps outside the canvas.
    """
    tx, ty, tw, th = _painted_area(canvas_w, canvas_h, target_xywh)
    image_w, image_h = _positive_size(image_w, image_h, "image")
    ix, iy, iw, ih = _float_box(image_xywh, "image_xywh")
    sx, sy = tw / image_w, th / image_h
    box = outer_box(tx + ix * sx, ty + iy * sy, tx + (ix + iw) * sx, ty + (iy + ih) * sy,
                     math.ceil(canvas_w), math.ceil(canvas_h))
    return _non_empty(box, f"image box {tuple(image_xywh)} maps outside the canvas")


def _painted_area(canvas_w: float, canvas_h: float, target_xywh: Sequence[float] | None) -> tuple[float, ...]:
    canvas_w, canvas_h = _positive_size(canvas_w, canvas_h, "canvas")
    if target_xywh is None:
        return 0.0, 0.0, canvas_w, canvas_h
    return _float_box(target_xywh, "target_xywh")


def _positive_size(width: Any, height: Any, what: str) -> tuple[float, float]:
    for value in (width, height):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
            raise ValueError(f"{what} size must be positive numbers, got {width!r}x{height!r}")
    return width, height


def _float_box(xywh: Sequence[Any], what: str) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(v) for v in xywh)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be four numbers (x, y, w, h), got {xywh!r}") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise ValueError(f"{what} needs finite numbers and w, h > 0, got {xywh!r}")
    return x, y, w, h


def _non_empty(box: tuple[int, int, int, int], message: str) -> XYWH:
    left, top, right, bottom = box
    if right <= left or bottom <= top:
        raise ValueError(message)
    return left, top, right - left, bottom - top


def outer_box(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The smallest integer box containing the float box, clamped to width x height."""
    # Round away float noise first so that 2.0000000001 does not grow the box by a pixel.
    left = max(0, math.floor(round(x0, 6)))
    top = max(0, math.floor(round(y0, 6)))
    right = min(width, math.ceil(round(x1, 6)))
    bottom = min(height, math.ceil(round(y1, 6)))
    return left, top, right, bottom
