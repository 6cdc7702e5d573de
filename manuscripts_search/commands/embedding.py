"""`msearch embed`: encode pending canvases and regions, then update the index."""
from __future__ import annotations

import sys

import click

from ..cli import CLIState, cli, emit, pass_state


@cli.command()
@click.option("--batch-size", type=click.IntRange(1, 4096), default=16, show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Image decoding threads.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def embed(state: CLIState, batch_size, threads, as_json):
    """Encode canvases that have an image but no vector yet, then update the index."""
    from tqdm import tqdm

    from ..derivatives import DerivativeStore
    from ..index_sync import sync_index
    from ..worker import embed_pending, pending_canvas_ids
    from ..db import session_scope

    factory = state.session_factory()
    encoder = state.encoder()
    with session_scope(factory) as session:
        total = len(pending_canvas_ids(session, encoder.space_id))
    with tqdm(total=total, unit="canvas", disable=as_json or total == 0, file=sys.stderr) as bar:
        report = embed_pending(factory, encoder, DerivativeStore(state.config.derivatives_dir),
                               batch_size=batch_size, threads=threads, progress=bar.update)
    with session_scope(factory) as session:
        sync = sync_index(session, state.config.index_dir, encoder.space_id)
    result = {"space": encoder.space_id, "embedded": report.embedded,
              "failed": [{"canvas_id": c, "reason": r} for c, r in report.failed],
              "index": sync.as_dict()}
    emit(result, as_json, f"embedded {report.embedded} canvas(es) with {encoder.model_id}; "
          f"{len(report.failed)} failed; index holds {sync.total} vector(s)")
