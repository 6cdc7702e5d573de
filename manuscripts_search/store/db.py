"""Database engine, sessions and schema upgrades.

SQLite is the embedded default (WAL journal, foreign keys on); PostgreSQL works through the same
code. The schema is created only by Alembic migrations, never by ``create_all``, so that a database
made by one version can be upgraded by the next.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


class DatabaseError(RuntimeError):
    """The database cannot be opened or upgraded; the message says what to do."""


def _enable_sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web app read while a harvest or embed run writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(db_url: str) -> Engine:
    """Create an engine for ``db_url``; for SQLite files the parent directory is created."""
    if db_url.startswith("sqlite"):
        path = db_url.split("///", 1)[-1] if "///" in db_url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(db_url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _enable_sqlite_pragmas)
        return engine
    if db_url.startswith("postgresql://"):
        # The psycopg 3 driver is the one we install; psycopg2 is not a dependency.
        db_url = "postgresql+psycopg://" + db_url[len("postgresql://"):]
    return create_engine(db_url, pool_pre_ping=True)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def connectable_url(engine: Engine) -> str:
    """``engine``'s URL with its password: what another process (a Ray task or actor, Alembic)
    needs to open the same database. Never log it (messages use the password-hidden form)."""
    return engine.url.render_as_string(hide_password=False)


def session_factory_for(db_url: str) -> sessionmaker[Session]:
    """A session factory on a new engine for ``db_url``: how a worker process reconnects."""
    return make_sessionmaker(make_engine(db_url))


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(db_url: str):
    from alembic.config import Config as AlembicConfig

    if not (MIGRATIONS_DIR / "env.py").exists():
        raise DatabaseError(
            f"Alembic migrations not found at {MIGRATIONS_DIR}; install the project with "
            "`pip install -e .` from a source checkout.")
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Percent signs in passwords would otherwise be read as interpolation by configparser.
    cfg.set_main_option("sqlalchemy.url", db_url.replace("%", "%%"))
    return cfg


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic (``alembic upgrade head``)."""
    from alembic import command

    cfg = alembic_config(connectable_url(engine))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def downgrade_database(engine: Engine, revision: str) -> None:
    from alembic import command

    cfg = alembic_config(connectable_url(engine))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)


class UnsupportedDatabaseError(RuntimeError):
    """A database other than SQLite or PostgreSQL, met where the SQL differs by dialect."""


def dialect_name(session: Session) -> str:
    return session.get_bind().dialect.name


@contextmanager
def write_transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction that will write: commit on success, roll back on any error.

    On SQLite it begins with BEGIN IMMEDIATE: a transaction that reads and then writes could
    otherwise fail at once with "database is locked" when another process wrote in between.
    """
    with session_scope(factory) as session:
        if dialect_name(session) == "sqlite":
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        yield session


def dialect_insert(session: Session):
    """The INSERT construct of the session's dialect (for ON CONFLICT); raises UnsupportedDatabaseError for others."""
    name = dialect_name(session)
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise UnsupportedDatabaseError(f"manuscripts-search supports SQLite and PostgreSQL, not {name}")
    return insert
