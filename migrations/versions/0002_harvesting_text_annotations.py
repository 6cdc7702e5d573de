"""harvesting: text annotations, fetched documents, crawl queue, change streams, info.json cache

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('text_annotations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('manifest_id', sa.Integer(), nullable=True),
    sa.Column('canvas_id', sa.Integer(), nullable=True),
    sa.Column('canvas_iiif_id', sa.Text(), nullable=True),
    sa.Column('iiif_id', sa.Text(), nullable=True),
    sa.Column('motivation', sa.String(length=64), nullable=True),
    sa.Column('language', sa.String(length=35), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('x', sa.Integer(), nullable=True),
    sa.Column('y', sa.Integer(), nullable=True),
    sa.Column('w', sa.Integer(), nullable=True),
    sa.Column('h', sa.Integer(), nullable=True),
    sa.Column('source_url', sa.Text(), nullable=True),
    sa.Column('origin_url', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['canvas_id'], ['canvases.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['manifest_id'], ['manifests.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('text_annotations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_text_annotations_canvas_id'), ['canvas_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_text_annotations_canvas_iiif_id'), ['canvas_iiif_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_text_annotations_manifest_id'), ['manifest_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_text_annotations_source_url'), ['source_url'], unique=False)

    op.create_table('fetched_documents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('context', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=True),
    sa.Column('etag', sa.Text(), nullable=True),
    sa.Column('last_modified', sa.Text(), nullable=True),
    sa.Column('content_sha256', sa.String(length=64), nullable=True),
    sa.Column('child_links', sa.JSON(), nullable=False),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('gone_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('error_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('url', 'context', name='uq_fetched_document')
    )
    op.create_table('crawls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('sources', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('crawls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crawls_key'), ['key'], unique=False)

    op.create_table('crawl_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('crawl_id', sa.Integer(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('root_url', sa.Text(), nullable=False),
    sa.Column('parent_url', sa.Text(), nullable=True),
    sa.Column('canvas_iiif_id', sa.Text(), nullable=True),
    sa.Column('depth', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['crawl_id'], ['crawls.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('crawl_id', 'url', 'kind', name='uq_crawl_item')
    )
    with op.batch_alter_table('crawl_items', schema=None) as batch_op:
        batch_op.create_index('ix_crawl_items_crawl_status', ['crawl_id', 'status'], unique=False)

    op.create_table('change_streams',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('last_activity_time', sa.String(length=64), nullable=True),
    sa.Column('last_activity_key', sa.Text(), nullable=True),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('activities_applied', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('url')
    )
    op.create_table('image_service_infos',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('service_id', sa.Text(), nullable=False),
    sa.Column('info_json', sa.JSON(), nullable=True),
    sa.Column('etag', sa.Text(), nullable=True),
    sa.Column('last_modified', sa.Text(), nullable=True),
    sa.Column('fetched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('service_id')
    )


def downgrade() -> None:
    op.drop_table('image_service_infos')
    op.drop_table('change_streams')
    with op.batch_alter_table('crawl_items', schema=None) as batch_op:
        batch_op.drop_index('ix_crawl_items_crawl_status')

    op.drop_table('crawl_items')
    with op.batch_alter_table('crawls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crawls_key'))

    op.drop_table('crawls')
    op.drop_table('fetched_documents')
    with op.batch_alter_table('text_annotations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_text_annotations_source_url'))
        batch_op.drop_index(batch_op.f('ix_text_annotations_manifest_id'))
        batch_op.drop_index(batch_op.f('ix_text_annotations_canvas_iiif_id'))
        batch_op.drop_index(batch_op.f('ix_text_annotations_canvas_id'))

    op.drop_table('text_annotations')
