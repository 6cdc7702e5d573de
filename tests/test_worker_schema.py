"""Migration 0003 (model spaces, claims, perceptual hashes) on the test database: it makes exactly
what the models declare, and goes down and up again."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from manuscripts_search.store.db import downgrade_database, make_engine, upgrade_database
from manuscripts_search.models import Base

WORKER_TABLES = {"model_spaces", "embedding_claims", "perceptual_hashes"}


def _differences(engine) -> list:
    def ours(obj, name, type_, _reflected, _compare_to):
        table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
        return table in WORKER_TABLES

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": ours, "compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_migration_matches_the_models_and_round_trips(db_url):
    engine = make_engine(db_url)
    try:
        upgrade_database(engine)
        assert WORKER_TABLES <= set(inspect(engine).get_table_names())
        assert _differences(engine) == []
        indexes = {index["name"] for index in inspect(engine).get_indexes("embedding_claims")}
        assert {"uq_embedding_claim_canvas", "uq_embedding_claim_region"} <= indexes

        downgrade_database(engine, "0002")
        assert not WORKER_TABLES & set(inspect(engine).get_table_names())
        upgrade_database(engine)
        assert _differences(engine) == []
    finally:
        engine.dispose()
