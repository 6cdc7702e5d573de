"""Benchmark of the HNSW index against faiss HNSW and exact numpy search, on the same data.

Data: structured synthetic embeddings, not i.i.d. noise: unit vectors drawn around cluster centres
(cluster sizes follow a Zipf law, like manuscripts of very different lengths), 768-d like SigLIP 2
base; queries are drawn from the same distribution and are not in the index.

Measured for each size (default 100k, then 1M with ``--sizes 100000 1000000``):
- build time, memory (resident-set growth), save and load time of our index (manuscripts_search.index.vector_index);
- recall@10 against exact search, single-query latency p50/p99 at several ``ef``;
- faiss ``IndexHNSWFlat`` (same M, efConstruction, efSearch) and, optionally, faiss with float16
  storage (``IndexHNSWSQ`` fp16), in the same run on the same data;
- numpy brute force (exact) latency per query, for the speed-up;
- incremental add of 1% into an index of the other 99%, against building the whole index;
- filtered k-NN (manuscripts_search.search.knn) at several filter selectivities: recall@10 and latency
  of each strategy (exact, overfetch, filtered callback) and of the automatic choice.

Run: ``.venv/bin/python bench/search.py --sizes 100000 [--json out.json]``
(needs ``pip install -r bench/requirements.txt`` for faiss).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from manuscripts_search.index.layouts import new_index, open_index
from manuscripts_search.index.vector_index import IndexParams, VectorIndex  # noqa: E402
from manuscripts_search.search.knn import knn  # noqa: E402

DIM = 768
K = 10


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def clustered_vectors(n: int, n_queries: int, seed: int = 0, clusters: int = 1000,
                      intrinsic_dim: int = 32, spread: float = 0.8, noise: float = 0.3
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` data and ``n_queries`` query unit vectors around Zipf-sized cluster centres.

    Each cluster varies along its own random ``intrinsic_dim``-dimensional subspace (norm about
    ``spread``), plus isotropic noise of norm about ``noise`` in all 768 dimensions: embeddings of
    real images lie near low-dimensional manifolds, but not exactly on them.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bases = rng.standard_normal((clusters, intrinsic_dim, DIM)).astype(np.float32) / np.sqrt(DIM)
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.8
    weights /= weights.sum()

    def draw(count: int) -> np.ndarray:
        out = np.empty((count, DIM), dtype=np.float32)
        for start in range(0, count, 50_000):
            stop = min(count, start + 50_000)
            assignment = rng.choice(clusters, size=stop - start, p=weights)
            local = rng.standard_normal((stop - start, intrinsic_dim), dtype=np.float32)
            local *= spread / np.sqrt(intrinsic_dim)
            block = centres[assignment].copy()
            for cluster in np.unique(assignment):  # per cluster: never materialise (n, r, 768)
                rows = np.flatnonzero(assignment == cluster)
                block[rows] += local[rows] @ bases[cluster]
            block += rng.standard_normal((stop - start, DIM), dtype=np.float32) * (noise / np.sqrt(DIM))
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            out[start:stop] = block
        return out

    return draw(n), draw(n_queries)


def exact_topk(data: np.ndarray, queries: np.ndarray, k: int, labels: np.ndarray | None = None) -> np.ndarray:
    """Exact top-k labels (row numbers, or ``labels``) by inner product, in blocks."""
    result = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 256):
        scores = queries[start:start + 256] @ data.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
        result[start:start + 256] = np.take_along_axis(top, order, axis=1)
    return result if labels is None else labels[result]


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    hits = sum(len(set(f[:K]) & set(t[:K].tolist())) for f, t in zip(found, truth))
    return hits / (len(truth) * K)


def percentiles_ms(samples: list[float]) -> tuple[float, float]:
    values = np.asarray(samples) * 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def timed_queries(search, queries: np.ndarray) -> tuple[list[list[int]], list[float]]:
    found, times = [], []
    for query in queries:
        start = time.perf_counter()
        labels = search(query)
        times.append(time.perf_counter() - start)
        found.append(labels)
    return found, times


def bench_ours(data, queries, truth, params: IndexParams, efs, workdir: Path, result: dict,
               one_build: bool) -> VectorIndex:
    labels = np.arange(len(data), dtype=np.int64)
    # With one_build the index is built on 99% and the last 1% added incrementally (timed apart).
    stop = int(len(data) * 0.99) if one_build else len(data)
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    index = new_index("bench@synthetic", DIM, params, capacity=stop)
    for block in range(0, stop, 50_000):
        index.add(labels[block:min(stop, block + 50_000)], data[block:min(stop, block + 50_000)])
    if one_build:
        result["build_99pct_s"] = time.perf_counter() - start
        added = time.perf_counter()
        index.add(labels[stop:], data[stop:])  # grows capacity too
        result["add_1pct_s"] = time.perf_counter() - added
    result["hnswlib_build_s"] = time.perf_counter() - start
    result["hnswlib_rss_growth_mb"] = (rss_bytes() - before) / 2**20
    start = time.perf_counter()
    index.save(workdir)
    result["hnswlib_save_s"] = time.perf_counter() - start
    result["hnswlib_file_mb"] = sum(p.stat().st_size for p in workdir.iterdir()) / 2**20
    # hnswlib's file is its memory image (level-0 block, upper-level links); the in-memory block
    # is sized for capacity, which equals the count here.
    result["hnswlib_memory_mb"] = result["hnswlib_file_mb"]
    del index
    gc.collect()
    start = time.perf_counter()
    index = open_index(workdir, "bench@synthetic")
    result["hnswlib_load_s"] = time.perf_counter() - start
    index.set_query_threads(1)
    for ef in efs:
        found, times = timed_queries(lambda q: [label for label, _ in index.query(q, K, ef=ef)], queries)
        p50, p99 = percentiles_ms(times)
        result[f"hnswlib_ef{ef}"] = {"recall@10": recall(found, truth), "p50_ms": p50, "p99_ms": p99}
    return index


def bench_faiss(data, queries, truth, params: IndexParams, efs, result: dict, fp16: bool, workdir) -> None:
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    kinds = [("faiss", lambda: faiss.IndexHNSWFlat(DIM, params.M, faiss.METRIC_INNER_PRODUCT))]
    if fp16:
        kinds.append(("faiss_fp16", lambda: faiss.IndexHNSWSQ(DIM, faiss.ScalarQuantizer.QT_fp16, params.M,
                                                              faiss.METRIC_INNER_PRODUCT)))
    for name, make in kinds:
        gc.collect()
        before = rss_bytes()
        start = time.perf_counter()
        index = make()
        index.hnsw.efConstruction = params.ef_construction
        if not index.is_trained:
            index.train(data[:10_000])
        for block in range(0, len(data), 50_000):
            index.add(data[block:block + 50_000])
        result[f"{name}_build_s"] = time.perf_counter() - start
        result[f"{name}_rss_growth_mb"] = (rss_bytes() - before) / 2**20
        with tempfile.NamedTemporaryFile(dir=workdir) as handle:
            faiss.write_index(index, handle.name)
            # The serialised index is its memory footprint (vectors, graph, levels), byte for byte.
            result[f"{name}_memory_mb"] = os.path.getsize(handle.name) / 2**20
        faiss.omp_set_num_threads(1)
        for ef in efs:
            index.hnsw.efSearch = ef

            def search(query, index=index):
                _, found = index.search(query.reshape(1, -1), K)
                return found[0].tolist()

            found, times = timed_queries(search, queries)
            p50, p99 = percentiles_ms(times)
            result[f"{name}_ef{ef}"] = {"recall@10": recall(found, truth), "p50_ms": p50, "p99_ms": p99}
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        del index
        gc.collect()


def bench_brute_force(data, queries, result: dict, n: int = 50) -> None:
    def search(query):
        scores = data @ query
        top = np.argpartition(-scores, K - 1)[:K]
        return top[np.argsort(-scores[top])].tolist()

    _, times = timed_queries(search, queries[:n])
    result["numpy_p50_ms"], result["numpy_p99_ms"] = percentiles_ms(times)


def bench_incremental(data, params: IndexParams, result: dict, full_build_s: float) -> None:
    """Build on 99%, then add the last 1%: the add's cost against a build of everything."""
    split = int(len(data) * 0.99)
    labels = np.arange(len(data), dtype=np.int64)
    start = time.perf_counter()
    index = new_index("bench@incremental", DIM, params, capacity=split)
    for block in range(0, split, 50_000):
        index.add(labels[block:min(split, block + 50_000)], data[block:min(split, block + 50_000)])
    result["build_99pct_s"] = time.perf_counter() - start
    start = time.perf_counter()
    index.add(labels[split:], data[split:])  # grows capacity too
    result["add_1pct_s"] = time.perf_counter() - start
    result["rebuild_s"] = full_build_s
    result["add_1pct_vs_rebuild"] = result["add_1pct_s"] / full_build_s
    del index
    gc.collect()


