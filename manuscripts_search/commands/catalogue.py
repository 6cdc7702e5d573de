"""Catalogue commands: set up the database, list manifests, counts."""
from __future__ import annotations

import json

import click

from .common import CLIState, emit, pass_state, shorten


@click.command("init-db")
@pass_state
def init_db(state: CLIState):
    """Create or upgrade the database schema (alembic upgrade head)."""
    state.session_factory()
    click.echo(f"database ready: {state.config.db_url.split('@')[-1]}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per manifest, one per line.")
@click.option("--errors-only", is_flag=True,
              help="Only manifests that could not be used, have open errors (of their images, say) or "
                   "images waiting for a host that was down.")
@pass_state
def manifests(state: CLIState, as_json, errors_only):
    """List harvested manifests with canvas counts and errors."""
    from sqlalchemy import select

    from ..store.db import session_scope
    from ..store.error_summary import has_problem, per_manifest
    from ..iiif.language import first_value
    from ..models import Manifest

    with session_scope(state.session_factory()) as session:
        query = select(Manifest).order_by(Manifest.id)
        if errors_only:
            query = query.where(has_problem())
        # Keyset pages: the open-error counts are asked for one page of manifests at a time.
        last = 0
        while page := list(session.scalars(query.where(Manifest.id > last).limit(500))):
            last = page[-1].id
            problems = per_manifest(session, [m.id for m in page])
            for manifest in page:
                _print_manifest(manifest, problems.get(manifest.id), first_value(manifest.label), as_json)
            session.expunge_all()


def _print_manifest(manifest, problems, label, as_json) -> None:
    from .harvesting import host_down_line

    problems = problems or {"errors": 0, "image_errors": 0, "deferred": {}, "kinds": []}
    row = {"id": manifest.iiif_id, "url": manifest.url, "iiif_version": manifest.iiif_version,
           "label": label, "canvas_count": manifest.canvas_count,
           "image_canvas_count": manifest.image_canvas_count, "error": manifest.error,
           "open_errors": problems["errors"], "image_errors": problems["image_errors"],
           "deferred": problems.get("deferred", {}), "error_kinds": dict(problems["kinds"])}
    if as_json:
        click.echo(json.dumps(row, ensure_ascii=False))
        return
    status = f"ERROR: {row['error']}" if row["error"] else (
        f"{row['canvas_count']} canvases, {row['image_canvas_count']} with images")
    if row["deferred"]:
        status += f"; {host_down_line(row['deferred'])}, the next harvest retries them"
    if problems["errors"]:
        status += f"; {problems['errors']} open error(s): " + ", ".join(
            f"{n} {description}" for description, n in problems["kinds"])
    click.echo(f"[v{row['iiif_version'] or '?'}] {row['label'] or row['id']} — {status}")


@click.command()
@click.option("--json", "as_json", is_flag=True)
@pass_state
def stats(state: CLIState, as_json):
    """Counts of manifests, canvases, embeddings and errors."""
    from sqlalchemy import func, select

    from ..index.layouts import format_bytes
    from ..store.db import session_scope
    from ..store.error_summary import error_groups, manifest_counts
    from ..models import Canvas, Collection, Embedding, HarvestError, Manifest, Region

    with session_scope(state.session_factory()) as session:
        def count(model, *where):
            return session.scalar(select(func.count()).select_from(model).where(*where))

        result = {
            "manifests": count(Manifest, Manifest.error.is_(None)),
            "collections": count(Collection),
            "canvases": count(Canvas),
            "canvases_with_images": count(Canvas, (Canvas.service_id.is_not(None)) | (Canvas.image_url.is_not(None))),
            "canvases_with_derivatives": count(Canvas, Canvas.derivative_sha256.is_not(None)),
            "regions": count(Region),
            "embeddings": count(Embedding, Embedding.stale.is_(False)),
            "stale_embeddings": count(Embedding, Embedding.stale.is_(True)),
        }
        result.update(manifest_counts(session))
        groups = error_groups(session)
        result.update({"errors": groups["total"],
                       "errors_resolved": count(HarvestError, HarvestError.resolved.is_(True)),
                       "error_groups": groups["groups"], "error_group_count": groups["group_count"]})
        result["indexes"] = _index_stats(state, session)
    lines = [f"{k:>27}: {v}" for k, v in result.items() if k not in ("indexes", "error_groups", "error_group_count")]
    for group in result["error_groups"]:
        lines.append(f"{'errors':>27}: {group['count']} {group['description']}"
                     + (f" on {group['host']}" if group["host"] else "")
                     + f", e.g. {shorten(group['example']['message'], 160)}")
    if result["error_group_count"] > len(result["error_groups"]):
        lines.append(f"{'':>27}  ... {result['error_group_count'] - len(result['error_groups'])} more group(s): "
                     "msearch errors")
    budget = result["indexes"]["budget_bytes"]
    lines.append(f"{'index memory budget':>27}: {format_bytes(budget)}")
    for entry in result["indexes"]["spaces"]:
        lines.append(f"{'index':>27}: {entry['space']} [{entry['layout'] or 'none'}] {entry['vectors']} vectors, "
                     f"{format_bytes(entry['bytes_on_disk'])} on disk, ~{format_bytes(entry['resident_estimate_bytes'])} "
                     f"in memory" + (f" ({entry['problem']})" if entry.get("problem") else ""))
    emit(result, as_json, "\n".join(lines))


