"""Vectors stored as float16: half the bytes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

``embeddings.vector``, ``text_vectors.vector`` and ``category_prototypes.vector`` held
little-endian float32 (4 bytes per dimension); from here on they hold little-endian float16 (2),
L2-normalised (:mod:`manuscripts_search.store.vector_codec`, which reads both, told apart by the
row's ``dim``). The upgrade rewrites every float32 row as float16, the downgrade every float16
row as float32. The schema does not change.

Rows are read and rewritten in batches of ids (keyset: ``id > last ORDER BY id LIMIT n``), so
memory stays bounded whatever the table's size, on SQLite and PostgreSQL alike. Only rows whose
length says they are in the source format are touched: a rerun, or rows written meanwhile by
the other format, are left as they are. Rows that cannot be converted (a length that is neither
format's, non-finite components) are left as they were and counted in the log.

The conversion is frozen here (numpy only) rather than imported from the application, so that
this revision does the same thing whatever the codec becomes later. Processes of the previous
release read float16 rows wrongly: stop them before upgrading. The space freed is reused by
later writes; the file shrinks only after ``VACUUM`` (SQLite) or ``VACUUM FULL`` (PostgreSQL).
"""
import logging

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

TABLES = ("embeddings", "text_vectors", "category_prototypes")
FLOAT32 = np.dtype("<f4")
FLOAT16 = np.dtype("<f2")
BATCH_ROWS = 2000
UNIT_TOLERANCE = 1e-3  # as the codec: a norm this close to 1 is unit length at float16 precision

log = logging.getLogger("alembic.runtime.migration")


def _to_float16(values: np.ndarray):
    if not np.all(np.isfinite(values)):
        return None
    wide = values.astype(np.float64)
    norm = float(np.linalg.norm(wide))
    if norm > 0 and abs(norm - 1.0) > UNIT_TOLERANCE:
        wide = wide / norm
    return wide.astype(FLOAT16).tobytes()


def _to_float32(values: np.ndarray):
    return values.astype(FLOAT32).tobytes()


def _convert(source: np.dtype, convert) -> None:
    bind = op.get_bind()
    for name in TABLES:
        table = sa.table(name, sa.column("id", sa.Integer), sa.column("dim", sa.Integer),
                         sa.column("vector", sa.LargeBinary))
        in_source = sa.func.length(table.c.vector) == source.itemsize * table.c.dim
        update = (table.update().where(table.c.id == sa.bindparam("row_id"))
                  .values(vector=sa.bindparam("blob")))
        last, converted, left = None, 0, 0
        while True:
            query = sa.select(table.c.id, table.c.dim, table.c.vector).where(in_source)
            if last is not None:
                query = query.where(table.c.id > last)
            rows = bind.execute(query.order_by(table.c.id).limit(BATCH_ROWS)).all()
            if not rows:
                break
            last = rows[-1].id
            changes = []
            for row in rows:
                blob = convert(np.frombuffer(bytes(row.vector), dtype=source)) if row.dim > 0 else None
                if blob is None:
                    left += 1
                else:
                    changes.append({"row_id": row.id, "blob": blob})
            if changes:
                bind.execute(update, changes)
                converted += len(changes)
        other_length = sa.select(sa.func.count()).select_from(table).where(
            sa.func.length(table.c.vector) != FLOAT16.itemsize * table.c.dim,
            sa.func.length(table.c.vector) != FLOAT32.itemsize * table.c.dim)
        left += bind.execute(other_length).scalar_one()
        log.info("%s: %d vector(s) converted to %s", name, converted,
                 "float16" if convert is _to_float16 else "float32")
        if left:
            log.warning("%s: %d vector(s) left as they were (not finite, or a length that is neither "
                        "2*dim nor 4*dim bytes)", name, left)


def upgrade() -> None:
    _convert(FLOAT32, _to_float16)


def downgrade() -> None:
    _convert(FLOAT16, _to_float32)
