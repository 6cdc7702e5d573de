"""Images built for tests: hostile ones (decompression bombs) as well as ordinary ones."""
from __future__ import annotations

import io
import struct
import zlib


def png_claiming(width: int, height: int) -> bytes:
    """A valid, tiny PNG whose header claims ``width``×``height`` pixels (a decompression bomb:
    decoding it would allocate width×height×3 bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 1024)  # far from enough rows, never read
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
