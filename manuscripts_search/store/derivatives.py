"""Content-addressed store of downloaded image derivatives on disk.

Files are named by the SHA-256 of their bytes, so the same image fetched twice is stored once,
a new model can be run later without downloading again, and a half-written file is never visible
(write to a temporary name, fsync, then rename).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class DerivativeStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data`` and return its SHA-256; storing existing content is a no-op.

        Raises :class:`~manuscripts_search.faults.StorageError` when the store cannot be written
        (read-only, full, no permission): that stops a run instead of failing every image."""
        from ..faults import is_storage_failure, storage_error

        digest = hashlib.sha256(data).hexdigest()
        final = self.path_for(digest)
        if final.exists():
            return digest
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".tmp-")
        except OSError as error:
            if is_storage_failure(error):
                raise storage_error(error, final.parent, "saving an image derivative") from None
            raise
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except BaseException as error:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(error, OSError) and is_storage_failure(error):
                raise storage_error(error, final.parent, "saving an image derivative") from None
            raise
        return digest

    def has(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()

    def read(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()

    def open_image(self, sha256: str):
        """Open a stored derivative as an RGB PIL image (raises FileNotFoundError, PIL errors)."""
        from PIL import Image

        with Image.open(self.path_for(sha256)) as image:
            image.load()
            return image.convert("RGB")
