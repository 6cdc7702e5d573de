"""Pytest fixture for :class:`IIIFTestServer` (a plugin: conftest.py lists it in ``pytest_plugins``)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.iiif_server import IIIFTestServer


@pytest.fixture
def iiif_server() -> Iterator[IIIFTestServer]:
    """A fresh IIIF server on 127.0.0.1 for one test, stopped afterwards."""
    server = IIIFTestServer()
    try:
        yield server
    finally:
        server.close()
