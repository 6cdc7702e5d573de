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

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from manuscripts_search.store.db import (MIGRATIONS_DIR, downgrade_database, make_engine, make_sessionmaker,
                                         session_scope, upgrade_database)
from manuscripts_search.store.vector_codec import decode_vector
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
        # An odd length is neither a float16 nor a float32 vector of any dim: migration 0006,
        # which converts vectors, must leave such a blob as it is (real vectors:
        # test_float16_migration_converts_real_vectors_both_ways).
        return bytes([row]) * 15
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


# -- migration 0006: vectors from float32 to float16 ------------------------------------------------

def insert_rows(connection, table: sa.Table, count: int, parents: dict[str, list[dict]], **fixed) -> None:
    """``count`` rows of ``table`` with values from :func:`value_for` (rows numbered from
    ROWS_PER_TABLE on, so unique values do not meet :func:`fill`'s), foreign keys pointing at
    ``parents``' rows, and the ``fixed`` columns given (a callable gets the row number)."""
    rows = []
    for row in range(count):
        values = {}
        for column in table.columns:
            if column.name in fixed:
                value = fixed[column.name]
                values[column.name] = value(row) if callable(value) else value
                continue
            foreign = next(iter(column.foreign_keys), None)
            if foreign is not None:
                target = parents.get(foreign.column.table.name)
                if target:
                    values[column.name] = target[row % len(target)][foreign.column.name]
                continue
            if column.primary_key and isinstance(column.type, sa.Integer) and len(table.primary_key) == 1:
                continue
            number = ROWS_PER_TABLE + row
            if isinstance(column.type, (sa.DateTime, sa.Date)):
                number %= 28
            values[column.name] = value_for(column, table.name, number)
        rows.append(values)
    connection.execute(table.insert(), rows)


def _vectors(connection, table: sa.Table) -> dict[int, tuple[int, bytes, str]]:
    """``{id: (dim, vector bytes, space)}`` of every row."""
    return {row.id: (row.dim, bytes(row.vector), row.space)
            for row in connection.execute(sa.select(table.c.id, table.c.dim, table.c.vector, table.c.space))}


def test_float16_migration_converts_real_vectors_both_ways(db_url, tmp_path):
    """A database at 0005 with float32 vectors in all three tables (more rows than one batch of
    the migration), its index built from them: 0006 makes every vector 2*dim bytes of float16
    within 1e-3 of the original, leaves what it cannot convert as it was, and the index still
    verifies deeply against the database; the downgrade makes them float32 again (the float16
    values, exactly), and upgrading once more gives the same bytes as the first time."""
    from manuscripts_search.index.sync import rebuild_index, verify_index

    engine = make_engine(db_url)
    rng = np.random.default_rng(6)
    image_space, text_space = "clip/test@f32", "text:minilm/test@f32"
    try:
        upgrade_database(engine, "0005")
        written: dict[str, list[dict]] = {}
        fill(engine, model_tables(engine), written)  # parents, and junk blobs of 15 bytes
        tables = model_tables(engine)
        canvases = 2300  # the migration rewrites 2000 rows at a time
        originals = {"embeddings": rng.standard_normal((canvases, 768)).astype(np.float32),
                     "text_vectors": rng.standard_normal((40, 384)).astype(np.float32),
                     "category_prototypes": rng.standard_normal((5, 768)).astype(np.float32)}
        for matrix in originals.values():
            matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        scaled = originals["embeddings"][0] * 3.0  # not unit length: normalised on the way
        broken = originals["embeddings"][1].copy()
        broken[5] = np.nan  # cannot be stored as float16: left as it was
        with engine.begin() as connection:
            insert_rows(connection, tables["canvases"], canvases, written)
            insert_rows(connection, tables["search_documents"], 40, written)
            canvas_ids = list(connection.scalars(sa.select(tables["canvases"].c.id).order_by(tables["canvases"].c.id)))
            document_ids = list(connection.scalars(
                sa.select(tables["search_documents"].c.id).order_by(tables["search_documents"].c.id)))
            vector = originals["embeddings"]
            insert_rows(connection, tables["embeddings"], canvases, {}, space=image_space, dim=768, stale=False,
                        canvas_id=lambda row: canvas_ids[-canvases:][row], region_id=None,
                        vector=lambda row: vector[row].astype("<f4").tobytes())
            insert_rows(connection, tables["embeddings"], 1, {}, space="clip/test@scaled", dim=768, stale=False,
                        canvas_id=canvas_ids[0], region_id=None, vector=scaled.astype("<f4").tobytes())
            insert_rows(connection, tables["embeddings"], 1, {}, space="clip/test@broken", dim=768, stale=False,
                        canvas_id=canvas_ids[0], region_id=None, vector=broken.astype("<f4").tobytes())
            text = originals["text_vectors"]
            insert_rows(connection, tables["text_vectors"], 40, {}, space=text_space, dim=384,
                        document_id=lambda row: document_ids[-40:][row],
                        vector=lambda row: text[row].astype("<f4").tobytes())
            prototypes = originals["category_prototypes"]
            insert_rows(connection, tables["category_prototypes"], 5, written, space=image_space, dim=768,
                        vector=lambda row: prototypes[row].astype("<f4").tobytes())
            before = {name: _vectors(connection, tables[name]) for name in originals}
        factory = make_sessionmaker(engine)
        index_dir = tmp_path / "index"
        with session_scope(factory) as session:  # the index, from the float32 rows (legacy read)
            for space in (image_space, text_space):
                rebuild_index(session, index_dir, space)

        upgrade_database(engine, "head")
        with engine.connect() as connection:
            after = {name: _vectors(connection, tables[name]) for name in originals}
        expected = {name: iter(matrix) for name, matrix in originals.items()}
        for name, rows in after.items():
            assert rows.keys() == before[name].keys()
            for row_id, (dim, blob, space) in rows.items():
                old_dim, old_blob, _ = before[name][row_id]
                if len(old_blob) != 4 * old_dim:  # the junk rows of fill(): not vectors, untouched
                    assert blob == old_blob, (name, row_id)
                elif space == "clip/test@broken":
                    assert blob == old_blob
                elif space == "clip/test@scaled":
                    assert len(blob) == 2 * dim
                    assert float(np.max(np.abs(decode_vector(blob, dim) - scaled / 3.0))) < 1e-3
                else:
                    original = next(expected[name])
                    assert len(blob) == 2 * dim, (name, row_id, len(blob))
                    assert float(np.max(np.abs(decode_vector(blob, dim) - original))) < 1e-3, (name, row_id)
            assert next(expected[name], None) is None, name  # every real row was seen
        with session_scope(factory) as session:  # index of float32 vectors, database of float16
            for space in (image_space, text_space):
                report = verify_index(session, index_dir, space, deep=True)
                assert report["ok"] and report["vectors_checked"] == len(originals[
                    "embeddings" if space == image_space else "text_vectors"]), report

        downgrade_database(engine, "0005")
        with engine.connect() as connection:
            down = {name: _vectors(connection, tables[name]) for name in originals}
        for name, rows in down.items():
            for row_id, (dim, blob, _space) in rows.items():
                upgraded = after[name][row_id][1]
                if len(upgraded) == 2 * dim:
                    assert len(blob) == 4 * dim
                    assert np.array_equal(np.frombuffer(blob, "<f4"), np.frombuffer(upgraded, "<f2"))
                else:
                    assert blob == before[name][row_id][1] == upgraded, (name, row_id)

        upgrade_database(engine, "head")
        with engine.connect() as connection:
            assert {name: _vectors(connection, tables[name]) for name in originals} == after
    finally:
        engine.dispose()


