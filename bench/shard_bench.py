"""``bench/scale.py --shards N [--engine local|ray]``: the space split into N shards by canvas.

Label ``i`` is a vector of canvas ``i // 4`` (a page and three regions, as a harvest with regions
makes), so the shards are the product's (``shard_numbers`` of the canvas). Each shard is built by
the product's index code under its shard name; the queries go through
``manuscripts_search.search.shard_search.ShardedIndex``, in this process (``local``) or to one Ray
Serve application per shard on a Ray started here (``ray``, ``msearch shards serve``'s
``deploy_shards``), and are compared with one index of the same layout over the same data:

- ``recall_at_10``, ``p50_ms``/``p99_ms`` (one client, one query at a time) of the shards, and
  ``single_p50_ms``/``single_recall_at_10`` of the one index (this process, one thread);
- ``merge_overhead_ratio``: sharded p50 over single-index p50 (target ≤ 2.0 on one machine);
- ``partial_answers``: answers that named an unavailable shard (0 expected without faults);
- with ``--fault-seconds S`` (``ray`` only): ``--clients`` threads query for S seconds and one
  replica of shard 1 is killed after a sixth of it: ``fault.errors`` (target 0), complete and
  partial answers, their latencies, and when answers were complete again.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from manuscripts_search.index.layouts import new_index, open_index
from manuscripts_search.index.shards import ShardPart, shard_numbers, write_plan
from manuscripts_search.index.vector_index import IndexParams

REGIONS_PER_CANVAS = 4  # label // 4 = canvas: a page vector and three regions
TRAIN_SAMPLE = 100_000
CHUNK = 50_000


def owners(n: int, shards: int) -> np.ndarray:
    return shard_numbers(np.arange(n, dtype=np.int64) // REGIONS_PER_CANVAS, shards)


def build_shards(space: str, layout: str, data_path: Path, n: int, shards: int, params: IndexParams,
                 directory: Path) -> dict:
    """Each shard's index, built from its rows of the data file and saved under its name."""
    from scale import read_rows

    directory.mkdir(parents=True, exist_ok=True)
    owner = owners(n, shards)
    started = time.perf_counter()
    sizes = []
    data = np.load(data_path, mmap_mode="r")
    for number in range(shards):
        part = ShardPart(number, shards)
        labels = np.flatnonzero(owner == number).astype(np.int64)
        sizes.append(int(len(labels)))
        index = new_index(part.index_name(space), data.shape[1], params, capacity=len(labels), layout=layout)
        if not index.is_trained:
            picks = np.sort(np.random.default_rng(1).choice(labels, size=min(len(labels), TRAIN_SAMPLE),
                                                            replace=False))
            index.train(np.ascontiguousarray(data[picks]))
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            mine = labels[(labels >= start) & (labels < stop)]
            if len(mine):
                rows = read_rows(data_path, start, stop)
                index.add(mine, rows[mine - start])
        index.save(directory)
        del index
    write_plan(directory, space, shards)
    return {"build_s": time.perf_counter() - started, "per_shard": sizes}


def timed_queries(search, queries: np.ndarray, truth: np.ndarray, k: int) -> dict:
    from search import percentiles_ms, recall

    found, times, in_shards, partial = [], [], [], 0
    for query in queries:
        begun = time.perf_counter()
        answer = search(query)
        times.append(time.perf_counter() - begun)
        found.append([label for label, _ in answer.hits])
        partial += bool(answer.unavailable)
        if answer.shard_ms:
            in_shards.append(max(answer.shard_ms) / 1000)
    p50, p99 = percentiles_ms(times)
    # The slowest shard's own time per query: the rest of p50 is transport, fan-out and merge.
    shard_p50 = percentiles_ms(in_shards)[0] if in_shards else None
    return {"recall_at_10": recall(found, truth), "p50_ms": p50, "p99_ms": p99, "partial_answers": partial,
            "slowest_shard_p50_ms": shard_p50}