@click.command()
@click.option("--kind", help="Only errors of this kind (as `msearch stats` names them, e.g. dns, not_found, host_down).")
@click.option("--host", help="Only errors on this host.")
@click.option("--stage", help="Only errors of this stage (fetch, parse, image, region, embed...).")
@click.option("--resolved", "include_resolved", is_flag=True, help="Also errors a later attempt made obsolete.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per error, one per line.")
@pass_state
def errors(state: CLIState, kind, host, stage, include_resolved, as_json):
    """List every recorded error that is still open, newest first, with its kind and host."""
    from sqlalchemy import select

    from ..models import HarvestError
    from ..store import error_kinds
    from ..store.db import session_scope

    if kind and kind not in error_kinds.LABELS:
        raise click.BadParameter(f"unknown kind {kind!r}; kinds: {', '.join(error_kinds.LABELS)}",
                                 param_hint="--kind")
    query = select(HarvestError)
    for column, value in ((HarvestError.kind, kind), (HarvestError.host, host and host.lower()),
                          (HarvestError.stage, stage)):
        if value:
            query = query.where(column == value)
    if not include_resolved:
        query = query.where(HarvestError.resolved.is_(False))
    with session_scope(state.session_factory()) as session:
        last = None
        while True:  # keyset pages, so memory stays bounded whatever the number of errors
            page_query = query if last is None else query.where(HarvestError.id < last)
            page = list(session.scalars(page_query.order_by(HarvestError.id.desc()).limit(1000)))
            if not page:
                break
            last = page[-1].id
            for e in page:
                row = {"id": e.id, "stage": e.stage, "kind": e.kind, "host": e.host, "url": e.url,
                       "message": e.message, "manifest_id": e.manifest_id, "canvas_id": e.canvas_id,
                       "created_at": e.created_at.isoformat(timespec="seconds") if e.created_at else None,
                       "resolved": e.resolved}
                if as_json:
                    click.echo(json.dumps(row, ensure_ascii=False))
                else:
                    click.echo(f"{row['created_at']} [{error_kinds.describe(e.kind, e.stage, e.message)}] "
                               f"{e.host or '-'} {e.url or ''}: {e.message}")
            session.expunge_all()


def _index_stats(state: CLIState, session) -> dict:
    """Each space's saved index: layout, vectors, bytes on disk and the resident estimate."""
    from ..index.layouts import default_budget, estimate_bytes
    from ..index.sync import spaces
    from ..index.layouts import open_index
    from ..index.shards import all_parts, shard_count
    from ..index.vector_index import IndexReadError

    entries = []
    for space in spaces(session):
        entry = {"space": space, "layout": None, "vectors": 0, "bytes_on_disk": 0, "resident_estimate_bytes": 0,
                 "shards": 1}
        try:
            count = shard_count(state.config.index_dir, space)
            names = [space] if count == 1 else [part.index_name(space) for part in all_parts(count)]
            indexes = [open_index(state.config.index_dir, name) for name in names]
        except IndexReadError as error:
            indexes, entry["problem"] = [], str(error)
        for index in indexes:
            if index is None:
                continue
            entry.update(layout=index.layout, vectors=entry["vectors"] + len(index),
                         bytes_on_disk=entry["bytes_on_disk"] + index.bytes_on_disk(state.config.index_dir),
                         resident_estimate_bytes=entry["resident_estimate_bytes"] + estimate_bytes(
                             index.layout, index.element_count, index.dim, index.params.M))
        entry["shards"] = len(indexes) or 1
        entries.append(entry)
    return {"budget_bytes": state.config.index_memory or default_budget(), "spaces": entries}
