"""PostgreSQL full-text search folds accents, as SQLite's does

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

SQLite's FTS5 index (unicode61, remove_diacritics) finds "Pâques" for "paques"; PostgreSQL's
'simple' configuration did not. Rather than the unaccent extension (a privilege some
installations do not grant), an IMMUTABLE SQL function maps the accented Latin letters to their
base letters with ``translate`` and deletes combining marks; the GIN index and the queries
(:mod:`manuscripts_search.search.fulltext`) both go through it. The letters are those of U+00C0–U+024F
whose compatibility decomposition starts with an ASCII letter, frozen here so that the index
never depends on the Unicode version of the machine that migrates.
"""
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

PG_FULLTEXT_INDEX = "ix_search_documents_fulltext"
FOLD_FUNCTION = "msearch_fold"
ACCENTED = (
    "ÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÑÒÓÔÕÖÙÚÛÜÝàáâãäåçèéêëìíîïñòóôõöùúûüýÿĀāĂăĄąĆćĈĉĊċČčĎďĒ"
    "ēĔĕĖėĘęĚěĜĝĞğĠġĢģĤĥĨĩĪīĬĭĮįİĲĳĴĵĶķĹĺĻļĽľĿŀŃńŅņŇňŌōŎŏŐőŔŕŖŗŘřŚśŜŝŞşŠšŢţ"
    "ŤťŨũŪūŬŭŮůŰűŲųŴŵŶŷŸŹźŻżŽžſƠơƯưǄǅǆǇǈǉǊǋǌǍǎǏǐǑǒǓǔǕǖǗǘǙǚǛǜǞǟǠǡǦǧǨǩǪǫǬǭǰǱǲ"
    "ǳǴǵǸǹǺǻȀȁȂȃȄȅȆȇȈȉȊȋȌȍȎȏȐȑȒȓȔȕȖȗȘșȚțȞȟȦȧȨȩȪȫȬȭȮȯȰȱȲȳ"
)
PLAIN = (
    "AAAAAACEEEEIIIINOOOOOUUUUYaaaaaaceeeeiiiinooooouuuuyyAaAaAaCcCcCcCcDdE"
    "eEeEeEeEeGgGgGgGgHhIiIiIiIiIIiJjKkLlLlLlLlNnNnNnOoOoOoRrRrRrSsSsSsSsTt"
    "TtUuUuUuUuUuUuWwYyYZzZzZzsOoUuDDdLLlNNnAaIiOoUuUuUuUuUuAaAaGgKkOoOojDD"
    "dGgNnAaAaAaEeEeIiIiOoOoRrRrUuUuSsTtHhAaEeOoOoOoOoYy"
)
# Combining marks (U+0300–U+036F), deleted: ``translate`` drops characters that have no counterpart.
COMBINING = "".join(chr(code) for code in range(0x300, 0x370))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    assert len(ACCENTED) == len(PLAIN) and "'" not in ACCENTED + PLAIN + COMBINING
    op.execute(f"CREATE OR REPLACE FUNCTION {FOLD_FUNCTION}(value text) RETURNS text "
               f"LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE "
               f"AS $$ SELECT translate(value, '{ACCENTED + COMBINING}', '{PLAIN}') $$")
    op.execute(f"DROP INDEX IF EXISTS {PG_FULLTEXT_INDEX}")
    op.execute(f"CREATE INDEX {PG_FULLTEXT_INDEX} ON search_documents "
               f"USING GIN (to_tsvector('simple'::regconfig, {FOLD_FUNCTION}(text)))")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP INDEX IF EXISTS {PG_FULLTEXT_INDEX}")
    op.execute(f"CREATE INDEX {PG_FULLTEXT_INDEX} ON search_documents "
               "USING GIN (to_tsvector('simple'::regconfig, text))")
    op.execute(f"DROP FUNCTION IF EXISTS {FOLD_FUNCTION}(text)")
