"""The pixels of a region of a canvas, for "more like this region" and "other digitisations of
this region": cropped from the derivative the harvester stored (no network), else requested from
the canvas's IIIF Image API service."""
from __future__ import annotations

import logging

from flask import current_app

from manuscripts_search.store.derivatives import DerivativeStore
from manuscripts_search.models import Canvas

from .canvas_info import CanvasRect, http_url, image_region
from .errors import AppError

log = logging.getLogger(__name__)
REGION_LONG_EDGE = 448


def region_image(canvas: Canvas, rect: CanvasRect):
    """An RGB PIL image of ``rect`` (canvas coordinates). Raises AppError: 400 when the region
    misses the image, 503 when no copy of the image can be read."""
    crop = _from_derivative(canvas, rect)
    if crop is not None:
        return crop
    return _from_service(canvas, rect)


def _from_derivative(canvas: Canvas, rect: CanvasRect):
    if not canvas.derivative_sha256 or not canvas.width or not canvas.height:
        return None
    store = DerivativeStore(current_app.config["MSEARCH_CONFIG"].derivatives_dir)
    try:
        image = store.open_image(canvas.derivative_sha256)
    except (OSError, ValueError) as error:
        log.warning("derivative of canvas %s unreadable: %s", canvas.id, error)
        return None
    # The derivative shows the whole canvas image scaled down: map the region onto it.
    scaled = Canvas(width=canvas.width, height=canvas.height, target_xywh=canvas.target_xywh,
                    image_width=image.width, image_height=image.height)
    box = image_region(scaled, rect)
    if box is None:
        raise AppError("The region lies outside the canvas image.", 400)
    x, y, w, h = box
    return image.crop((x, y, x + w, y + h))


def _from_service(canvas: Canvas, rect: CanvasRect):
    from manuscripts_search.iiif.image_requests import image_request_url

    from .query_image import decode_image

    service = http_url(canvas.service_id)
    if not service or canvas.service_level == 0:
        raise AppError("This canvas's image cannot be cropped here: it has no stored copy and no "
                       "IIIF Image service that crops.", 503)
    box = image_region(canvas, rect)
    if box is None:
        raise AppError("The region lies outside the canvas image (or the image size is unknown).", 400)
    size = f"{REGION_LONG_EDGE}," if canvas.service_level == 1 else f"!{REGION_LONG_EDGE},{REGION_LONG_EDGE}"
    url = image_request_url(service, canvas.service_api_version or 2, region=box, size=size)
    from harvest.http import FetchError, Fetcher

    config = current_app.config["MSEARCH_CONFIG"]
    fetcher = Fetcher(config.user_agent, timeout=config.http_timeout, retries=1,
                      max_bytes=current_app.config["QUERY_IMAGE_MAX_BYTES"])
    try:
        data = fetcher.get(url, expect="image").body
    except FetchError as error:
        raise AppError(f"The region could not be fetched from the image server: {error.reason}", 503) from None
    finally:
        fetcher.close()
    return decode_image(data, "the region image")
