"""Ray for one command: the cluster at an address, or a local Ray started on this machine.

Ray is an optional extra, so it is imported here, inside functions, and a missing installation
becomes a readable error instead of an ImportError deep in a pipeline.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator, Optional

log = logging.getLogger(__name__)

INSTALL_HINT = "install the Ray extra: pip install 'manuscripts-search[ray]' (ray[data,serve]==2.60.0)"
LOCAL_ADDRESSES = (None, "", "local")


class RayUnavailableError(RuntimeError):
    """Ray is not installed or the cluster cannot be reached; the message says what to do."""


def import_ray():
    """The ``ray`` module with Ray Data loaded; raises RayUnavailableError when not installed."""
    try:
        import ray
        import ray.data  # noqa: F401 - the pipelines need it; fail here, not halfway through
    except ImportError as error:
        raise RayUnavailableError(f"the Ray engine needs Ray ({error}); {INSTALL_HINT}") from None
    return ray


@contextmanager
def ray_connection(address: Optional[str] = None, *, num_cpus: Optional[int] = None) -> Iterator[object]:
    """Ray for the length of the block.

    When Ray is already initialised in this process (a test session, a notebook, a driver started
    by ``ray job submit``) it is used as it is and left running. Otherwise ``address`` says where:
    None or "local" starts a Ray on this machine (``num_cpus`` logical CPUs, default all) and
    stops it afterwards; "auto" joins the cluster this machine is a node of; "ray://head:10001"
    connects through Ray Client; "head:6379" to the head's GCS.

    Raises RayUnavailableError when Ray is missing or the cluster cannot be reached.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    local = address in LOCAL_ADDRESSES
    if not local:
        check_reachable(address)
    try:
        ray.init(address=None if local else address, num_cpus=num_cpus if local else None,
                 include_dashboard=False, configure_logging=True, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as error:
        where = "start a local Ray" if local else f"connect to the Ray cluster at {address!r}"
        raise RayUnavailableError(f"cannot {where}: {error}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a "host:port" or "ray://host:port" address nothing listens on (Ray itself
    would retry for minutes); other forms ("auto") are left to Ray. Raises RayUnavailableError."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise RayUnavailableError(f"not a Ray cluster address: {address!r} (expected auto, ray://host:port "
                                  "or host:port)") from None
    if not host or not port:
        return
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        raise RayUnavailableError(f"cannot reach the Ray cluster at {address!r}: {error}; start it with "
                                  "`ray start --head` or give the right address") from None


def cluster_gpus(ray) -> int:
    """Whole GPUs the connected cluster offers (0 on CPU-only clusters)."""
    return int(ray.cluster_resources().get("GPU", 0))
