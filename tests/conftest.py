"""Shared fixtures: temporary data dirs and databases, real servers, test-time models."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub here; tests build their own models

from tests.fixtures_postgres import postgres_server_url, postgres_url  # noqa: E402,F401
