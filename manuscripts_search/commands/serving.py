"""`msearch serve`: the web app."""
from __future__ import annotations


import click

from .common import CLIState, pass_state


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=5000, show_default=True)
@click.option("--debug", is_flag=True)
@pass_state
def serve(state: CLIState, host, port, debug):
    """Serve the search web app (development server; see README for gunicorn)."""
    from web import create_app

    state.session_factory()  # migrate before serving
    app = create_app(config=state.config)
    click.echo(f"serving on http://{host}:{port}/", err=True)
    app.run(host=host, port=port, debug=debug, use_reloader=False)
