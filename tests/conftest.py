"""Shared fixtures: temporary data dirs and databases, real servers, test-time models."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub here; tests build their own models
# The product refuses loopback and private addresses by default (SSRF); the test servers all
# listen on 127.0.0.1, so the suite allow-lists exactly that. Tests of the refusal itself pass
# their own NetworkPolicy or environment.
os.environ.setdefault("MSEARCH_ALLOW_HOSTS", "127.0.0.1,localhost")

import pytest  # noqa: E402

from tests.fixtures_database import (  # noqa: E402,F401
    DATABASE_FIXTURES, close_idle_connections, db_url, msearch_env, used_database)
from tests.fixtures_iiif_server import iiif_server  # noqa: E402,F401
from tests.fixtures_models import random_clip_dir, random_siglip_dir, trained_clip_dir  # noqa: E402,F401
from tests.fixtures_postgres import postgres_server_url, postgres_url  # noqa: E402,F401


def pytest_collection_modifyitems(config, items):
    """Mark every test that touches a database, so the PostgreSQL pass of `make test` can run
    exactly those (`-m db`) while the SQLite pass runs everything."""
    for item in items:
        if DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


_UNMARKED_DATABASE_TESTS: list[str] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Note a test that used a database without the ``db`` mark: the PostgreSQL pass would skip
    it. (Connections its fixtures open at setup are not counted.)"""
    with used_database() as used:
        result = yield
    if used and item.get_closest_marker("db") is None and item.get_closest_marker("own_database") is None:
        _UNMARKED_DATABASE_TESTS.append(item.nodeid)
    return result


def pytest_terminal_summary(terminalreporter):
    if _UNMARKED_DATABASE_TESTS:
        terminalreporter.section("tests that used a database without the `db` mark")
        terminalreporter.write_line("The PostgreSQL pass of `make test` (-m db) skips these: request db_url / "
                                    "msearch_env / module_db_url, or mark them @pytest.mark.db (or "
                                    "@pytest.mark.own_database when the database is chosen on purpose).")
        for nodeid in _UNMARKED_DATABASE_TESTS:
            terminalreporter.write_line(f"  {nodeid}")
