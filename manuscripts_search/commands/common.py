"""What every `msearch` command shares: the state object (configuration, lazily opened database,
encoder), output, and the options of commands that can also run on Ray."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import click

from ..config import Config


@dataclass
class CLIState:
    config: Config
    _session_factory: Optional[object] = field(default=None, repr=False)

    def session_factory(self):
        if self._session_factory is None:
            from ..store.db import DatabaseError, make_engine, make_sessionmaker, upgrade_database
            from ..redact import redact

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
        from ..embedding.registry import resolve_image_encoder
        from ..embedding.encoders import EncoderLoadError

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


def emit(obj, as_json: bool, text: Optional[str] = None) -> None:
    if as_json:
        click.echo(json.dumps(obj, ensure_ascii=False, default=str))
    else:
        click.echo(text if text is not None else json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def shorten(text: Optional[str], width: int = 200) -> str:
    """``text`` on one line, cut to ``width`` characters (an example error in a summary)."""
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[:width - 1] + "…"
