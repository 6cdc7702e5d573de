"""The ``msearch`` command line: harvest → embed → index → search → serve.

The CLI is the one place allowed to wire the core to ``harvest`` and ``web``; heavy imports
(torch, transformers, hnswlib, Flask) happen inside the commands that need them so that
``msearch --help`` is instant.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Optional

import click

from . import __version__
from .config import Config, ConfigError, load_config


@dataclass
class CLIState:
    config: Config
    _session_factory: Optional[object] = field(default=None, repr=False)

    def session_factory(self):
        if self._session_factory is None:
            from .store.db import DatabaseError, make_engine, make_sessionmaker, upgrade_database
            from .redact import redact

            engine = make_engine(self.config.db_url)
            try:
                upgrade_database(engine)
            except DatabaseError as exc:
                raise click.ClickException(redact(str(exc), [engine.url.password])) from None
            except Exception as exc:  # unreachable server, bad credentials, read-only file...
                first_line = (str(exc).splitlines() or [""])[0]
                raise click.ClickException(redact(
                    f"cannot open the database {engine.url.render_as_string(hide_password=True)}: "
                    f"{exc.__class__.__name__}: {first_line}", [engine.url.password])) from None
            self._session_factory = make_sessionmaker(engine)
            # Close pooled connections when the command ends (PostgreSQL would warn otherwise).
            context = click.get_current_context(silent=True)
            if context is not None:
                context.call_on_close(engine.dispose)
        return self._session_factory

    def encoder(self, model: Optional[str] = None, *, fallback: bool = True):
        """The image encoder that `msearch embed` would use: the configured vision-language model,
        or (with ``fallback``) the handcrafted features when it cannot be loaded, said on stderr.
        Vectors made by either can then be searched by image."""
        from .embedding.registry import resolve_image_encoder
        from .embedding.encoders import EncoderLoadError

        try:
            resolved = resolve_image_encoder(model or self.config.model, self.config.device, fallback=fallback)
        except (EncoderLoadError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        if resolved.is_fallback:
            click.echo(f"warning: {resolved.describe()}", err=True)
        return resolved.encoder


pass_state = click.make_pass_decorator(CLIState)


def ray_engine_options(engine_help: str):
    """``--engine local|ray``, ``--address`` and ``--ray-cpus``: the options of every command that
    can also run on a Ray cluster (see :func:`refuse_without_ray`)."""
    options = [
        click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help=engine_help),
        click.option("--address", default=None, metavar="ADDRESS",
                     help="With --engine ray: 'auto' (the cluster this machine is a node of), "
                          "'ray://head:10001' or 'head:6379' [default: start a Ray on this machine for the run]."),
        click.option("--ray-cpus", type=click.IntRange(1), default=None,
                     help="With --engine ray and no --address: CPUs of the Ray started here [default: all]."),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def refuse_without_ray(engine: str, **ray_only) -> None:
    """A Ray-only option (named by its parameter, e.g. ``ray_cpus``) given with the local engine
    is a usage error rather than silently ignored."""
    if engine == "ray":
        return
    for name, value in ray_only.items():
        if value is not None:
            raise click.UsageError(f"--{name.replace('_', '-')} needs --engine ray")


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


def emit(obj, as_json: bool, text: Optional[str] = None) -> None:
    if as_json:
        click.echo(json.dumps(obj, ensure_ascii=False, default=str))
    else:
        click.echo(text if text is not None else json.dumps(obj, indent=2, ensure_ascii=False, default=str))


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
        env = dict(os.environ)
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

    protect_in_logs(database_password(config.db_url), os.environ.get("MSEARCH_ADMIN_TOKEN"))
    ctx.obj = CLIState(config)


def _register_commands() -> None:
    # Importing the modules attaches their commands to ``cli``.
    from .commands import catalogue, embedding, harvesting, searching, serving  # noqa: F401


_register_commands()


def main(argv=None) -> int:
    try:
        cli.main(args=argv, prog_name="msearch", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
