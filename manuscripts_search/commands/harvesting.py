"""`msearch harvest`: fetch IIIF manifests, collections and canvas images."""
from __future__ import annotations


import click

from ..cli import CLIState, cli, emit, pass_state


@cli.command()
@click.argument("sources", nargs=-1, required=True)
@click.option("--images/--no-images", default=True, show_default=True,
              help="Also fetch one image per canvas for encoding.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_state
def harvest(state: CLIState, sources, images, as_json):
    """Harvest IIIF manifests or collections (URLs or local JSON files), recursively."""
    from harvest.http import Fetcher
    from harvest.images import fetch_canvas_derivatives
    from harvest.manifests import harvest_sources

    from ..derivatives import DerivativeStore

    cfg = state.config
    fetcher = Fetcher(cfg.user_agent, timeout=cfg.http_timeout, max_bytes=cfg.max_response_bytes)
    factory = state.session_factory()
    report = harvest_sources(list(sources), factory, fetcher)
    result = report.as_dict()
    if images:
        image_report = fetch_canvas_derivatives(factory, fetcher, DerivativeStore(cfg.derivatives_dir),
                                                long_edge=cfg.image_size, show_progress=not as_json)
        result["images"] = image_report.as_dict()
    fetcher.close()
    text = (f"harvested {result['manifests']} manifest(s), {result['collections']} collection(s); "
            f"{len(result['failures'])} failure(s)")
    if images:
        text += (f"; images fetched {result['images']['fetched']}, "
                 f"failed {len(result['images']['failures'])}")
    for failure in result["failures"]:
        text += f"\n  ! {failure['url']}: {failure['reason']}"
    emit(result, as_json, text)
