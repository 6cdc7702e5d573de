"""Query images kept for a while, so that an image search is a URL like a text search: its pages,
filters, facets and exports name the image by a handle (``image=<64 hex>``) instead of posting
it again.

The image kept is not the upload: it is re-encoded from the decoded pixels (already checked
for size and decompression bombs by :mod:`.query_image`) as a JPEG of at most
:data:`STORED_LONG_EDGE` pixels, so that what is stored and served back is an image this app
made, whatever the upload hid. The handle is the SHA-256 of those bytes: the same image gives
the same handle (stored once), nobody can guess another user's, and a handle is only ever a
file name after it matched ``[0-9a-f]{64}``. Storage is bounded: files unused for
``QUERY_IMAGE_KEEP_SECONDS`` are removed, and beyond ``QUERY_IMAGE_STORE_MAX`` files the least
recently used go first. A search that uses a handle marks it used. The folder is under the data
dir, shared by the app's processes.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
import time
from pathlib import Path

from flask import current_app

from .errors import AppError

log = logging.getLogger(__name__)
STORED_LONG_EDGE = 1024  # more than any image model reads, enough to show the query
HANDLE = re.compile(r"[0-9a-f]{64}")
EXPIRED_MESSAGE = ("This image search has expired (query images are kept for a while only): "
                   "search with the image again.")


def _folder() -> Path:
    return current_app.config["MSEARCH_CONFIG"].data_dir / "query-images"


def valid_handle(handle: str) -> bool:
    return bool(HANDLE.fullmatch(handle or ""))


def keep_query_image(image) -> str:
    """Store ``image`` (an RGB PIL image); returns its handle."""
    from PIL import Image

    if max(image.size) > STORED_LONG_EDGE:
        image = image.copy()
        image.thumbnail((STORED_LONG_EDGE, STORED_LONG_EDGE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    handle = hashlib.sha256(data).hexdigest()
    folder = _folder()
    final = folder / f"{handle}.jpg"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if final.exists():
            os.utime(final)
        else:
            fd, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle_file:
                    handle_file.write(data)
                os.replace(temporary, final)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        _sweep(folder, keep=final)
    except OSError as error:
        log.warning("query image not kept in %s: %s", folder, error)
        raise AppError("The image could not be kept for this search (the server's storage "
                       "refused it); try again later.", 503) from None
    return handle


def query_image_path(handle: str) -> Path:
    """The stored file of ``handle``; AppError 400 for a malformed handle, 410 once it expired."""
    if not valid_handle(handle):
        raise AppError("image must be the handle of a query image (64 hexadecimal digits).", 400)
    path = _folder() / f"{handle}.jpg"
    try:
        if time.time() - path.stat().st_mtime > current_app.config["QUERY_IMAGE_KEEP_SECONDS"]:
            raise AppError(EXPIRED_MESSAGE, 410)
    except FileNotFoundError:
        raise AppError(EXPIRED_MESSAGE, 410) from None
    return path


def load_query_image(handle: str):
    """The RGB image of ``handle`` (marked used); AppError 400/410 as :func:`query_image_path`."""
    from PIL import Image

    path = query_image_path(handle)
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image.convert("RGB")
        os.utime(path)
    except FileNotFoundError:
        raise AppError(EXPIRED_MESSAGE, 410) from None
    except OSError as error:
        log.warning("query image %s unreadable: %s", handle, error)
        raise AppError(EXPIRED_MESSAGE, 410) from None
    return rgb


def _sweep(folder: Path, keep: Path) -> None:
    """Remove expired files, then the least recently used beyond the cap (never ``keep``)."""
    now = time.time()
    max_age = current_app.config["QUERY_IMAGE_KEEP_SECONDS"]
    cap = current_app.config["QUERY_IMAGE_STORE_MAX"]
    entries = []
    for path in folder.iterdir():
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            continue  # another process swept it
        stale_temporary = path.name.startswith(".tmp-") and now - mtime > 600
        if path != keep and (stale_temporary or (path.suffix == ".jpg" and now - mtime > max_age)):
            path.unlink(missing_ok=True)
        elif path.suffix == ".jpg" and path != keep:
            entries.append((mtime, path))
    entries.sort()
    for _mtime, path in entries[:max(0, len(entries) + 1 - cap)]:
        path.unlink(missing_ok=True)