def bench_filtered(index: VectorIndex, data, queries, result: dict, selectivities, n_queries: int = 200,
                   exact_max_allowed: int = 50_000) -> None:
    rng = np.random.default_rng(7)
    vectors_of = lambda labels: data[labels]  # noqa: E731 - labels are row numbers here
    table = {}
    for fraction in selectivities:
        allowed = np.sort(rng.choice(len(data), size=max(K, int(len(data) * fraction)), replace=False))
        truth = exact_topk(data[allowed], queries[:n_queries], K, labels=allowed)
        row = {"allowed": int(len(allowed))}
        for strategy in (None, "exact", "overfetch", "filtered"):
            if strategy == "overfetch" and fraction < 0.05:
                continue  # would fetch most of the index per query
            if strategy == "exact" and len(allowed) > exact_max_allowed:
                continue  # copies gigabytes per query at 1M; the auto choice never picks it there
            found, times = timed_queries(
                lambda q: [label for label, _ in knn(index, q, K, allowed=allowed, vectors_of=vectors_of,
                                                     strategy=strategy).hits], queries[:n_queries])
            p50, p99 = percentiles_ms(times)
            counts = [len(f) for f in found]
            row[strategy or "auto"] = {"recall@10": recall(found, truth), "p50_ms": p50, "p99_ms": p99,
                                       "min_results": min(counts)}
        table[str(fraction)] = row
    result["filtered"] = table


