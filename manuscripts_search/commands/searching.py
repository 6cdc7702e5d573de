"""`msearch index ...` and `msearch search`: the HNSW index and queries."""
from __future__ import annotations

import json
import sys

import click

from ..cli import CLIState, cli, emit, pass_state


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def index(ctx, as_json):
    """Bring the HNSW index in step with the database (add new, drop stale vectors)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..db import session_scope
    from ..index_sync import spaces, sync_index

    state: CLIState = ctx.obj
    with session_scope(state.session_factory()) as session:
        reports = [sync_index(session, state.config.index_dir, s).as_dict() for s in spaces(session)]
    emit(reports, as_json, "\n".join(
        f"{r['space']}: +{r['added']} -{r['removed']} = {r['total']}" for r in reports) or "no vectors yet")


@index.command("rebuild")
@pass_state
def index_rebuild(state: CLIState):
    """Rebuild every index from the database."""
    from ..db import session_scope
    from ..index_sync import rebuild_index, spaces

    with session_scope(state.session_factory()) as session:
        for space in spaces(session):
            report = rebuild_index(session, state.config.index_dir, space)
            click.echo(f"{space}: rebuilt with {report.total} vector(s)")


@index.command("verify")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def index_verify(state: CLIState, as_json):
    """Check index ⇔ database consistency; exit status 1 when they differ."""
    from ..db import session_scope
    from ..index_sync import spaces, verify_index

    with session_scope(state.session_factory()) as session:
        results = [verify_index(session, state.config.index_dir, s) for s in spaces(session)]
    emit(results, as_json, "\n".join(
        f"{r['space']}: {'ok' if r['ok'] else 'MISMATCH'} (missing {r['missing_count']}, "
        f"extra {r['extra_count']})" for r in results) or "no vectors yet")
    if not all(r["ok"] for r in results):
        sys.exit(1)


@cli.command()
@click.argument("query")
@click.option("-k", "--k", "k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hit, one per line.")
@pass_state
def search(state: CLIState, query, k, as_json):
    """Find canvases that show QUERY (text → image through the model's text tower)."""
    from ..db import session_scope
    from ..search import SearchError, load_index, search_text

    factory = state.session_factory()
    encoder = state.encoder()
    try:
        index_ = load_index(state.config.index_dir, encoder.space_id)
        with session_scope(factory) as session:
            hits = search_text(session, encoder, index_, query, k=k)
    except SearchError as exc:
        raise click.ClickException(str(exc)) from None
    for hit in hits:
        if as_json:
            click.echo(json.dumps(hit.as_dict(), ensure_ascii=False))
        else:
            click.echo(f"{hit.rank:>3}. {hit.score:.3f}  {hit.manifest_label or hit.manifest} — "
                       f"{hit.canvas_label or hit.canvas}")
    if not hits and not as_json:
        click.echo("no results")
