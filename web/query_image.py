"""Query images: an upload (file field ``image``, also what a paste or a drop fills in), or an
http(s) URL (``image_url``) fetched by the server, decoded safely into an RGB PIL image.

Limits: the request body is capped by Flask's MAX_CONTENT_LENGTH (a 413 before we read it);
the image by QUERY_IMAGE_MAX_BYTES and QUERY_IMAGE_MAX_PIXELS (decompression bombs). A URL must
resolve to a public address unless QUERY_IMAGE_ALLOW_PRIVATE_URLS (tests serve from 127.0.0.1):
the server must not become a way to reach the private network.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Optional
from urllib.parse import urlsplit

from flask import current_app
from werkzeug.datastructures import FileStorage, MultiDict

from .errors import AppError


def read_query_image(files: MultiDict, form: MultiDict):
    """The query image of a request, or None when it carries none. Raises AppError 400 with the
    reason for an unreadable, oversized or refused image."""
    upload: Optional[FileStorage] = files.get("image")
    url = (form.get("image_url") or "").strip()
    if upload is not None:  # an empty file field (nothing chosen) reads as b""
        data = upload.read(current_app.config["QUERY_IMAGE_MAX_BYTES"] + 1)
        if data:
            return decode_image(data, "the uploaded file")
    if url:
        return decode_image(fetch_image(url), "the image at that URL")
    return None


def decode_image(data: bytes, what: str):
    """Decode ``data`` into an RGB image; AppError 400 when it is too big or not an image."""
    from manuscripts_search.image_decoding import ImageTooLargeError, UnreadableImageError, decode_image as decode

    what = what[0].upper() + what[1:]
    max_bytes = current_app.config["QUERY_IMAGE_MAX_BYTES"]
    if len(data) > max_bytes:
        raise AppError(f"{what} is larger than {max_bytes // (1024 * 1024)} MB.", 400)
    max_pixels = current_app.config["QUERY_IMAGE_MAX_PIXELS"]
    try:
        return decode(data, max_pixels)
    except ImageTooLargeError as error:
        raise AppError(f"{what} has {error.width}×{error.height} pixels; at most "
                       f"{max_pixels // 1_000_000} megapixels are accepted.", 400) from None
    except UnreadableImageError as error:
        raise AppError(f"{what} cannot be decoded: {error.detail}" if error.detail else
                       f"{what} is not an image this server can read (JPEG, PNG, WebP, GIF, TIFF…).",
                       400) from None


def fetch_image(url: str) -> bytes:
    """The bytes at an http(s) ``url``; AppError 400 for a refused or failed fetch."""
    from harvest.http import FetchError, Fetcher

    if len(url) > 2000:
        raise AppError("The image URL is longer than 2000 characters.", 400)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AppError("The image URL must be an http(s) URL.", 400)
    config = current_app.config["MSEARCH_CONFIG"]
    guard = None if current_app.config["QUERY_IMAGE_ALLOW_PRIVATE_URLS"] else _public_hosts_only
    fetcher = Fetcher(config.user_agent, timeout=min(config.http_timeout, 15.0),
                      max_bytes=current_app.config["QUERY_IMAGE_MAX_BYTES"], retries=0, url_guard=guard,
                      total_timeout=30.0)
    try:
        return fetcher.get(url, expect="image").body
    except FetchError as error:
        raise AppError(f"The image could not be fetched: {error}", 400) from None
    finally:
        fetcher.close()


def _public_hosts_only(url: str) -> None:
    from harvest.http import FetchError

    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        raise FetchError(url, f"the host {host!r} cannot be resolved") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global:
            raise FetchError(url, f"the host {host!r} is not a public address")
