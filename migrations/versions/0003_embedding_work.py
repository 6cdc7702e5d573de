"""Embedding worker: claims, model spaces, perceptual hashes (issue 4)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('model_spaces',
    sa.Column('space', sa.String(length=512), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('model_id', sa.Text(), nullable=False),
    sa.Column('revision', sa.String(length=128), nullable=False),
    sa.Column('dim', sa.Integer(), nullable=False),
    sa.Column('supports_text', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('space')
    )
    op.create_table('embedding_claims',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('space', sa.String(length=512), nullable=False),
    sa.Column('canvas_id', sa.Integer(), nullable=False),
    sa.Column('region_id', sa.Integer(), nullable=True),
    sa.Column('worker_id', sa.String(length=200), nullable=True),
    sa.Column('lease_until', sa.Float(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['canvas_id'], ['canvases.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['region_id'], ['regions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('embedding_claims', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_embedding_claims_canvas_id'), ['canvas_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_embedding_claims_region_id'), ['region_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_embedding_claims_worker_id'), ['worker_id'], unique=False)
        batch_op.create_index('uq_embedding_claim_canvas', ['space', 'canvas_id'], unique=True,
                              sqlite_where=sa.text('region_id IS NULL'), postgresql_where=sa.text('region_id IS NULL'))
        batch_op.create_index('uq_embedding_claim_region', ['space', 'region_id'], unique=True,
                              sqlite_where=sa.text('region_id IS NOT NULL'),
                              postgresql_where=sa.text('region_id IS NOT NULL'))

    op.create_table('perceptual_hashes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('canvas_id', sa.Integer(), nullable=False),
    sa.Column('region_id', sa.Integer(), nullable=True),
    sa.Column('derivative_sha256', sa.String(length=64), nullable=False),
    sa.Column('algorithm', sa.String(length=32), nullable=False),
    sa.Column('phash64', sa.BigInteger(), nullable=False),
    sa.Column('crop_hashes', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['canvas_id'], ['canvases.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['region_id'], ['regions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('perceptual_hashes', schema=None) as batch_op:
        batch_op.create_index('uq_perceptual_hash_canvas', ['canvas_id'], unique=True,
                              sqlite_where=sa.text('region_id IS NULL'), postgresql_where=sa.text('region_id IS NULL'))
        batch_op.create_index('uq_perceptual_hash_region', ['region_id'], unique=True,
                              sqlite_where=sa.text('region_id IS NOT NULL'),
                              postgresql_where=sa.text('region_id IS NOT NULL'))


def downgrade() -> None:
    with op.batch_alter_table('perceptual_hashes', schema=None) as batch_op:
        batch_op.drop_index('uq_perceptual_hash_region', sqlite_where=sa.text('region_id IS NOT NULL'),
                            postgresql_where=sa.text('region_id IS NOT NULL'))
        batch_op.drop_index('uq_perceptual_hash_canvas', sqlite_where=sa.text('region_id IS NULL'),
                            postgresql_where=sa.text('region_id IS NULL'))

    op.drop_table('perceptual_hashes')
    with op.batch_alter_table('embedding_claims', schema=None) as batch_op:
        batch_op.drop_index('uq_embedding_claim_region', sqlite_where=sa.text('region_id IS NOT NULL'),
                            postgresql_where=sa.text('region_id IS NOT NULL'))
        batch_op.drop_index('uq_embedding_claim_canvas', sqlite_where=sa.text('region_id IS NULL'),
                            postgresql_where=sa.text('region_id IS NULL'))
        batch_op.drop_index(batch_op.f('ix_embedding_claims_worker_id'))
        batch_op.drop_index(batch_op.f('ix_embedding_claims_region_id'))
        batch_op.drop_index(batch_op.f('ix_embedding_claims_canvas_id'))

    op.drop_table('embedding_claims')
    op.drop_table('model_spaces')
