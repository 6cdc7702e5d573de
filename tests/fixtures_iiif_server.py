"""Pytest fixture for :class:`IIIFTestServer`; conftest.py imports ``iiif_server`` from here."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.iiif_http_server import IIIFTestServer


@pytest.fixture
def iiif_server() -> Iterator[IIIFTestServer]:
    """A fresh IIIF server on 127.0.0.1 for one test, stopped afterwards."""
    server = IIIFTestServer()
    try:
        yield server
    finally:
        server.close()
