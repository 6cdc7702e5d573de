"""Reading an item's derivative image for the embedding worker, its decoding processes and the
Ray stages: one loader, one list of the errors an image may fail with, one decode size."""
from __future__ import annotations

from typing import Callable

from PIL import Image

from ..store.claims import WorkItem
from ..store.derivatives import DerivativeStore

ImageLoader = Callable[[WorkItem], Image.Image]
# What an item's image may fail with; anything else is a bug and stops the run.
ITEM_ERRORS = (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError)
MIN_DECODE_SIDE = 128  # the hashes and handcrafted features want this much even for tiny models


def decode_side(encoder) -> int:
    """The short side derivatives are decoded to for ``encoder`` (libjpeg scales down by 1/2,
    1/4, 1/8 while that leaves this much): the model's input side, and never below what the
    hashes and handcrafted features need."""
    return max(MIN_DECODE_SIDE, int(getattr(encoder, "input_side", 224) or 224))


def store_loader(derivatives: DerivativeStore, min_side: int = MIN_DECODE_SIDE) -> ImageLoader:
    """Loads an item's derivative from the store. JPEGs are decoded at reduced scale (libjpeg's
    DCT scaling) when that still leaves ``min_side`` pixels on the short side: several times
    faster, and the model resizes to its own input anyway."""

    def load(item: WorkItem) -> Image.Image:
        with Image.open(derivatives.path_for(item.derivative_sha256)) as image:
            image.draft("RGB", (min_side, min_side))
            image.load()
            return image.convert("RGB")

    return load
