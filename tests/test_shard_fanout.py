"""The Ray backend's fan-out (distributed/ray_search._ask_all): every shard asked at once, one
deadline for all, a late shard's call cancelled and reported as a timeout, a failing shard's
exception kept in its place. Real Serve handles are exercised in test_ray_search.py (a replica
killed under load); here stand-ins with the handle's calling shape (``handle.method.remote(x)``
returning an awaitable) make a shard that is slow on purpose, which a real replica is not.
Also: Serve's throughput-optimised mode is the default, and the environment can turn it off."""
from __future__ import annotations

import asyncio
import os
import time

from manuscripts_search.config import RAY_SERVE_THROUGHPUT_SWITCH, ray_serve_throughput_switch
from manuscripts_search.distributed.ray_search import _ask_all, _CallLoop


class _Method:
    def __init__(self, behaviour):
        self.behaviour = behaviour

    def remote(self, *arguments):
        return self.behaviour(*arguments)


class _Handle:
    def __init__(self, behaviour):
        self.search = _Method(behaviour)


def test_one_deadline_for_all_shards_late_ones_cancelled_errors_kept():
    cancelled = []

    async def quick(value):
        return value * 2

    async def slow(value):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(value)
            raise
        return value

    async def broken(value):
        raise RuntimeError(f"shard {value} cannot read its files")

    handles = [_Handle(quick), _Handle(slow), _Handle(broken), _Handle(quick)]
    begun = time.monotonic()
    future = asyncio.run_coroutine_threadsafe(
        _ask_all(handles, "search", [(1,), (2,), (3,), (4,)], deadline_s=0.3), _CallLoop.get())
    results = future.result(timeout=10)
    took = time.monotonic() - begun
    assert results[0] == 2 and results[3] == 8
    assert isinstance(results[1], TimeoutError) and "0.3" in str(results[1])
    assert isinstance(results[2], RuntimeError) and "shard 3" in str(results[2])
    assert 0.3 <= took < 5  # the deadline, not the slow shard's 30 s
    time.sleep(0.05)  # the cancellation runs on the loop thread
    assert cancelled == [2]


def test_no_shards_no_calls():
    future = asyncio.run_coroutine_threadsafe(_ask_all([], "search", [], deadline_s=1.0), _CallLoop.get())
    assert future.result(timeout=5) == []


def test_serve_throughput_mode_is_on_unless_the_environment_says_otherwise(monkeypatch):
    # setenv first, so that monkeypatch puts back whatever this process had (absent or not).
    monkeypatch.setenv(RAY_SERVE_THROUGHPUT_SWITCH, "unset below")
    monkeypatch.delenv(RAY_SERVE_THROUGHPUT_SWITCH)
    assert ray_serve_throughput_switch() == "1"
    assert os.environ[RAY_SERVE_THROUGHPUT_SWITCH] == "1"  # where Serve, imported later, reads it
    monkeypatch.setenv(RAY_SERVE_THROUGHPUT_SWITCH, "0")
    assert ray_serve_throughput_switch() == "0"
