"""Errors carry their kind and host; superseded errors are resolved

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

``errors.kind`` ("host name not found", "404 not found / gone", "timeout"...) and ``errors.host``
are written with each error from now on, so that the status pages count and group errors with a
GROUP BY (indexed) whatever their number, instead of reading every message. The upgrade fills
them for the rows already there, in batches of ids (keyset), so memory stays bounded.

It classifies with the application's rule (:mod:`manuscripts_search.store.error_kinds`) rather
than a frozen copy: the kind is derived, readable data, not a storage format that must be
reproduced bit for bit (as 0006's vectors), and old and new rows must group alike; a later change
of the rule reclassifies with a migration of its own.

It also fills ``manifest_id`` of errors that name only a canvas (region and embedding errors
did), and resolves the errors a later attempt made obsolete: an image error of a canvas that has
its image now or failed again later, a document error of a manifest fetched fine since or failed
again later. Those rows stay (with ``resolved`` true); the open ones are today's problems.
The downgrade drops the two columns and their indexes and leaves ``resolved`` as it is.
"""
import logging

import sqlalchemy as sa
from alembic import op

from manuscripts_search.store.error_kinds import classify, host_of

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

BATCH_ROWS = 2000
MANIFEST_STAGES = ("fetch", "parse", "store")

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    with op.batch_alter_table('errors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('host', sa.String(length=255), nullable=True))
        batch_op.create_index('ix_errors_open_kind_host', ['resolved', 'stage', 'kind', 'host'], unique=False)
        batch_op.create_index('ix_errors_manifest_open', ['manifest_id', 'resolved', 'stage', 'kind'], unique=False)
        batch_op.create_index('ix_errors_canvas_id', ['canvas_id'], unique=False)
    _classify_rows()
    _fill_manifest_ids()
    _resolve_superseded()


def downgrade() -> None:
    with op.batch_alter_table('errors', schema=None) as batch_op:
        batch_op.drop_index('ix_errors_canvas_id')
        batch_op.drop_index('ix_errors_manifest_open')
        batch_op.drop_index('ix_errors_open_kind_host')
        batch_op.drop_column('host')
        batch_op.drop_column('kind')


def _errors():
    return sa.table("errors", sa.column("id", sa.Integer), sa.column("stage", sa.String),
                    sa.column("url", sa.Text), sa.column("message", sa.Text), sa.column("kind", sa.String),
                    sa.column("host", sa.String), sa.column("manifest_id", sa.Integer),
                    sa.column("canvas_id", sa.Integer), sa.column("created_at", sa.DateTime(timezone=True)),
                    sa.column("resolved", sa.Boolean))


def _classify_rows() -> None:
    bind = op.get_bind()
    errors = _errors()
    update = (errors.update().where(errors.c.id == sa.bindparam("row_id"))
              .values(kind=sa.bindparam("new_kind"), host=sa.bindparam("new_host")))
    last, done = 0, 0
    while True:
        rows = bind.execute(sa.select(errors.c.id, errors.c.stage, errors.c.url, errors.c.message)
                            .where(errors.c.id > last).order_by(errors.c.id).limit(BATCH_ROWS)).all()
        if not rows:
            break
        last = rows[-1].id
        bind.execute(update, [{"row_id": row.id, "new_kind": classify(row.message or "", row.stage),
                               "new_host": host_of(row.message, row.url)} for row in rows])
        done += len(rows)
    if done:
        log.info("classified %d errors by kind and host", done)


def _fill_manifest_ids() -> None:
    errors = _errors()
    canvases = sa.table("canvases", sa.column("id", sa.Integer), sa.column("manifest_id", sa.Integer))
    op.get_bind().execute(
        errors.update().where(errors.c.manifest_id.is_(None), errors.c.canvas_id.is_not(None))
        .values(manifest_id=sa.select(canvases.c.manifest_id).where(canvases.c.id == errors.c.canvas_id)
                .scalar_subquery()))


def _resolve_superseded() -> None:
    bind = op.get_bind()
    errors = _errors()
    newer = errors.alias("newer")
    canvases = sa.table("canvases", sa.column("id", sa.Integer), sa.column("derivative_sha256", sa.String))
    manifests = sa.table("manifests", sa.column("id", sa.Integer), sa.column("error", sa.Text),
                         sa.column("fetched_at", sa.DateTime(timezone=True)))
    open_image = sa.and_(errors.c.resolved.is_(False), errors.c.stage == "image", errors.c.canvas_id.is_not(None))
    fixed_canvas = sa.select(canvases.c.id).where(canvases.c.id == errors.c.canvas_id,
                                                  canvases.c.derivative_sha256.is_not(None)).exists()
    failed_again = sa.select(newer.c.id).where(newer.c.stage == errors.c.stage, newer.c.canvas_id == errors.c.canvas_id,
                                               newer.c.id > errors.c.id).exists()
    resolved = bind.execute(errors.update().where(open_image, fixed_canvas | failed_again)
                            .values(resolved=True)).rowcount or 0
    open_document = sa.and_(errors.c.resolved.is_(False), errors.c.stage.in_(MANIFEST_STAGES),
                            errors.c.canvas_id.is_(None), errors.c.manifest_id.is_not(None))
    fetched_since = sa.select(manifests.c.id).where(manifests.c.id == errors.c.manifest_id,
                                                    manifests.c.error.is_(None),
                                                    manifests.c.fetched_at > errors.c.created_at).exists()
    document_again = sa.select(newer.c.id).where(newer.c.stage.in_(MANIFEST_STAGES), newer.c.canvas_id.is_(None),
                                                 newer.c.manifest_id == errors.c.manifest_id,
                                                 newer.c.id > errors.c.id).exists()
    resolved += bind.execute(errors.update().where(open_document, fetched_since | document_again)
                             .values(resolved=True)).rowcount or 0
    if resolved:
        log.info("resolved %d errors made obsolete by a later attempt", resolved)
