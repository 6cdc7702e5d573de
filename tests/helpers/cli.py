"""Running `msearch` in-process from tests (click's CliRunner, the ``runner`` fixture of conftest)."""
from __future__ import annotations

from manuscripts_search.cli import cli


def run_cli(runner, env, *args):
    """``msearch ARGS`` in-process; asserts success and returns what went to stdout."""
    result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout  # progress bars and logs go to stderr