def run_size(n: int, args) -> dict:
    params = IndexParams(args.M, args.ef_construction, args.ef)
    print(f"\n== {n:,} vectors, {DIM}-d, M={params.M}, ef_construction={params.ef_construction} ==", flush=True)
    start = time.perf_counter()
    data, queries = clustered_vectors(n, args.queries, clusters=args.clusters, intrinsic_dim=args.intrinsic_dim,
                                      spread=args.spread, noise=args.noise)
    truth = exact_topk(data, queries, K)
    result = {"n": n, "dim": DIM, "M": params.M, "ef_construction": params.ef_construction,
              "data": {"clusters": args.clusters, "intrinsic_dim": args.intrinsic_dim, "spread": args.spread,
                       "noise": args.noise},
              "data_s": time.perf_counter() - start, "cpus": os.cpu_count()}
    print(f"data and exact ground truth: {result['data_s']:.1f}s", flush=True)
    efs = sorted(set(args.efs + [params.ef_search]))
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        kept = Path(args.keep_index) / str(n) if args.keep_index else None
        if kept is not None and (kept / "bench").exists():
            # Re-measure queries on an index kept by an earlier run (same seed, same data).
            index = open_index(kept / "bench", "bench@synthetic")
            index.set_query_threads(1)
            result["reused_index"] = str(kept)
        else:
            index = bench_ours(data, queries, truth, params, efs, Path(workdir), result, args.one_build)
            if kept is not None:
                index.save(kept / "bench")
        print({k: v for k, v in result.items() if k.startswith("hnswlib")}, flush=True)
        if args.only_filtered:
            bench_filtered(index, data, queries, result, args.selectivities,
                           exact_max_allowed=args.exact_max_allowed)
            print(json.dumps(result["filtered"]), flush=True)
            return result
        bench_brute_force(data, queries, result)
        if not args.skip_filtered:
            bench_filtered(index, data, queries, result, args.selectivities,
                           exact_max_allowed=args.exact_max_allowed)
            print(json.dumps(result["filtered"]), flush=True)
        del index
        gc.collect()
    if not args.skip_faiss:
        bench_faiss(data, queries, truth, params, efs, result, fp16=args.fp16, workdir=args.workdir)
        print({k: v for k, v in result.items() if k.startswith("faiss")}, flush=True)
    if args.one_build:
        # hnswlib has no bulk build: a rebuild inserts every vector, as the main build just did.
        result["rebuild_s"] = result["hnswlib_build_s"]
        result["add_1pct_vs_rebuild"] = result["add_1pct_s"] / result["rebuild_s"]
    else:
        bench_incremental(data, params, result, result["hnswlib_build_s"])
    print({k: result[k] for k in ("build_99pct_s", "add_1pct_s", "rebuild_s", "add_1pct_vs_rebuild")}, flush=True)
    return result


