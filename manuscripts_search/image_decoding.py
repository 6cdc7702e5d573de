"""Decoding untrusted image bytes: the one decompression-bomb-safe way in.

Images come from thousands of IIIF servers, from uploads and from URLs a visitor types, so a
few kilobytes may claim to be 100,000 × 100,000 pixels (gigabytes once decoded). Every decoder
here judges the size from the header, against a limit the caller passes, before one pixel is
decoded. Pillow's own check is a single process-wide setting (``Image.MAX_IMAGE_PIXELS``) that
callers with different limits would overwrite for each other, so it is switched off here in
favour of the per-call limit; the only images opened without these functions are the
derivatives this project wrote itself.
"""
from __future__ import annotations

import contextlib
import io
import os
from typing import Iterator, Optional, Union

# Query images (an upload, a URL, ``msearch search --image``): a phone photo is ~50 MP at most.
MAX_QUERY_IMAGE_PIXELS = 50_000_000
# Harvested canvas images and tiles: the largest real manuscript scans are ~200 MP.
MAX_HARVEST_IMAGE_PIXELS = 250_000_000

ImageSource = Union[bytes, str, os.PathLike]


class ImageDecodeError(Exception):
    """An image that cannot be used; ``str()`` says why in words for a curator."""


class ImageTooLargeError(ImageDecodeError, ValueError):
    """More pixels than the caller allows (a decompression bomb, or simply too big)."""

    def __init__(self, width: int, height: int, max_pixels: int):
        self.width, self.height, self.max_pixels = width, height, max_pixels
        super().__init__(f"image of {width}×{height} pixels exceeds the limit of {max_pixels} pixels "
                         "(decompression bomb?)")


class UnreadableImageError(ImageDecodeError, OSError):
    """Bytes that are not an image Pillow reads (``detail`` None), or an image that is cut short
    or corrupt (``detail`` says how). An OSError, as Pillow's own, so the fallbacks that try
    another source after an I/O failure keep doing so."""

    def __init__(self, detail: Optional[str] = None):
        self.detail = detail
        super().__init__(f"cannot be decoded: {detail}" if detail else
                         "not an image format this server reads (JPEG, PNG, WebP, GIF, TIFF…)")


def _pillow():
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # see the module docstring: our per-call limit replaces it
    return Image


@contextlib.contextmanager
def open_bounded(source: ImageSource, max_pixels: int) -> Iterator[object]:
    """Open ``source`` (bytes or a path) lazily, refusing it from its header when it has more
    than ``max_pixels`` pixels. The caller decodes (``load``, ``convert``...) inside the block."""
    Image = _pillow()
    from PIL import UnidentifiedImageError

    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        image = Image.open(stream)
    except UnidentifiedImageError:
        raise UnreadableImageError() from None
    except (OSError, ValueError, SyntaxError) as error:
        raise UnreadableImageError(str(error) or type(error).__name__) from None
    with image:
        if image.width * image.height > max_pixels:
            raise ImageTooLargeError(image.width, image.height, max_pixels)
        try:
            yield image
        except (OSError, ValueError, SyntaxError) as error:
            if isinstance(error, ImageDecodeError):
                raise
            raise UnreadableImageError(str(error) or type(error).__name__) from None


def decode_image(source: ImageSource, max_pixels: int):
    """``source`` (bytes or a path) decoded to an RGB PIL image. Raises ImageTooLargeError (a
    ValueError) for more than ``max_pixels`` pixels, UnreadableImageError (an OSError) for bytes
    that are not a readable image."""
    with open_bounded(source, max_pixels) as image:
        image.load()
        return image.convert("RGB")
