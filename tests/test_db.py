"""The schema is made by Alembic and the same store code works on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from manuscripts_search.store.db import downgrade_database, make_engine, make_sessionmaker, session_scope, upgrade_database
from manuscripts_search.iiif.model import ImageServiceRef, PaintedImage, ParsedCanvas, ParsedManifest
from manuscripts_search.models import Canvas, Embedding, Manifest
from manuscripts_search.store import catalogue as store

EXPECTED_TABLES = {"sources", "collections", "collection_manifests", "manifests", "canvases",
                   "regions", "embeddings", "errors", "alembic_version"}


def _parsed(canvas_ids, service_prefix="http://img.example/iiif/"):
    canvases = [ParsedCanvas(id=cid, order=i, label={"none": [f"f. {i + 1}r"]}, width=1000, height=1500,
                             images=[PaintedImage(url=None, service=ImageServiceRef(
                                 id=service_prefix + cid.rsplit("/", 1)[-1], api_version=3, level=2))])
                for i, cid in enumerate(canvas_ids)]
    return ParsedManifest(id="http://example.org/m1/manifest", iiif_version=3,
                          label={"en": ["Book of Hours"], "fr": ["Livre d'heures"]}, canvases=canvases)


def _exercise_store(db_url):
    engine = make_engine(db_url)
    upgrade_database(engine)
    assert EXPECTED_TABLES <= set(inspect(engine).get_table_names())
    factory = make_sessionmaker(engine)
    ids = [f"http://example.org/m1/canvas/{n}" for n in ("c1", "c2", "c3")]
    with session_scope(factory) as session:
        manifest = store.save_manifest(session, _parsed(ids))
        c2 = session.scalar(select(Canvas).where(Canvas.iiif_id == ids[1]))
        session.add(Embedding(space="m@r", model_id="m", model_revision="r", canvas_id=c2.id,
                              dim=2, vector=b"\0" * 8))
    with session_scope(factory) as session:
        manifest = session.scalar(select(Manifest))
        assert manifest.label == {"en": ["Book of Hours"], "fr": ["Livre d'heures"]}
        assert [c.iiif_id for c in manifest.canvases] == ids
        first_ids = {c.iiif_id: c.id for c in manifest.canvases}
    # Re-harvest: c1 removed, c2's image changed, c4 added. Rows update in place.
    changed = _parsed([ids[1], ids[2], "http://example.org/m1/canvas/c4"])
    changed.canvases[0].images[0] = PaintedImage(url="http://img.example/new.jpg", service=None)
    with session_scope(factory) as session:
        store.save_manifest(session, changed)
    with session_scope(factory) as session:
        canvases = {c.iiif_id: c for c in session.scalars(select(Canvas))}
        assert set(canvases) == {ids[1], ids[2], "http://example.org/m1/canvas/c4"}
        assert canvases[ids[2]].id == first_ids[ids[2]]  # updated in place
        assert canvases[ids[1]].image_url == "http://img.example/new.jpg"
        assert session.scalar(select(Embedding.stale)) is True  # vector of the changed canvas
    # The partial unique index: one live canvas vector per space.
    with pytest.raises(IntegrityError):
        with session_scope(factory) as session:
            for _ in range(2):
                session.add(Embedding(space="m@r2", model_id="m", model_revision="r2",
                                      canvas_id=first_ids[ids[2]], dim=2, vector=b"\0" * 8))
    return engine


@pytest.mark.own_database  # SQLite's own pragmas, on purpose
def test_sqlite_schema_and_store(tmp_path):
    engine = _exercise_store(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


@pytest.mark.postgres
def test_postgresql_schema_and_store(postgres_url):
    engine = _exercise_store(postgres_url)
    assert engine.dialect.name == "postgresql"
    engine.dispose()


@pytest.mark.own_database  # a SQLite file; tests/test_migrations.py runs migrations on both databases
def test_downgrade_to_base_and_up_again(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    upgrade_database(engine)
    downgrade_database(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade_database(engine)
    assert EXPECTED_TABLES <= set(inspect(engine).get_table_names())
    engine.dispose()
