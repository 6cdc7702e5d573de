"""Canvas images deferred because their host was down

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

``canvases.derivative_deferred`` holds the host (scheme://host:port) that did not answer when
the canvas's image was last tried (harvest marks a host down after connection failures and
timeouts in a row and stops sending it requests for the run): the image is not failed, a later
run fetches it. NULL otherwise.
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both databases (SQLite has DROP COLUMN since 3.35): a batch "move and copy"
# of canvases would drop the old table, and with it, by ON DELETE CASCADE, its regions and embeddings.


def upgrade() -> None:
    op.add_column("canvases", sa.Column("derivative_deferred", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("canvases", "derivative_deferred")
