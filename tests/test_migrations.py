"""Schema migrations on a database that holds data, on SQLite and PostgreSQL (``db_url``).

From the first revision, every table is filled with rows (values made from each column's type,
foreign keys pointing at real rows), then the schema is upgraded one revision at a time; at each
step the tables new in it are filled too, and every row written so far must still be there with
the same values. Then down again, one revision at a time, to the first: the tables that exist at
each step keep all their rows. Then up to head once more. Finally the migrated schema must equal
the models (what ``alembic check`` verifies).
"""
from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from manuscripts_search.store.db import MIGRATIONS_DIR, downgrade_database, make_engine, upgrade_database
from manuscripts_search.models import Base

ROWS_PER_TABLE = 3


def revisions() -> list[str]:
    """Revision ids from the first to head."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return [r.revision for r in reversed(list(script.walk_revisions("base", "heads")))]


def model_tables(engine) -> dict[str, sa.Table]:
    """The application's tables as they exist in the database now (reflected), by name."""
    metadata = sa.MetaData()
    metadata.reflect(engine, only=lambda name, _meta: name in Base.metadata.tables)
    return dict(metadata.tables)


def value_for(column: sa.Column, table: str, row: int):
    kind = column.type
    tag = f"{table}.{column.name}.{row}"
    if isinstance(kind, sa.Boolean):
        return row % 2 == 0
    if isinstance(kind, sa.Integer):
        return 7 + row
    if isinstance(kind, (sa.Float, sa.Numeric)):
        return 0.5 + row
    if isinstance(kind, sa.DateTime):
        return dt.datetime(2024, 1, 1 + row, 12, 30, tzinfo=dt.timezone.utc)
    if isinstance(kind, sa.Date):
        return dt.date(2024, 1, 1 + row)
    if isinstance(kind, sa.JSON):
        return {"row": row, "text": ["ü", tag]}
    if isinstance(kind, sa.LargeBinary):
        return bytes([row]) * 16
    if isinstance(kind, sa.String):
        text = f"{tag} ü"
        length = getattr(kind, "length", None)
        return text[-length:] if length else text
    return tag


def fill(engine, tables: dict[str, sa.Table], already: dict[str, list[dict]]) -> None:
    """Insert ROWS_PER_TABLE rows into every table of ``tables`` not in ``already`` (recorded there,
    with their generated keys)."""
    metadata = next(iter(tables.values())).metadata if tables else sa.MetaData()
    ordered = [t for t in metadata.sorted_tables if t.name in tables and t.name not in already]
    with engine.begin() as connection:
        for table in ordered:
            written = []
            for row in range(ROWS_PER_TABLE):
                values = {}
                for column in table.columns:
                    foreign = next(iter(column.foreign_keys), None)
                    if foreign is not None:
                        target = already.get(foreign.column.table.name)
                        if target:
                            values[column.name] = target[row % len(target)][foreign.column.name]
                        elif not column.nullable:
                            pytest.fail(f"{table.name}.{column.name} needs a row of {foreign.column.table.name}")
                        continue
                    if column.primary_key and isinstance(column.type, sa.Integer) and len(table.primary_key) == 1:
                        continue  # the database assigns it
                    values[column.name] = value_for(column, table.name, row)
                result = connection.execute(table.insert().values(**values))
                keys = result.inserted_primary_key
                for column, key in zip(table.primary_key.columns, keys or ()):
                    if key is not None:
                        values[column.name] = key
                written.append(values)
            already[table.name] = written


def assert_rows_kept(engine, written: dict[str, list[dict]], step: str) -> None:
    tables = model_tables(engine)
    with engine.connect() as connection:
        for name, rows in written.items():
            if name not in tables:
                continue  # dropped by a downgrade: expected
            table = tables[name]
            stored = [dict(r._mapping) for r in connection.execute(sa.select(table))]
            for expected in rows:
                comparable = {k: v for k, v in expected.items() if k in table.columns}
                matches = [r for r in stored if all(_same(r[k], v) for k, v in comparable.items())]
                assert matches, f"after {step}: row {comparable} of {name} is gone or changed"
            assert len(stored) == len(rows), f"after {step}: {name} has {len(stored)} rows, wrote {len(rows)}"


def _same(stored, expected) -> bool:
    if isinstance(expected, dt.datetime) and isinstance(stored, dt.datetime):
        if stored.tzinfo is None:  # SQLite hands back naive UTC
            stored = stored.replace(tzinfo=dt.timezone.utc)
        return stored == expected
    if isinstance(expected, float) and isinstance(stored, (int, float)):
        return abs(stored - expected) < 1e-6
    if isinstance(expected, bytes):
        return bytes(stored) == expected
    return stored == expected


def test_upgrade_and_downgrade_keep_every_row(db_url):
    chain = revisions()
    assert len(chain) >= 2, chain
    engine = make_engine(db_url)
    written: dict[str, list[dict]] = {}
    try:
        upgrade_database(engine, chain[0])
        fill(engine, model_tables(engine), written)
        assert written, "the first revision creates tables"
        for revision in chain[1:]:
            upgrade_database(engine, revision)
            assert_rows_kept(engine, written, f"upgrade to {revision}")
            fill(engine, model_tables(engine), written)
        assert set(written) == set(Base.metadata.tables), "every model table was filled at some revision"
        for revision in reversed(chain[:-1]):
            downgrade_database(engine, revision)
            assert_rows_kept(engine, written, f"downgrade to {revision}")
        first_tables = set(model_tables(engine))
        written = {name: rows for name, rows in written.items() if name in first_tables}
        upgrade_database(engine, "head")
        assert_rows_kept(engine, written, "upgrade back to head")
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(db_url):
    """``alembic check`` on this dialect: no difference between the migrations and the models."""
    engine = make_engine(db_url)
    try:
        upgrade_database(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
        # Full-text search structures are made by raw SQL on purpose (SQLite's FTS5 virtual table
        # and its shadow tables, PostgreSQL's expression index), so the models cannot declare them.
        differences = [d for d in differences if not (d[0] in ("remove_table", "remove_index")
                                                      and ("fts" in d[1].name or "fulltext" in d[1].name))]
        assert differences == [], differences
    finally:
        engine.dispose()


def test_migrations_refuse_a_database_from_the_future(db_url):
    """A database stamped by a newer release is refused with a message, not half-migrated."""
    engine = make_engine(db_url)
    try:
        upgrade_database(engine)
        future = f"f{uuid.uuid4().hex[:11]}"
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": future})
        with pytest.raises(Exception, match=future):
            upgrade_database(engine)
    finally:
        engine.dispose()
