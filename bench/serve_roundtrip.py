"""Round trip of one call to an idle Ray Serve replica, the way the shard backend calls it, in
each of the ways Serve can be run: what a shard pays per query before it does any work.

Each variant runs in a fresh interpreter (Serve reads its switches once, when it is imported):

- ``actor``: a plain Ray actor method (``ray.get(actor.search.remote(v))``), the floor;
- ``default``: a Serve deployment, a plain method, called through a handle from a thread
  (``handle.search.remote(v).result()``);
- ``default-async``: the same with an ``async def`` method;
- ``throughput``: ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` for the whole local Ray, an ``async def``
  method, called from an event loop on its own thread (in that mode a handle works only inside a
  running loop) — what :mod:`manuscripts_search.distributed.ray_search` does;
- ``throughput-sync``: the same with a plain method (Serve hands it to a thread pool).

The argument is a 768-d float32 query and the answer ten (label, score) pairs, as for a shard.

Run: ``.venv/bin/python bench/serve_roundtrip.py [--calls 300] [--json out.json]``
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

VARIANTS = ("actor", "default", "default-async", "throughput", "throughput-sync")


class Work:
    def search(self, vector):
        return [(i, 0.5) for i in range(10)]

    async def asearch(self, vector):
        return [(i, 0.5) for i in range(10)]


def measure(variant: str, calls: int) -> dict:
    import logging

    import numpy as np

    if variant.startswith("throughput"):
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"  # before Ray starts and Serve is imported
    import ray

    ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from ray import serve
    vector = np.random.default_rng(0).standard_normal((1, 768)).astype(np.float32)

    def timed(call) -> dict:
        for _ in range(30):
            call()
        times = []
        for _ in range(calls):
            begun = time.perf_counter()
            call()
            times.append(time.perf_counter() - begun)
        return {"p50_ms": float(np.median(times) * 1000), "p99_ms": float(np.percentile(times, 99) * 1000)}

    result = {"variant": variant, "calls": calls, "loadavg": list(os.getloadavg())}
    if variant == "actor":
        actor = ray.remote(num_cpus=0.5)(Work).remote()
        result.update(timed(lambda: ray.get(actor.search.remote(vector))))
    else:
        serve.start(proxy_location="Disabled")
        deployment = serve.deployment(Work, name="work", num_replicas=1, ray_actor_options={"num_cpus": 0.5},
                                      max_ongoing_requests=32)
        serve.run(deployment.bind(), name="roundtrip", route_prefix=None, blocking=False)
        while str(getattr(serve.status().applications.get("roundtrip"), "status", "")).split(".")[-1] != "RUNNING":
            time.sleep(0.2)
        method = "search" if variant in ("default", "throughput-sync") else "asearch"
        if variant.startswith("throughput"):
            import asyncio
            import threading

            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, daemon=True).start()
            handle = serve.get_deployment_handle("work", "roundtrip")

            async def call():
                return await getattr(handle, method).remote(vector)

            result.update(timed(lambda: asyncio.run_coroutine_threadsafe(call(), loop).result(10)))
        else:
            handle = serve.get_deployment_handle("work", "roundtrip")
            result.update(timed(lambda: getattr(handle, method).remote(vector).result(timeout_s=10)))
        serve.shutdown()
    ray.shutdown()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--json", default=None)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one, in this process
    args = parser.parse_args(argv)
    if args.variant:
        print(json.dumps(measure(args.variant, args.calls)), flush=True)
        return 0
    rows = []
    for variant in VARIANTS:
        done = subprocess.run([sys.executable, __file__, "--variant", variant, "--calls", str(args.calls)],
                              capture_output=True, text=True, timeout=600)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"{variant} failed:\n{done.stderr[-2000:]}")
        rows.append(json.loads(lines[-1]))
        print(f"{variant:<16} p50 {rows[-1]['p50_ms']:6.2f} ms   p99 {rows[-1]['p99_ms']:6.2f} ms", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
