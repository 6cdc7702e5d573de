"""One SQLAlchemy session per request, opened on first use and closed at teardown.

The web app only reads; it never migrates (``msearch serve`` and the tests do that first).
"""
from __future__ import annotations

from typing import Optional

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from manuscripts_search.config import Config
from manuscripts_search.store.db import make_engine, make_sessionmaker

_EXTENSION = "msearch.sessionmaker"
_ENGINE = "msearch.engine"


def init_app(app: Flask, config: Config) -> None:
    # Creating an engine does not connect, so the factory stays cheap.
    engine = make_engine(config.db_url)
    app.extensions[_ENGINE] = engine
    app.extensions[_EXTENSION] = make_sessionmaker(engine)
    app.teardown_appcontext(close_session)


def dispose_engine(app: Flask) -> None:
    """Close the app's pooled database connections (at worker exit, or when a test is done with
    the app); the next request opens new ones."""
    app.extensions[_ENGINE].dispose()


def get_session() -> Session:
    """The session of the current request (created on first call)."""
    if "db_session" not in g:
        g.db_session = current_app.extensions[_EXTENSION]()
    return g.db_session


def close_session(_error: Optional[BaseException] = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
