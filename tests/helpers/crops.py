"""Comparing an image fetched from an image server with the crop made locally from the original."""
from __future__ import annotations

import numpy as np
from PIL import Image

# Mean absolute difference (0-255) allowed between a fetched crop and the local one: JPEG
# re-encoding and other servers' resampling give 4-8, a level-0 tree's coarser tiles up to ~13.
TOLERANCE = 15.0


def expected_crop(original: Image.Image, canvas_box, canvas_size, target) -> Image.Image:
    """The part of the original a canvas box shows, computed here independently of the client."""
    x, y, w, h = canvas_box
    tx, ty, tw, th = target or (0, 0, *canvas_size)
    sx, sy = original.width / tw, original.height / th
    left, top = max(0, (x - tx) * sx), max(0, (y - ty) * sy)
    right, bottom = min(original.width, (x + w - tx) * sx), min(original.height, (y + h - ty) * sy)
    return original.crop((round(left), round(top), round(right), round(bottom)))


def difference(fetched: Image.Image, reference: Image.Image) -> float:
    reference = reference.convert("RGB").resize(fetched.size, Image.Resampling.LANCZOS)
    return float(np.abs(np.asarray(fetched, dtype=np.float32) - np.asarray(reference, dtype=np.float32)).mean())
