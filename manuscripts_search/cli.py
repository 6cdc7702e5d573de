"""The ``msearch`` command line: harvest → embed → index → search → serve.

The CLI is the one place allowed to wire the core to ``harvest`` and ``web``; heavy imports
(torch, transformers, hnswlib, Flask) happen inside the commands that need them so that
``msearch --help`` is instant.
"""
from __future__ import annotations

import logging
import sys

import click

from . import __version__
from .commands import catalogue, embedding, harvesting, searching, serving, shards
from .commands.common import CLIState
from .config import ConfigError, environment, load_config


class MsearchGroup(click.Group):
    """Turns failures of the machine (full or read-only disk, a database that went away) in any
    command into one clear message and exit status 1, instead of a traceback."""

    def invoke(self, ctx):
        from .faults import StorageError, describe_database_error, is_storage_failure, storage_error

        try:
            return super().invoke(ctx)
        except StorageError as error:
            raise click.ClickException(str(error)) from None
        except OSError as error:
            if is_storage_failure(error):
                raise click.ClickException(str(storage_error(error))) from None
            raise
        except Exception as error:
            from .faults import is_database_outage

            if is_database_outage(error):  # not errors in our SQL: those stay bugs, with a traceback
                state = ctx.find_object(CLIState)
                raise click.ClickException(describe_database_error(
                    error, state.config.db_url if state else None)) from None
            raise


@click.group(cls=MsearchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="msearch")
@click.option("--data-dir", type=click.Path(file_okay=False), envvar="MSEARCH_DATA_DIR",
              help="Data directory (database, derivatives, indexes). Env: MSEARCH_DATA_DIR.")
@click.option("--db", "db_url", envvar="MSEARCH_DB", help="Database URL. Env: MSEARCH_DB.")
@click.option("--model", envvar="MSEARCH_MODEL",
              help="Vision-language model id or local directory. Env: MSEARCH_MODEL.")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.pass_context
def cli(ctx, data_dir, db_url, model, verbose):
    """Search digitised cultural heritage (IIIF) by what it shows."""
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {}
    try:
        env = environment()
        if data_dir:
            env["MSEARCH_DATA_DIR"] = data_dir
        config = load_config(env)
        if db_url:
            overrides["db_url"] = db_url
        if model:
            overrides["model"] = model
        config = config.replace(**overrides) if overrides else config
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    from .redact import database_password, protect_in_logs

    protect_in_logs(database_password(config.db_url), config.admin_token)
    ctx.obj = CLIState(config)


# Every command, registered here in one place (the command modules do not import this one).
for _command in (catalogue.init_db, catalogue.manifests, catalogue.stats, catalogue.errors, embedding.embed,
                 harvesting.harvest, harvesting.publish, searching.index, searching.search, searching.classify,
                 serving.serve, shards.shards):
    cli.add_command(_command)


def main(argv=None) -> int:
    try:
        cli.main(args=argv, prog_name="msearch", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
