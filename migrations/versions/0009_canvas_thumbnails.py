"""Canvases keep the manifest's thumbnail

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

``canvases.thumbnail``: the image URL the manifest gives as the canvas's ``thumbnail``, which
result and manifest pages show instead of asking the image service (a level-0 service can only
serve the sizes its info.json lists; pages fell back to the full image, 52 MB for 24 cards).

Existing rows are filled from the manifest JSON the harvester kept (``manifests.raw_json``), a
manifest at a time, so that unchanged manifests (which a re-harvest skips) get their thumbnails
too. The reading is frozen here (json only: v3 ``items``, v1/v2 ``sequences[].canvases``, a
``thumbnail`` given as a string, an object with ``id``/``@id`` or a list of them; absolute
http(s) URLs only) rather than imported from the application's parser, so that this revision
does the same thing whatever the parser becomes. A manifest whose JSON cannot be read is left
alone: its canvases keep no thumbnail, and pages use the image service as before this revision.
"""
import json
import logging

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
MAX_URL = 2000


def upgrade() -> None:
    op.add_column("canvases", sa.Column("thumbnail", sa.Text(), nullable=True))
    _fill_from_raw_json(op.get_bind())


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite 3.35+ drops a column in place. A batch copy would DROP TABLE canvases, which
        # with foreign keys on deletes its rows first and cascades to regions and embeddings.
        op.execute("ALTER TABLE canvases DROP COLUMN thumbnail")
    else:
        op.drop_column("canvases", "thumbnail")


def _fill_from_raw_json(bind) -> None:
    manifests = sa.table("manifests", sa.column("id"), sa.column("raw_json"))
    canvases = sa.table("canvases", sa.column("id"), sa.column("manifest_id"), sa.column("iiif_id"),
                        sa.column("thumbnail"))
    ids = [row[0] for row in bind.execute(sa.select(manifests.c.id).where(manifests.c.raw_json.is_not(None))
                                          .order_by(manifests.c.id))]
    filled = unreadable = 0
    for manifest_id in ids:  # one document in memory at a time
        raw = bind.execute(sa.select(manifests.c.raw_json).where(manifests.c.id == manifest_id)).scalar()
        try:
            thumbnails = _canvas_thumbnails(json.loads(raw))
        except (ValueError, TypeError, RecursionError):
            unreadable += 1
            continue
        for canvas_iiif_id, url in thumbnails.items():
            result = bind.execute(canvases.update()
                                  .where(canvases.c.manifest_id == manifest_id, canvases.c.iiif_id == canvas_iiif_id)
                                  .values(thumbnail=url))
            filled += result.rowcount or 0
    log.info("canvas thumbnails taken from stored manifests: %d canvases; %d manifests unreadable",
             filled, unreadable)


def _canvas_thumbnails(doc) -> dict:
    if not isinstance(doc, dict):
        return {}
    canvases = list(_as_list(doc.get("items")))
    for sequence in _as_list(doc.get("sequences")):
        if isinstance(sequence, dict):
            canvases += _as_list(sequence.get("canvases"))
    found = {}
    for canvas in canvases:
        if not isinstance(canvas, dict):
            continue
        canvas_id = _id(canvas)
        url = next((u for u in (_id(t) if isinstance(t, dict) else t for t in _as_list(canvas.get("thumbnail")))
                    if isinstance(u, str) and u.startswith(("http://", "https://")) and len(u) <= MAX_URL), None)
        if canvas_id and url and canvas_id not in found:
            found[canvas_id] = url
    return found


def _as_list(value):
    return value if isinstance(value, list) else [] if value is None else [value]


def _id(node):
    value = node.get("id") or node.get("@id") if isinstance(node, dict) else None
    return value.strip() if isinstance(value, str) and value.strip() else None
