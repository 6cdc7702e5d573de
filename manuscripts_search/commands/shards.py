"""`msearch shards serve|status|stop`: the index shards of the image spaces on Ray Serve."""
from __future__ import annotations

import click

from .common import CLIState, emit, pass_state


def _image_spaces(state: CLIState, only_space) -> list[str]:
    from ..index.sync import TEXT_SPACE_PREFIX, spaces
    from ..store.db import session_scope

    with session_scope(state.session_factory()) as session:
        chosen = [s for s in spaces(session) if not s.startswith(TEXT_SPACE_PREFIX) and only_space in (None, s)]
    if not chosen:
        raise click.ClickException(f"no vectors in space {only_space!r}" if only_space else
                                   "no image space has vectors yet: run `msearch embed` first")
    return chosen


def _address(state: CLIState, address):
    return address or state.config.ray_address


@click.group()
def shards():
    """Serve the shards of sharded indexes (`msearch index --shards N`) on a Ray cluster."""


@shards.command("serve")
@click.option("--space", "only_space", default=None, help="Only this space (default: every image space).")
@click.option("--replicas", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Replicas per shard (Ray restarts any that die; more answer more queries at once).")
@click.option("--cpus", "cpus_per_replica", type=click.FloatRange(0.01, 64), default=0.5, show_default=True,
              help="Logical CPUs Ray reserves per replica.")
@click.option("--address", default=None, help="Ray cluster address [default: MSEARCH_RAY_ADDRESS, else auto].")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def shards_serve(state: CLIState, only_space, replicas, cpus_per_replica, address, as_json):
    """Deploy one Ray Serve application per shard (replacing a set of another count once the new
    one runs). Each replica reads its shard from MSEARCH_DATA_DIR/index as its node sees it and the
    database at MSEARCH_DB. Returns when every shard is running; the deployments stay."""
    from ..distributed.ray_search import deploy_shards
    from ..distributed.runtime import RayUnavailableError
    from ..index.shards import shard_count

    deployed = {}
    for space in _image_spaces(state, only_space):
        count = shard_count(state.config.index_dir, space)
        try:
            deployed[space] = deploy_shards(space, count, state.config.index_dir, state.config.db_url,
                                            replicas=replicas, cpus_per_replica=cpus_per_replica,
                                            address=_address(state, address))
        except RayUnavailableError as error:
            raise click.ClickException(str(error)) from None
    emit(deployed, as_json, "\n".join(f"{space}: {len(names)} shard(s) running ({replicas} replica(s) each)"
                                      for space, names in deployed.items()))


@shards.command("status")
@click.option("--address", default=None, help="Ray cluster address [default: MSEARCH_RAY_ADDRESS, else auto].")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def shards_status(state: CLIState, address, as_json):
    """The shard applications on the cluster and their state."""
    from ..distributed.ray_search import connect
    from ..distributed.runtime import RayUnavailableError

    try:
        _ray, serve = connect(_address(state, address))
        applications = serve.status().applications
    except RayUnavailableError as error:
        raise click.ClickException(str(error)) from None
    found = {name: str(application.status) for name, application in applications.items()
             if name.startswith("msearch-")}
    emit(found, as_json, "\n".join(f"{name}: {status}" for name, status in sorted(found.items()))
         or "no shard applications")


@shards.command("stop")
@click.option("--space", "only_space", default=None, help="Only this space (default: every image space).")
@click.option("--address", default=None, help="Ray cluster address [default: MSEARCH_RAY_ADDRESS, else auto].")
@pass_state
def shards_stop(state: CLIState, only_space, address):
    """Delete the shard applications (web apps on the Ray backend then answer 503 for image search)."""
    from ..distributed.ray_search import undeploy_shards
    from ..distributed.runtime import RayUnavailableError

    for space in _image_spaces(state, only_space):
        try:
            gone = undeploy_shards(space, _address(state, address))
        except RayUnavailableError as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"{space}: {len(gone)} shard application(s) deleted")
