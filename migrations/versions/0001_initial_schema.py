"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sources',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=True),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_harvested_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('url')
    )
    op.create_table('collections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('iiif_id', sa.Text(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=True),
    sa.Column('iiif_version', sa.Integer(), nullable=True),
    sa.Column('label', sa.JSON(), nullable=False),
    sa.Column('fetched_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('iiif_id')
    )
    op.create_table('manifests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('iiif_id', sa.Text(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=True),
    sa.Column('fetched_from', sa.Text(), nullable=True),
    sa.Column('iiif_version', sa.Integer(), nullable=True),
    sa.Column('label', sa.JSON(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('required_statement', sa.JSON(), nullable=True),
    sa.Column('rights', sa.Text(), nullable=True),
    sa.Column('nav_date', sa.String(length=64), nullable=True),
    sa.Column('providers', sa.JSON(), nullable=False),
    sa.Column('homepage', sa.JSON(), nullable=False),
    sa.Column('see_also', sa.JSON(), nullable=False),
    sa.Column('thumbnail', sa.Text(), nullable=True),
    sa.Column('raw_json', sa.Text(), nullable=True),
    sa.Column('content_sha256', sa.String(length=64), nullable=True),
    sa.Column('etag', sa.Text(), nullable=True),
    sa.Column('last_modified', sa.Text(), nullable=True),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('fetched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('canvas_count', sa.Integer(), nullable=False),
    sa.Column('image_canvas_count', sa.Integer(), nullable=False),
    sa.Column('warnings', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('url')
    )
    with op.batch_alter_table('manifests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_manifests_iiif_id'), ['iiif_id'], unique=False)

    op.create_table('canvases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('manifest_id', sa.Integer(), nullable=False),
    sa.Column('iiif_id', sa.Text(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('label', sa.JSON(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('service_id', sa.Text(), nullable=True),
    sa.Column('service_api_version', sa.Integer(), nullable=True),
    sa.Column('service_level', sa.Integer(), nullable=True),
    sa.Column('service_profile', sa.Text(), nullable=True),
    sa.Column('image_url', sa.Text(), nullable=True),
    sa.Column('image_format', sa.String(length=64), nullable=True),
    sa.Column('image_width', sa.Integer(), nullable=True),
    sa.Column('image_height', sa.Integer(), nullable=True),
    sa.Column('target_xywh', sa.String(length=64), nullable=True),
    sa.Column('derivative_sha256', sa.String(length=64), nullable=True),
    sa.Column('derivative_width', sa.Integer(), nullable=True),
    sa.Column('derivative_height', sa.Integer(), nullable=True),
    sa.Column('derivative_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['manifest_id'], ['manifests.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('manifest_id', 'iiif_id', name='uq_canvas_in_manifest')
    )
    with op.batch_alter_table('canvases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_canvases_manifest_id'), ['manifest_id'], unique=False)

    op.create_table('collection_manifests',
    sa.Column('collection_id', sa.Integer(), nullable=False),
    sa.Column('manifest_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['collection_id'], ['collections.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['manifest_id'], ['manifests.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('collection_id', 'manifest_id')
    )
    op.create_table('errors',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stage', sa.String(length=32), nullable=False),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('manifest_id', sa.Integer(), nullable=True),
    sa.Column('canvas_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['canvas_id'], ['canvases.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['manifest_id'], ['manifests.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('regions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('canvas_id', sa.Integer(), nullable=False),
    sa.Column('x', sa.Integer(), nullable=False),
    sa.Column('y', sa.Integer(), nullable=False),
    sa.Column('w', sa.Integer(), nullable=False),
    sa.Column('h', sa.Integer(), nullable=False),
    sa.Column('derivative_sha256', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['canvas_id'], ['canvases.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('canvas_id', 'x', 'y', 'w', 'h', name='uq_region_box')
    )
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_regions_canvas_id'), ['canvas_id'], unique=False)

    op.create_table('embeddings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('space', sa.String(length=512), nullable=False),
    sa.Column('model_id', sa.Text(), nullable=False),
    sa.Column('model_revision', sa.String(length=128), nullable=False),
    sa.Column('canvas_id', sa.Integer(), nullable=False),
    sa.Column('region_id', sa.Integer(), nullable=True),
    sa.Column('dim', sa.Integer(), nullable=False),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.Column('stale', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['canvas_id'], ['canvases.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['region_id'], ['regions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('embeddings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_embeddings_canvas_id'), ['canvas_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_embeddings_space'), ['space'], unique=False)
        batch_op.create_index('uq_embedding_canvas', ['space', 'canvas_id'], unique=True, sqlite_where=sa.text('region_id IS NULL'), postgresql_where=sa.text('region_id IS NULL'))
        batch_op.create_index('uq_embedding_region', ['space', 'region_id'], unique=True, sqlite_where=sa.text('region_id IS NOT NULL'), postgresql_where=sa.text('region_id IS NOT NULL'))



def downgrade() -> None:
    with op.batch_alter_table('embeddings', schema=None) as batch_op:
        batch_op.drop_index('uq_embedding_region', sqlite_where=sa.text('region_id IS NOT NULL'), postgresql_where=sa.text('region_id IS NOT NULL'))
        batch_op.drop_index('uq_embedding_canvas', sqlite_where=sa.text('region_id IS NULL'), postgresql_where=sa.text('region_id IS NULL'))
        batch_op.drop_index(batch_op.f('ix_embeddings_space'))
        batch_op.drop_index(batch_op.f('ix_embeddings_canvas_id'))

    op.drop_table('embeddings')
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_regions_canvas_id'))

    op.drop_table('regions')
    op.drop_table('errors')
    op.drop_table('collection_manifests')
    with op.batch_alter_table('canvases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_canvases_manifest_id'))

    op.drop_table('canvases')
    with op.batch_alter_table('manifests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_manifests_iiif_id'))

    op.drop_table('manifests')
    op.drop_table('collections')
    op.drop_table('sources')
