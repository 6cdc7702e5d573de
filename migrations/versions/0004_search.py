"""Search: text documents, full-text index, text vectors, categories (issue 5)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

The full-text index is dialect-specific raw SQL: an FTS5 table with external content and sync
triggers on SQLite (unicode61 tokenizer, diacritics folded: "Pâques" finds "Paques"), a GIN index
on ``to_tsvector('simple', text)`` on PostgreSQL ('simple': no stemming, because catalogue text is
Latin, Italian, French, German... in one column). The models do not declare either; see
``manuscripts_search.models.search.is_fulltext_object``.
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

FTS_TABLE = "search_documents_fts"
PG_FULLTEXT_INDEX = "ix_search_documents_fulltext"


def upgrade() -> None:
    op.create_table(
        'search_documents',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source_key', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('manifest_id', sa.Integer(), nullable=False),
        sa.Column('canvas_id', sa.Integer(), nullable=True),
        sa.Column('annotation_id', sa.Integer(), nullable=True),
        sa.Column('language', sa.String(length=35), nullable=True),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('x', sa.Integer(), nullable=True),
        sa.Column('y', sa.Integer(), nullable=True),
        sa.Column('w', sa.Integer(), nullable=True),
        sa.Column('h', sa.Integer(), nullable=True),
        sa.Column('content_sha256', sa.String(length=64), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['manifest_id'], ['manifests.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['canvas_id'], ['canvases.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['annotation_id'], ['text_annotations.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('source_key'),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table('search_documents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_search_documents_manifest_id'), ['manifest_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_search_documents_canvas_id'), ['canvas_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_search_documents_annotation_id'), ['annotation_id'], unique=False)

    op.create_table(
        'text_vectors',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('document_id', sa.Integer(), nullable=False),
        sa.Column('space', sa.String(length=512), nullable=False),
        sa.Column('dim', sa.Integer(), nullable=False),
        sa.Column('vector', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['document_id'], ['search_documents.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('space', 'document_id', name='uq_text_vector_document'),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table('text_vectors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_text_vectors_document_id'), ['document_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_text_vectors_space'), ['space'], unique=False)

    op.create_table(
        'categories',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('threshold', sa.Float(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    op.create_table(
        'category_prototypes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('category_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('source', sa.Text(), nullable=True),
        sa.Column('canvas_id', sa.Integer(), nullable=True),
        sa.Column('space', sa.String(length=512), nullable=False),
        sa.Column('dim', sa.Integer(), nullable=False),
        sa.Column('vector', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['category_id'], ['categories.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['canvas_id'], ['canvases.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('category_prototypes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_category_prototypes_category_id'), ['category_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_category_prototypes_space'), ['space'], unique=False)

    op.create_table(
        'canvas_labels',
        sa.Column('canvas_id', sa.Integer(), nullable=False),
        sa.Column('category_id', sa.Integer(), nullable=False),
        sa.Column('space', sa.String(length=512), nullable=False),
        sa.Column('score', sa.Float(), nullable=False),
        sa.Column('labelled_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['canvas_id'], ['canvases.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['category_id'], ['categories.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('canvas_id', 'category_id', 'space'),
    )
    with op.batch_alter_table('canvas_labels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_canvas_labels_category_id'), ['category_id'], unique=False)

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(text, content='search_documents', "
                   "content_rowid='id', tokenize='unicode61 remove_diacritics 2')")
        # External-content FTS5: the triggers keep the index in step with the documents table.
        op.execute(f"CREATE TRIGGER search_documents_fts_insert AFTER INSERT ON search_documents BEGIN "
                   f"INSERT INTO {FTS_TABLE}(rowid, text) VALUES (new.id, new.text); END")
        op.execute(f"CREATE TRIGGER search_documents_fts_delete AFTER DELETE ON search_documents BEGIN "
                   f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text) VALUES ('delete', old.id, old.text); END")
        op.execute(f"CREATE TRIGGER search_documents_fts_update AFTER UPDATE OF text ON search_documents BEGIN "
                   f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text) VALUES ('delete', old.id, old.text); "
                   f"INSERT INTO {FTS_TABLE}(rowid, text) VALUES (new.id, new.text); END")
    elif dialect == "postgresql":
        op.execute(f"CREATE INDEX {PG_FULLTEXT_INDEX} ON search_documents "
                   "USING GIN (to_tsvector('simple'::regconfig, text))")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS search_documents_fts_{trigger}")
        op.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")
    elif dialect == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {PG_FULLTEXT_INDEX}")
    op.drop_table('canvas_labels')
    with op.batch_alter_table('category_prototypes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_category_prototypes_space'))
        batch_op.drop_index(batch_op.f('ix_category_prototypes_category_id'))
    op.drop_table('category_prototypes')
    op.drop_table('categories')
    with op.batch_alter_table('text_vectors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_text_vectors_space'))
        batch_op.drop_index(batch_op.f('ix_text_vectors_document_id'))
    op.drop_table('text_vectors')
    with op.batch_alter_table('search_documents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_search_documents_annotation_id'))
        batch_op.drop_index(batch_op.f('ix_search_documents_canvas_id'))
        batch_op.drop_index(batch_op.f('ix_search_documents_manifest_id'))
    op.drop_table('search_documents')