def run_sharded(space: str, layout: str, data_path: Path, n: int, queries: np.ndarray, truth: np.ndarray,
                shards: int, engine: str, params: IndexParams, workdir: Path, k: int,
                fault_seconds: float = 0.0, clients: int = 20, single_dir: Path | None = None,
                reuse: bool = False) -> dict:
    from search import percentiles_ms, recall

    from manuscripts_search.search.shard_search import LocalShards, ShardedIndex

    directory = workdir / f"shards-{layout}-n{n}-x{shards}"
    result: dict = {"shards": shards, "engine": engine, "layout": layout}
    kept = [open_index(directory, ShardPart(number, shards).index_name(space)) if directory.is_dir() else None
            for number in range(shards)] if reuse else [None]
    if all(index is not None for index in kept):
        result.update(build_s=None, reused=True, per_shard=[len(index) for index in kept])
    else:
        result.update(build_shards(space, layout, data_path, n, shards, params, directory))
        print(f"built {shards} shard(s) in {result['build_s']:.0f} s: {result['per_shard']}", flush=True)
    del kept

    if single_dir is not None:
        single = open_index(single_dir, space)
        single.set_query_threads(1)
        single.query(queries[0], k)
        found, times = [], []
        for _ in range(2):  # the first pass touches the pages
            found, times = [], []
            for query in queries:
                begun = time.perf_counter()
                found.append([label for label, _ in single.query(query, k)])
                times.append(time.perf_counter() - begun)
        result["single_p50_ms"], result["single_p99_ms"] = percentiles_ms(times)
        result["single_recall_at_10"] = recall(found, truth)
        del single

    ray_started = False
    if engine == "local":
        backend = LocalShards(directory, space, shards)
        for live in backend.live:
            live.get().set_query_threads(1)
    else:
        import logging

        import ray

        from manuscripts_search.config import ray_serve_throughput_switch
        from manuscripts_search.distributed.ray_search import RayShards, deploy_shards

        if not ray.is_initialized():
            # As connect() does before it starts a local Ray: Serve's throughput-optimised mode for
            # the controller too, which inherits this environment.
            ray_serve_throughput_switch()
            ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
            ray_started = True
        db_url = f"sqlite:///{workdir / 'bench-empty.sqlite3'}"  # unfiltered queries never read it
        deployed = time.perf_counter()
        deploy_shards(space, shards, directory, db_url, replicas=1, cpus_per_replica=0.5, query_threads=1)
        result["deploy_s"] = time.perf_counter() - deployed
        backend = RayShards(space, deadline_s=5.0)
    sharded = ShardedIndex(space, backend)

    def search(query):
        return sharded.nearest(None, query, k)

    timed_queries(search, queries[:50], truth[:50], k)  # warm: pages touched, handles connected
    result.update(timed_queries(search, queries, truth, k))
    if "single_p50_ms" in result:
        result["merge_overhead_ratio"] = result["p50_ms"] / result["single_p50_ms"]
    if fault_seconds and engine == "ray":
        result["fault"] = fault_run(sharded, queries, truth, k, fault_seconds, clients, space, shards)
    if engine == "ray":
        from manuscripts_search.distributed.ray_search import undeploy_shards

        undeploy_shards(space)
        if ray_started:
            import ray

            ray.shutdown()
    return result


def fault_run(sharded, queries, truth, k: int, seconds: float, clients: int, space: str, shards: int) -> dict:
    """``clients`` threads query for ``seconds``; one replica of shard 1 is killed a sixth in."""
    import ray
    from ray.util import list_named_actors

    from search import percentiles_ms

    from manuscripts_search.distributed.ray_search import application_name

    expected = [set(row.tolist()) for row in truth]
    records, errors = [], []
    stop = threading.Event()

    def client(number: int) -> None:
        position = number
        while not stop.is_set():
            which = position % len(queries)
            position += 1
            begun = time.perf_counter()
            try:
                answer = sharded.nearest(None, queries[which], k)
            except Exception as error:  # counted: the target is none
                errors.append(repr(error)[:200])
                continue
            records.append((time.monotonic(), time.perf_counter() - begun, bool(answer.unavailable),
                            len(expected[which] & {label for label, _ in answer.hits}) / k))

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(seconds / 6)
    target = application_name(space, ShardPart(0, shards))
    victim = next(entry["name"] for entry in list_named_actors(all_namespaces=True)
                  if entry["name"].startswith("SERVE_REPLICA::") and f"::{target}#" in entry["name"])
    killed_at = time.monotonic()
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=False)
    time.sleep(seconds - seconds / 6)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    complete = [r for r in records if not r[2]]
    partial = [r for r in records if r[2]]
    after = [r[0] for r in partial if r[0] >= killed_at]
    p50, p99 = percentiles_ms([r[1] for r in records]) if records else (None, None)
    return {"seconds": seconds, "clients": clients, "killed_replica_of": target,
            "killed_at_s": killed_at - began, "answers": len(records), "errors": len(errors),
            "error_samples": errors[:3], "complete": len(complete), "partial": len(partial),
            "queries_per_s": len(records) / seconds, "p50_ms": p50, "p99_ms": p99,
            "recall_at_10_complete": float(np.mean([r[3] for r in complete])) if complete else None,
            "last_partial_after_kill_s": (max(after) - killed_at) if after else None}
