"""What storing vectors as float16 (store/vector_codec.py) costs in search quality.

Data: ``bench/search.py``'s clustered unit vectors (768-d, Zipf-sized clusters along low-dimensional
subspaces, queries from the same distribution, not in the data). The truth is exact k-NN over the
float32 vectors. Measured against it:

- exact k-NN over the vectors as the database now returns them (encoded to float16, decoded),
  with float32 queries (a text or image query, encoded fresh) and with the queries themselves
  stored and decoded ("more like this" starts from a stored vector);
- the cosine between each vector and its stored copy, and the bytes per vector;
- with ``--hnsw``, the HNSW index (manuscripts_search.index.vector_index) built from the float32
  vectors and from the decoded ones, each against the same truth.

recall@k: the share of the true k nearest found. Run:
``.venv/bin/python bench/float16_recall.py [--n 20000] [--queries 1000] [--k 10] [--hnsw] [--json out.json]``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from manuscripts_search.store.vector_codec import decode_vectors, encode_vectors  # noqa: E402


def _search_bench():
    """bench/search.py as a module (its data generator and exact search)."""
    spec = importlib.util.spec_from_file_location("search_bench", ROOT / "bench" / "search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recall_at(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    hits = sum(len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth))
    return hits / (len(truth) * k)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="data vectors")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hnsw", action="store_true", help="also compare HNSW indexes built from each")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    bench = _search_bench()
    k, dim = args.k, bench.DIM

    data, queries = bench.clustered_vectors(args.n, args.queries, seed=args.seed)
    started = time.perf_counter()
    blobs = encode_vectors(data)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    stored = decode_vectors(blobs, dim)
    decode_s = time.perf_counter() - started
    stored_queries = decode_vectors(encode_vectors(queries), dim)

    truth = bench.exact_topk(data, queries, k + 1)  # one more: how close the k-th and next are
    found = bench.exact_topk(stored, queries, k)
    found_stored_queries = bench.exact_topk(stored, stored_queries, k)
    raw = np.stack([np.frombuffer(blob, "<f2").astype(np.float32) for blob in blobs[:5000]])
    cosines = np.sum(stored * data, axis=1)
    true_scores = np.take_along_axis(queries @ data.T, truth, axis=1)
    stored_scores = np.take_along_axis(queries @ stored.T, truth[:, :k], axis=1)
    result = {
        "vectors": args.n, "queries": args.queries, "dim": dim, "k": k,
        "bytes_per_vector_float32": 4 * dim, "bytes_per_vector_float16": len(blobs[0]),
        "recall_at_k_float32_exact": 1.0,
        "recall_at_k_float16_exact": round(recall_at(found, truth, k), 6),
        "recall_at_k_float16_exact_stored_queries": round(recall_at(found_stored_queries, truth, k), 6),
        "queries_with_identical_top_k": round(float(np.mean([set(f.tolist()) == set(t[:k].tolist())
                                                             for f, t in zip(found, truth)])), 6),
        # Where a neighbour is missed, the true k-th and (k+1)-th were this close to begin with.
        "median_gap_kth_to_next": round(float(np.median(true_scores[:, k - 1] - true_scores[:, k])), 6),
        "max_abs_score_error": round(float(np.max(np.abs(stored_scores - true_scores[:, :k]))), 7),
        "min_cosine_vector_to_stored": round(float(cosines.min()), 8),
        "mean_cosine_vector_to_stored": round(float(cosines.mean()), 8),
        "max_abs_component_error": round(float(np.max(np.abs(stored - data))), 7),
        "max_norm_error_before_rescaling": round(float(np.max(np.abs(np.linalg.norm(raw, axis=1) - 1))), 7),
        "encode_us_per_vector": round(encode_s / args.n * 1e6, 2),
        "decode_us_per_vector": round(decode_s / args.n * 1e6, 2),
    }
    if args.hnsw:
        from manuscripts_search.index.vector_index import VectorIndex

        for name, vectors in (("float32", data), ("float16", stored)):
            index = VectorIndex("bench/float16@0", dim, capacity=args.n)
            started = time.perf_counter()
            index.add(np.arange(args.n), vectors)
            result[f"hnsw_build_s_{name}"] = round(time.perf_counter() - started, 1)
            hits = np.array([[label for label, _ in index.query(query, k)] for query in queries])
            result[f"recall_at_k_hnsw_{name}"] = round(recall_at(hits, truth, k), 6)
        result["recall_difference_hnsw"] = round(result["recall_at_k_hnsw_float32"]
                                                 - result["recall_at_k_hnsw_float16"], 6)
    result["recall_difference_exact"] = round(1.0 - result["recall_at_k_float16_exact"], 6)
    for key, value in result.items():
        print(f"{key:45s} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
