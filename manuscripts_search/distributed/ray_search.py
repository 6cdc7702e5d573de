"""Index shards served on Ray Serve: one application per shard, its replicas on whichever nodes
Ray places them, and the web app's side that asks every shard and merges.

``msearch shards serve`` deploys (:func:`deploy_shards`); each replica is a :class:`ShardServer`
that reads its shard's files (memory-mapped where the layout allows) from the index directory the
node sees, reloads them when ``msearch index`` saves a new version, and answers with
:func:`..search.shard_search.search_shard`, the function local shards run too. Filters are pushed
down: a replica gets the filter and reads its allowed labels from the database itself.

Ray restarts a replica that dies. Until it is back, :class:`RayShards` answers from the others
within the deadline and names the missing shard, so the results say they are partial.

Serve runs in its throughput-optimised mode (``RAY_SERVE_THROUGHPUT_OPTIMIZED``, Ray ≥ 2.55): a
direct gRPC data plane between caller and replica, and the replica's code on its own event loop.
A round trip to an idle replica on this 2-core machine costs 1.45–1.95 ms that way against
2.8–5.6 ms by default (bench/serve_roundtrip.py, three runs); with a query's own work at 2–4 ms,
that is most of what a shard adds. Serve reads the switch when it is imported, so
:func:`connect` sets it (unless the environment already says otherwise) before the first import
of ``ray.serve`` in a process and before starting a local Ray, and replicas get it in their
``runtime_env``. In that mode a handle is called only from a running event loop: the web app's
threads hand their calls to one loop thread (:class:`_CallLoop`) and wait on it.
"""
from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Optional

from ..config import RAY_SERVE_THROUGHPUT_SWITCH, ray_serve_throughput_switch
from ..index.shards import ShardPart, all_parts
from ..index.vector_index import index_basename
from ..search.shard_search import ShardAnswer, ShardRequest, ShardStats
from .runtime import RayUnavailableError, check_reachable, import_ray

log = logging.getLogger(__name__)

NAMESPACE = "msearch"
DEPLOYMENT = "shard"
DISCOVERY_INTERVAL_S = 5.0  # how often the web app looks for a changed set of shard applications


def application_name(space: str, part: ShardPart) -> str:
    """The Serve application of shard ``part`` of ``space`` (also how readers find the set)."""
    return f"msearch-{index_basename(space)}-{part.number + 1}-of-{part.count}"


def _application_pattern(space: str) -> re.Pattern:
    return re.compile(rf"^msearch-{re.escape(index_basename(space))}-(\d+)-of-(\d+)$")


class ShardServer:
    """One replica of one shard (the deployment's class; plain, so it also runs without Serve).

    Its Serve methods are coroutines that search inline, on the replica's event loop: one query
    at a time per replica. A query is a few milliseconds of CPU, and handing it to a thread pool
    (what Serve does with a plain method) cost more than it saves: a call to one shard of the 1M
    benchmark (bench/scale.py --shards) took 4.9 ms this way against 7.8 ms as a plain method.
    More concurrent queries per shard: more replicas (``--replicas``).
    """

    def __init__(self, index_dir: str, space: str, number: int, count: int, db_url: str,
                 check_interval: float = 1.0, query_threads: Optional[int] = None):
        from ..index.live import LiveIndex
        from ..store.db import session_factory_for

        self.space = space
        self.part = ShardPart(number, count)
        self.live = LiveIndex(Path(index_dir), self.part.index_name(space), check_interval)
        self.factory = session_factory_for(db_url)
        self.query_threads = query_threads
        self._threads_set_on = None
        self._index()  # fail at start, where Serve reports it, not at the first query

    def _index(self):
        index = self.live.get()
        if index is not None and self.query_threads and index is not self._threads_set_on:
            index.set_query_threads(self.query_threads)  # replicas share the node's cores
            self._threads_set_on = index
        return index

    async def search(self, request: ShardRequest) -> ShardAnswer:
        return self.answer(request)

    async def stats(self) -> Optional[ShardStats]:
        return self.shard_stats()

    def answer(self, request: ShardRequest) -> ShardAnswer:
        from ..search.shard_search import search_shard
        from ..store.db import session_scope

        try:
            index = self._index()
            with session_scope(self.factory) as session:
                return search_shard(session, index, self.space, self.part, request)
        except Exception as error:  # the caller merges what the other shards found and says so
            log.exception("shard %s of %s failed a query", self.part.describe(), self.space)
            return ShardAnswer(self.part.number + 1, error=f"{type(error).__name__}: {error}")

    def shard_stats(self) -> Optional[ShardStats]:
        index = self._index()
        if index is None:
            return None
        return ShardStats(len(index), index.element_count, index.dim, index.params, index.layout)


