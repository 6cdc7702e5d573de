"""Catalogue commands: set up the database, list manifests, counts."""
from __future__ import annotations

import json

import click

from .common import CLIState, emit, pass_state


@click.command("init-db")
@pass_state
def init_db(state: CLIState):
    """Create or upgrade the database schema (alembic upgrade head)."""
    state.session_factory()
    click.echo(f"database ready: {state.config.db_url.split('@')[-1]}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per manifest, one per line.")
@click.option("--errors-only", is_flag=True,
              help="Only manifests that could not be used, or whose images wait for a host that was down.")
@pass_state
def manifests(state: CLIState, as_json, errors_only):
    """List harvested manifests with canvas counts and errors."""
    from sqlalchemy import select

    from ..store.db import session_scope
    from ..iiif.language import first_value
    from ..models import Canvas, Manifest
    from .harvesting import host_down_line

    with session_scope(state.session_factory()) as session:
        deferred = _deferred_images(session)
        query = select(Manifest).order_by(Manifest.id)
        if errors_only:
            query = query.where(Manifest.error.is_not(None) | Manifest.id.in_(
                select(Canvas.manifest_id).where(Canvas.derivative_deferred.is_not(None))))
        for manifest in session.scalars(query):
            row = {"id": manifest.iiif_id, "url": manifest.url, "iiif_version": manifest.iiif_version,
                   "label": first_value(manifest.label), "canvas_count": manifest.canvas_count,
                   "image_canvas_count": manifest.image_canvas_count, "error": manifest.error,
                   "deferred": deferred.get(manifest.id, {})}
            if as_json:
                click.echo(json.dumps(row, ensure_ascii=False))
            else:
                status = f"ERROR: {row['error']}" if row["error"] else (
                    f"{row['canvas_count']} canvases, {row['image_canvas_count']} with images")
                if row["deferred"]:
                    status += f"; {host_down_line(row['deferred'])}, the next harvest retries them"
                click.echo(f"[v{row['iiif_version'] or '?'}] {row['label'] or row['id']} — {status}")


def _deferred_images(session) -> dict[int, dict[str, int]]:
    """Per manifest id: its canvas images deferred because their host was down, per host."""
    from sqlalchemy import func, select

    from ..models import Canvas

    rows = session.execute(select(Canvas.manifest_id, Canvas.derivative_deferred, func.count())
                           .where(Canvas.derivative_deferred.is_not(None))
                           .group_by(Canvas.manifest_id, Canvas.derivative_deferred))
    deferred: dict[int, dict[str, int]] = {}
    for manifest_id, host, count in rows:
        deferred.setdefault(manifest_id, {})[host] = count
    return deferred


@click.command()
@click.option("--json", "as_json", is_flag=True)
@pass_state
def stats(state: CLIState, as_json):
    """Counts of manifests, canvases, embeddings and errors."""
    from sqlalchemy import func, select

    from ..index.layouts import format_bytes
    from ..store.db import session_scope
    from ..models import Canvas, Collection, Embedding, HarvestError, Manifest, Region

    with session_scope(state.session_factory()) as session:
        def count(model, *where):
            return session.scalar(select(func.count()).select_from(model).where(*where))

        result = {
            "manifests": count(Manifest, Manifest.error.is_(None)),
            "manifests_with_errors": count(Manifest, Manifest.error.is_not(None)),
            "collections": count(Collection),
            "canvases": count(Canvas),
            "canvases_with_images": count(Canvas, (Canvas.service_id.is_not(None)) | (Canvas.image_url.is_not(None))),
            "canvases_with_derivatives": count(Canvas, Canvas.derivative_sha256.is_not(None)),
            "regions": count(Region),
            "embeddings": count(Embedding, Embedding.stale.is_(False)),
            "stale_embeddings": count(Embedding, Embedding.stale.is_(True)),
            "errors": count(HarvestError),
        }
        result["indexes"] = _index_stats(state, session)
    lines = [f"{k:>26}: {v}" for k, v in result.items() if k != "indexes"]
    budget = result["indexes"]["budget_bytes"]
    lines.append(f"{'index memory budget':>26}: {format_bytes(budget)}")
    for entry in result["indexes"]["spaces"]:
        lines.append(f"{'index':>26}: {entry['space']} [{entry['layout'] or 'none'}] {entry['vectors']} vectors, "
                     f"{format_bytes(entry['bytes_on_disk'])} on disk, ~{format_bytes(entry['resident_estimate_bytes'])} "
                     f"in memory" + (f" ({entry['problem']})" if entry.get("problem") else ""))
    emit(result, as_json, "\n".join(lines))


def _index_stats(state: CLIState, session) -> dict:
    """Each space's saved index: layout, vectors, bytes on disk and the resident estimate."""
    from ..index.layouts import default_budget, estimate_bytes
    from ..index.sync import spaces
    from ..index.layouts import open_index
    from ..index.vector_index import IndexReadError

    entries = []
    for space in spaces(session):
        entry = {"space": space, "layout": None, "vectors": 0, "bytes_on_disk": 0, "resident_estimate_bytes": 0}
        try:
            index = open_index(state.config.index_dir, space)
        except IndexReadError as error:
            index, entry["problem"] = None, str(error)
        if index is not None:
            entry.update(layout=index.layout, vectors=len(index), bytes_on_disk=index.bytes_on_disk(state.config.index_dir),
                         resident_estimate_bytes=estimate_bytes(index.layout, index.element_count, index.dim,
                                                                index.params.M))
        entries.append(entry)
    return {"budget_bytes": state.config.index_memory or default_budget(), "spaces": entries}
