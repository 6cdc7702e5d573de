"""The database every test uses: SQLite by default, PostgreSQL when MSEARCH_TEST_DB=postgresql.

`make test` runs the whole suite on SQLite, then every test marked ``db`` again on PostgreSQL, so
tests ask for ``db_url`` (or ``msearch_env`` for the CLI, or ``module_db_url`` for a catalogue
built once per module) instead of building a URL themselves; conftest marks every test whose
fixtures include one of :data:`DATABASE_FIXTURES`. A pytest plugin (conftest's ``pytest_plugins``).
"""
from __future__ import annotations

import os
import threading
import uuid
from contextlib import contextmanager
from typing import Iterator

import pytest

TEST_DB_FLAVOUR = os.environ.get("MSEARCH_TEST_DB", "sqlite").lower()
if TEST_DB_FLAVOUR not in ("sqlite", "postgresql"):
    raise RuntimeError(f"MSEARCH_TEST_DB must be sqlite or postgresql, not {TEST_DB_FLAVOUR!r}")

# Fixtures that hand out a database of the suite's flavour; a test using any of them is marked `db`.
DATABASE_FIXTURES = frozenset({"db_url", "msearch_env", "postgres_url", "postgres_server_url", "module_db_url"})


@pytest.fixture
def db_url(request, tmp_path):
    """A URL of a fresh, empty database (schema not created yet)."""
    if TEST_DB_FLAVOUR == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'msearch.sqlite3'}"


@pytest.fixture
def msearch_env(db_url, tmp_path):
    """Environment for running `msearch` against a fresh data dir and database."""
    return {"MSEARCH_DATA_DIR": str(tmp_path / "data"), "MSEARCH_DB": db_url,
            "MSEARCH_ALLOW_HOSTS": os.environ.get("MSEARCH_ALLOW_HOSTS", "127.0.0.1,localhost")}


@pytest.fixture
def session_factory(db_url):
    """A session factory on a fresh database migrated to head, as ``msearch`` would leave it."""
    from manuscripts_search.store.db import make_engine, make_sessionmaker, upgrade_database

    engine = make_engine(db_url)
    upgrade_database(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def module_db_url(request, tmp_path_factory) -> Iterator[str]:
    """Like ``db_url`` (SQLite, or PostgreSQL when MSEARCH_TEST_DB=postgresql), but one database
    for the whole test module: for a catalogue built once that the module's tests only read."""
    module = request.module.__name__.rpartition(".")[2]
    with module_database(request, tmp_path_factory, f"msearch_{module}") as url:
        yield url


@contextmanager
def module_database(request, tmp_path_factory, prefix: str = "msearch_module") -> Iterator[str]:
    """A fresh database of the suite's flavour for a module- or session-scoped fixture (one
    that cannot use the function-scoped ``db_url``); dropped afterwards. A fixture built on it
    must be listed in :data:`DATABASE_FIXTURES` so that its tests are marked; ``module_db_url``
    is the one the suite uses."""
    if TEST_DB_FLAVOUR != "postgresql":
        yield f"sqlite:///{tmp_path_factory.mktemp(prefix) / 'msearch.sqlite3'}"
        return
    import sqlalchemy

    server_url = request.getfixturevalue("postgres_server_url")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{server_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


_checkouts = 0
_checkouts_lock = threading.Lock()


def _count_checkout(*_args) -> None:
    global _checkouts
    with _checkouts_lock:
        _checkouts += 1


@contextmanager
def used_database() -> Iterator[list]:
    """Whether any SQLAlchemy connection was checked out (in any thread) inside the block: the
    yielded list is empty until the block ends, then holds True if one was."""
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    if not event.contains(Pool, "checkout", _count_checkout):
        event.listen(Pool, "checkout", _count_checkout)
    before = _checkouts
    used: list = []
    try:
        yield used
    finally:
        if _checkouts != before:
            used.append(True)


@pytest.fixture(autouse=True)
def close_idle_connections():
    """After each test, close the idle pooled connections of every engine that test used.

    Apps and CLI runs in tests keep their engine for the life of the object, as a server process
    would; their pools would otherwise be garbage-collected at some later test, and psycopg
    reports each connection still open then as a ResourceWarning against that unrelated test.
    Connections still checked out (a server thread of a module fixture, say) are left alone."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    engines: list = []

    def remember(connection) -> None:
        engines.append(connection.engine)

    event.listen(Engine, "engine_connect", remember)
    try:
        yield
    finally:
        event.remove(Engine, "engine_connect", remember)
        for engine in {id(e): e for e in engines}.values():
            engine.pool.dispose()