def report(results: list[dict], ef: int) -> str:
    lines = ["| n | engine | build s | memory MB | recall@10 | p50 ms | p99 ms | speed-up vs numpy (p50) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for engine in ("hnswlib", "faiss", "faiss_fp16"):
            cell = r.get(f"{engine}_ef{ef}")
            if cell is None or f"{engine}_build_s" not in r or "numpy_p50_ms" not in r:
                continue
            lines.append(f"| {r['n']:,} | {engine} (ef={ef}) | {r[f'{engine}_build_s']:.1f} | "
                         f"{r[f'{engine}_memory_mb']:.0f} | {cell['recall@10']:.4f} | {cell['p50_ms']:.3f} | "
                         f"{cell['p99_ms']:.3f} | {r['numpy_p50_ms'] / cell['p50_ms']:.0f}× |")
        if "numpy_p50_ms" not in r:
            continue
        lines.append(f"| {r['n']:,} | numpy exact | – | {r['n'] * DIM * 4 / 2**20:.0f} (data) | 1.0000 | "
                     f"{r['numpy_p50_ms']:.2f} | {r['numpy_p99_ms']:.2f} | 1× |")
    lines += ["", "| n | ef | hnswlib recall@10 | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for r in results:
        for key in sorted((k for k in r if k.startswith("hnswlib_ef")), key=lambda k: int(k[10:])):
            cell = r[key]
            lines.append(f"| {r['n']:,} | {key[10:]} | {cell['recall@10']:.4f} | {cell['p50_ms']:.3f} | "
                         f"{cell['p99_ms']:.3f} |")
    lines += ["", "| n | save s | load s | file MB | build 99% s | add 1% s | rebuild s | add/rebuild |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "hnswlib_save_s" not in r or "add_1pct_s" not in r:
            continue
        lines.append(f"| {r['n']:,} | {r['hnswlib_save_s']:.2f} | {r['hnswlib_load_s']:.2f} | "
                     f"{r['hnswlib_file_mb']:.0f} | {r['build_99pct_s']:.1f} | {r['add_1pct_s']:.2f} | "
                     f"{r['rebuild_s']:.1f} | {100 * r['add_1pct_vs_rebuild']:.2f}% |")
    if any("filtered" in r for r in results):
        lines += ["", "| n | allowed | strategy | recall@10 | p50 ms | p99 ms | min results |",
                  "|---|---|---|---|---|---|---|"]
        for r in results:
            for fraction, row in r.get("filtered", {}).items():
                for strategy, cell in row.items():
                    if strategy == "allowed":
                        continue
                    lines.append(f"| {r['n']:,} | {float(fraction):.1%} ({row['allowed']:,}) | {strategy} | "
                                 f"{cell['recall@10']:.4f} | {cell['p50_ms']:.2f} | {cell['p99_ms']:.2f} | "
                                 f"{cell['min_results']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--intrinsic-dim", type=int, default=32, help="dimensions of each cluster's subspace")
    parser.add_argument("--spread", type=float, default=0.8, help="norm of the in-subspace variation")
    parser.add_argument("--noise", type=float, default=0.3, help="norm of the isotropic noise")
    parser.add_argument("--exact-max-allowed", type=int, default=50_000,
                        help="skip the exact strategy in the filtered table above this many allowed")
    parser.add_argument("--M", type=int, default=IndexParams.M)
    parser.add_argument("--ef-construction", type=int, default=IndexParams.ef_construction)
    parser.add_argument("--ef", type=int, default=IndexParams.ef_search, help="ef of the main table")
    parser.add_argument("--efs", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--selectivities", type=float, nargs="+", default=[0.5, 0.2, 0.05, 0.02, 0.005])
    parser.add_argument("--fp16", action="store_true", help="also faiss with float16 storage")
    parser.add_argument("--skip-faiss", action="store_true")
    parser.add_argument("--skip-filtered", action="store_true")
    parser.add_argument("--one-build", action="store_true",
                        help="build the main index on 99%% and add 1%% (saves a second build at 1M)")
    parser.add_argument("--workdir", default=None, help="where to save the index (default: temp dir)")
    parser.add_argument("--json", default=None, help="write all figures to this file")
    parser.add_argument("--keep-index", default=None,
                        help="keep the built index in this folder, or reuse one kept there (no build figures)")
    parser.add_argument("--only-filtered", action="store_true",
                        help="with a kept index: measure filtered k-NN only")
    args = parser.parse_args(argv)
    results = []
    for n in args.sizes:
        results.append(run_size(n, args))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    print("\n" + report(results, args.ef))
    return 0


if __name__ == "__main__":
    sys.exit(main())