def connect(address: Optional[str]):
    """Ray, connected to the cluster at ``address`` (None: ``auto``) in the msearch namespace, or
    as it already is in this process. Raises RayUnavailableError."""
    # Before a local Ray starts (its Serve controller inherits the environment) and before
    # ray.serve is imported here: Serve reads the switch once, at import.
    ray_serve_throughput_switch()
    ray = import_ray()
    if not ray.is_initialized():
        address = address or "auto"
        if address not in ("auto", "local"):
            check_reachable(address)
        try:
            ray.init(address=None if address == "local" else address, namespace=NAMESPACE,
                     include_dashboard=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as error:
            raise RayUnavailableError(f"cannot connect to the Ray cluster at {address!r}: {error}") from None
    try:
        # Ray Serve's own modules raise deprecation warnings (pydantic's) while importing; under
        # ``-W error`` that would leave a half-imported ray.serve behind for the whole process.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from ray import serve
    except ImportError as error:
        raise RayUnavailableError(f"sharded search on Ray needs Ray Serve ({error}); install the Ray "
                                  "extra: pip install 'manuscripts-search[ray]'") from None
    return ray, serve


def _replica_environment(query_threads: Optional[int]) -> dict:
    environment = {RAY_SERVE_THROUGHPUT_SWITCH: ray_serve_throughput_switch()}
    if query_threads:
        # set_query_threads() sets OpenMP's thread count for the calling thread only, and Serve
        # may run queries on another thread than the one that built the replica: the environment
        # reaches them all, so no query starts a team of threads as large as the node's cores.
        environment["OMP_NUM_THREADS"] = str(int(query_threads))
    return environment


def deploy_shards(space: str, count: int, index_dir: Path, db_url: str, replicas: int = 1,
                  cpus_per_replica: float = 0.5, address: Optional[str] = None,
                  check_interval: float = 1.0, query_threads: Optional[int] = None) -> list[str]:
    """Deploy (or update in place) one Serve application per shard of ``space``, and delete the
    applications of another shard count of the same space once the new ones run. Returns the
    applications' names. Raises RayUnavailableError when Ray or Serve cannot be used."""
    _ray, serve = connect(address)
    serve.start(proxy_location="Disabled")  # the web app calls the shards through handles: no HTTP
    server = serve.deployment(ShardServer, name=DEPLOYMENT, num_replicas=replicas,
                              ray_actor_options={"num_cpus": cpus_per_replica,
                                                 "runtime_env": {"env_vars": _replica_environment(query_threads)}},
                              max_ongoing_requests=32,
                              health_check_period_s=2, health_check_timeout_s=10)
    names = []
    for part in all_parts(count):
        name = application_name(space, part)
        serve.run(server.bind(str(index_dir), space, part.number, part.count, db_url, check_interval,
                              query_threads),
                  name=name, route_prefix=None, blocking=False)
        names.append(name)
    _wait_running(serve, names)
    pattern = _application_pattern(space)
    for other in list(serve.status().applications):
        match = pattern.match(other)
        if match and other not in names:
            serve.delete(other, _blocking=False)
    return names


def _wait_running(serve, names: list[str], timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        applications = serve.status().applications
        states = {name: str(getattr(applications.get(name), "status", "MISSING")) for name in names}
        failed = {name: state for name, state in states.items() if "DEPLOY_FAILED" in state}
        if failed:
            messages = "; ".join(f"{name}: {getattr(applications[name], 'message', '')}" for name in failed)
            raise RayUnavailableError(f"shard deployments failed: {messages}")
        if all(state.endswith("RUNNING") for state in states.values()):
            return
        if time.monotonic() > deadline:
            raise RayUnavailableError(f"shard deployments not running after {timeout_s:.0f} s: {states}")
        time.sleep(0.5)


def undeploy_shards(space: str, address: Optional[str] = None) -> list[str]:
    """Delete every shard application of ``space``; returns their names."""
    _ray, serve = connect(address)
    pattern = _application_pattern(space)
    gone = [name for name in serve.status().applications if pattern.match(name)]
    for name in gone:
        serve.delete(name)
    return gone


class _CallLoop:
    """One asyncio event loop on a daemon thread, shared by the process's :class:`RayShards`:
    Serve handles are called from it, and the caller's thread waits on the result."""

    _lock = threading.Lock()
    _loop: Optional[asyncio.AbstractEventLoop] = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="msearch-shard-calls", daemon=True).start()
                cls._loop = loop
            return cls._loop


async def _ask_all(handles: list, method: str, arguments: list, deadline_s: float) -> list:
    """``method(*arguments[i])`` on handle i, all at once; each result, or the exception that
    took its place (TimeoutError for a shard that had not answered by the deadline, whose call
    is then cancelled)."""
    async def ask(handle, argument: tuple):
        return await getattr(handle, method).remote(*argument)

    calls = [asyncio.ensure_future(ask(handle, argument)) for handle, argument in zip(handles, arguments)]
    if not calls:
        return []
    _done, late = await asyncio.wait(calls, timeout=deadline_s)
    for call in late:
        call.cancel()
    results = []
    for call in calls:
        if call in late:
            results.append(TimeoutError(f"no answer within {deadline_s:g} s"))
        elif call.exception() is not None:
            results.append(call.exception())
        else:
            results.append(call.result())
    return results


class RayShards:
    """The web app's side: the shard applications of a space, asked in parallel, each within the
    deadline (:class:`..search.shard_search.ShardBackend`)."""

    def __init__(self, space: str, address: Optional[str] = None, deadline_s: float = 2.0):
        self.space = space
        self.address = address
        self.deadline_s = deadline_s
        self._lock = threading.Lock()
        self._handles: list = []
        self._found_at = -float("inf")
        self.count = 0
        self._discover()

    def _discover(self) -> None:
        """Find the running set's applications (the highest complete shard count), at most every
        few seconds; a set being replaced keeps serving until the new one is complete."""
        now = time.monotonic()
        with self._lock:
            if self._handles and now - self._found_at < DISCOVERY_INTERVAL_S:
                return
            self._found_at = now
            _ray, serve = connect(self.address)
            pattern = _application_pattern(self.space)
            sets: dict[int, set[int]] = {}
            for name in serve.status().applications:
                match = pattern.match(name)
                if match:
                    sets.setdefault(int(match.group(2)), set()).add(int(match.group(1)))
            complete = [count for count, numbers in sets.items() if len(numbers) == count]
            if not complete:
                if self._handles:
                    return  # keep what was found; its missing shards show up as unavailable
                raise RayUnavailableError(f"no shard applications of {self.space!r} on the Ray cluster: "
                                          "run `msearch shards serve`")
            count = max(complete)
            if count != self.count:
                self._handles = [serve.get_deployment_handle(DEPLOYMENT, application_name(self.space, part))
                                 for part in all_parts(count)]
                self.count = count

    def _ask(self, handles: list, method: str, arguments: list) -> list:
        call = asyncio.run_coroutine_threadsafe(_ask_all(handles, method, arguments, self.deadline_s),
                                                _CallLoop.get())
        # The coroutine keeps the deadline; the margin only guards against a stalled loop.
        return call.result(timeout=self.deadline_s + 10)

    def search(self, request: ShardRequest, session=None, canvas_filter=None) -> list[ShardAnswer]:
        from dataclasses import replace

        from ..search.shard_search import split_allowed

        self._discover()
        # One snapshot of the set: another thread's discovery may replace it meanwhile, and the
        # split by shard must match the handles it is sent to.
        handles = list(self._handles)
        split = None if canvas_filter is None else split_allowed(session, self.space, len(handles),
                                                                 canvas_filter=canvas_filter)
        requests = [request if split is None else replace(request, allowed=split[number])
                    for number in range(len(handles))]
        answers = []
        for number, found in enumerate(self._ask(handles, "search", [(one,) for one in requests])):
            if isinstance(found, BaseException):  # timed out, replica died mid-call, being restarted
                answers.append(ShardAnswer(number + 1, error=f"{type(found).__name__}: {found}"[:300]))
            else:
                answers.append(found)
        return answers

    def stats(self) -> list[Optional[ShardStats]]:
        self._discover()
        handles = list(self._handles)
        return [None if isinstance(found, BaseException) else found
                for found in self._ask(handles, "stats", [()] * len(handles))]
