"""Migrations 0004 and 0005 on the test database's dialect: the models match it, the full-text index exists
(FTS5 on SQLite, GIN on PostgreSQL), and it downgrades and upgrades again."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from manuscripts_search.store.db import downgrade_database, make_engine, upgrade_database
from manuscripts_search.models import Base
from manuscripts_search.models.search import FTS_TABLE, PG_FULLTEXT_INDEX, alembic_include_object


def _differences(engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": alembic_include_object,
                                                               "compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_models_match_the_migrations_and_the_fulltext_index_exists(db_url):
    engine = make_engine(db_url)
    upgrade_database(engine)
    assert _differences(engine) == []
    tables = set(inspect(engine).get_table_names())
    assert {"search_documents", "text_vectors", "categories", "category_prototypes", "canvas_labels"} <= tables
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            assert FTS_TABLE in tables
            triggers = set(connection.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")))
            assert {"search_documents_fts_insert", "search_documents_fts_delete",
                    "search_documents_fts_update"} <= triggers
        else:
            definition = connection.scalar(text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
                                           {"name": PG_FULLTEXT_INDEX})
            assert "gin" in definition.lower() and "to_tsvector" in definition and "msearch_fold" in definition
            assert connection.scalar(text("SELECT msearch_fold('Pâques à Ŝtrasbourg, e\u0301te\u0301')")) == \
                "Paques a Strasbourg, ete"
    downgrade_database(engine, "0003")
    assert "search_documents" not in set(inspect(engine).get_table_names())
    upgrade_database(engine)
    assert _differences(engine) == []
    engine.dispose()


def test_postgresql_fulltext_queries_use_the_index(db_url):
    """The query's expression must be the index's exactly, or PostgreSQL scans every document."""
    from sqlalchemy import event

    from manuscripts_search.store.db import make_sessionmaker, session_scope
    from manuscripts_search.search.fulltext import search_fulltext

    engine = make_engine(db_url)
    upgrade_database(engine)
    if engine.dialect.name != "postgresql":
        engine.dispose()
        return  # SQLite answers from its FTS5 table, which has no other way
    statements = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, statement, params, context, many: statements.append((statement, params)))
    with session_scope(make_sessionmaker(engine)) as session:
        search_fulltext(session, "Pâques lyon", limit=10)
        statement, params = statements[-1]
        session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(row[0] for row in session.connection().exec_driver_sql("EXPLAIN " + statement, params))
    assert PG_FULLTEXT_INDEX in plan, plan
    engine.dispose()