def test_canvas_thumbnail_migration_fills_existing_canvases_from_the_stored_manifests(db_url):
    """0009 adds ``canvases.thumbnail`` and fills it for canvases harvested before, from the
    manifest JSON kept in ``raw_json`` (v3 items and v2 sequences; a string, an object or a
    list; http(s) only); a manifest whose JSON cannot be read is left without thumbnails."""
    import json

    engine = make_engine(db_url)
    v3 = {"type": "Manifest", "items": [
        {"id": "https://m.example/c1", "type": "Canvas", "thumbnail": [{"id": "https://img.example/1/thumb.jpg"}]},
        {"id": "https://m.example/c2", "type": "Canvas", "thumbnail": "javascript:alert(1)"},
        {"id": "https://m.example/c3", "type": "Canvas"}]}
    v2 = {"@type": "sc:Manifest", "sequences": [{"canvases": [
        {"@id": "https://m.example/v2/c1", "thumbnail": {"@id": "https://img.example/2/thumb.jpg"}},
        {"@id": "https://m.example/v2/c2", "thumbnail": "https://img.example/3/thumb.jpg"}]}]}
    documents = [json.dumps(v3), json.dumps(v2), "{not json"]
    canvases = [[("https://m.example/c1", "https://img.example/1/thumb.jpg"), ("https://m.example/c2", None),
                 ("https://m.example/c3", None)],
                [("https://m.example/v2/c1", "https://img.example/2/thumb.jpg"),
                 ("https://m.example/v2/c2", "https://img.example/3/thumb.jpg")],
                [("https://m.example/broken/c1", None)]]
    try:
        upgrade_database(engine, "0008")
        tables = model_tables(engine)
        with engine.begin() as connection:
            for number, document in enumerate(documents):
                insert_rows(connection, tables["manifests"], 1, {}, url=f"https://m.example/{number}",
                            raw_json=document)
                manifest_id = connection.scalar(sa.select(tables["manifests"].c.id).where(
                    tables["manifests"].c.url == f"https://m.example/{number}"))
                for canvas_iiif, _ in canvases[number]:
                    insert_rows(connection, tables["canvases"], 1, {}, manifest_id=manifest_id, iiif_id=canvas_iiif)
        upgrade_database(engine, "0009")
        with engine.connect() as connection:
            found = dict(connection.execute(sa.text("SELECT iiif_id, thumbnail FROM canvases")).all())
        assert found == {iiif: thumb for group in canvases for iiif, thumb in group}
    finally:
        engine.dispose()
