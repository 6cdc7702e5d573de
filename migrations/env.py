"""Alembic environment: runs migrations on a connection handed in by the application, or on
the URL from ``alembic.ini`` / ``MSEARCH_DB`` when run from the ``alembic`` command line."""
from __future__ import annotations

import os

from alembic import context
from manuscripts_search.store.db import make_engine
from manuscripts_search.models import Base
from manuscripts_search.models.search import alembic_include_object

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from manuscripts_search.config import load_config

    return os.environ.get("MSEARCH_DB") or load_config().db_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True, include_object=alembic_include_object)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    # Batch mode lets ALTER TABLE style migrations work on SQLite too.
    # include_object hides SQLite's FTS5 virtual/shadow tables, which no model describes.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      include_object=alembic_include_object)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
