"""How each region was found: grid window or content proposal, and the proposal's score

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

``regions.method`` is "grid" (a window of the multi-scale grid; every region made before this
revision) or "content" (a content-aware proposal from the canvas image); ``regions.score`` is
the proposal's score (0..1), NULL for grid windows. A re-plan with another method removes the
regions (and vectors) of the method no longer wanted.
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both databases (as 0007 does): a batch "move and copy" of regions would drop the
# old table, and with it, by ON DELETE CASCADE, the region embeddings.


def upgrade() -> None:
    op.add_column("regions", sa.Column("method", sa.String(16), nullable=False, server_default="grid"))
    op.add_column("regions", sa.Column("score", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("regions", "score")
    op.drop_column("regions", "method")
