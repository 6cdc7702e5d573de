"""Memory per million vectors of the index layouts on the path to 100M+ canvases (docs/scale-out.md).

For ``--n`` unit vectors of 768 dimensions (SigLIP 2 base), each index is built, saved, and
measured twice: the size of its saved file (hnswlib's and faiss's files are their memory image:
vectors, graph links, levels) and the growth of this process's resident memory while building.

- hnswlib float32, M=32 (manuscripts_search.index.vector_index, what the project runs today);
- faiss HNSW over float16 vectors (IndexHNSWSQ fp16), M=32: half the vector bytes, same graph;
- faiss HNSW over 8-bit scalar-quantised vectors (IndexHNSWSQ QT_8bit), M=32;
- faiss IVF-PQ (IndexIVFPQ, ``--nlist`` lists, 96 sub-quantisers of 8 bits): 96-byte codes,
  the layout a 100M+ shard would use, with an exact re-rank from the stored float vectors.

Memory does not depend on ``efConstruction`` (only the graph's quality does), so the graphs are
built with a small one (``--ef-construction``, default 16) to keep the run short on small
machines; recall and build time at the project's settings are bench/search.py's business.
The data are random unit vectors: the layouts' sizes do not depend on the values.

Run: ``.venv/bin/python bench/index_memory.py [--n 1000000] [--json out.json]``
(faiss: ``pip install -r bench/requirements.txt``).
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

DIM = 768
M = 32


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):  # in slices: no float64 copy of the whole set
        block = rng.standard_normal((min(100_000, n - start), DIM), dtype=np.float32)
        data[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return data


def measure(name: str, build, save, data: np.ndarray, workdir: str) -> dict:
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    index = build(data)
    seconds = time.perf_counter() - started
    grown = rss_mb() - before
    path = os.path.join(workdir, name)
    save(index, path)
    file_mb = os.path.getsize(path) / 2**20
    os.remove(path)
    del index
    gc.collect()
    per_million = 1_000_000 / len(data)
    result = {"index": name, "n": len(data), "build_s": round(seconds, 1),
              "file_mb": round(file_mb, 1), "rss_growth_mb": round(grown, 1),
              "file_mb_per_million": round(file_mb * per_million, 1),
              "bytes_per_vector": round(file_mb * 2**20 / len(data), 1)}
    print(json.dumps(result), flush=True)
    return result


def hnswlib_float32(ef_construction: int):
    import hnswlib

    def build(data):
        index = hnswlib.Index(space="ip", dim=DIM)
        index.init_index(max_elements=len(data), M=M, ef_construction=ef_construction)
        index.add_items(data, np.arange(len(data)))
        return index

    return build, lambda index, path: index.save_index(path)


def faiss_hnsw_sq(quantizer: str, ef_construction: int):
    import faiss

    def build(data):
        index = faiss.IndexHNSWSQ(DIM, getattr(faiss.ScalarQuantizer, quantizer), M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.train(data[:100_000])
        index.add(data)
        return index

    return build, faiss.write_index


def faiss_ivfpq(nlist: int):
    import faiss

    def build(data):
        coarse = faiss.IndexFlatIP(DIM)
        index = faiss.IndexIVFPQ(coarse, DIM, nlist, 96, 8, faiss.METRIC_INNER_PRODUCT)
        index.train(data[:max(100_000, 40 * nlist)])
        index.add(data)
        return index

    return build, faiss.write_index


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--ef-construction", type=int, default=16)
    parser.add_argument("--nlist", type=int, default=4096)
    parser.add_argument("--only", default="hnswlib_f32,hnsw_fp16,hnsw_sq8,ivfpq96",
                        help="comma-separated subset of the layouts")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    layouts = {
        "hnswlib_f32": lambda: hnswlib_float32(args.ef_construction),
        "hnsw_fp16": lambda: faiss_hnsw_sq("QT_fp16", args.ef_construction),
        "hnsw_sq8": lambda: faiss_hnsw_sq("QT_8bit", args.ef_construction),
        "ivfpq96": lambda: faiss_ivfpq(args.nlist),
    }
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(layouts))
    if unknown:
        parser.error(f"unknown layouts {unknown}; choose from {sorted(layouts)}")
    data = unit_vectors(args.n)
    results = []
    with tempfile.TemporaryDirectory(prefix="index-memory-") as workdir:
        for name in wanted:
            build, save = layouts[name]()
            results.append(measure(name, build, save, data, workdir))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"n": args.n, "dim": DIM, "M": M, "cpus": os.cpu_count(),
                                                    "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
