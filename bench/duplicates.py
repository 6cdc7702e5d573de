"""Benchmark of near-duplicate search ("other digitisations of this page") over N canvases.

Builds a SQLite catalogue of N canvases whose crop hashes are random (so nothing is a duplicate
but a handful of planted copies), then times ``find_near_duplicates`` for one canvas: the first
query of a process (it reads every stored hash from the database) and the following ones (the
hashes stay in memory while the table is unchanged; each query checks one aggregate first).

Run: ``.venv/bin/python bench/duplicates.py [--n 100000,1000000] [--queries 5] [--keep DIR]``
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build(path: Path, count: int, planted: int = 5) -> int:
    """``count`` canvases with random crop hashes; the first canvas has ``planted`` copies whose
    hashes differ from its own in a few bits. Returns the first canvas's id."""
    import numpy as np
    from sqlalchemy import insert, select

    from manuscripts_search.embedding import perceptual_hashes as phash
    from manuscripts_search.store.db import session_scope
    from manuscripts_search.models import Canvas, Manifest, PerceptualHash
    from manuscripts_search.models.base import utcnow
    from manuscripts_search.embedding.perceptual_hashes import HASH_ALGORITHM
    from tests.helpers.worker_catalogue import migrated_factory

    factory = migrated_factory(f"sqlite:///{path}")
    rng = np.random.default_rng(0)
    words = phash.CROP_HASH_BITS // 64
    with session_scope(factory) as session:
        manifest = Manifest(url="http://bench.test/m.json", iiif_id="http://bench.test/m.json", iiif_version=3,
                            label={"none": ["bench"]})
        session.add(manifest)
        session.flush()
        manifest_id = manifest.id
    original = None
    for start in range(0, count, 20_000):
        stop = min(count, start + 20_000)
        with session_scope(factory) as session:
            session.execute(insert(Canvas), [{"manifest_id": manifest_id, "iiif_id": f"http://bench.test/c{i}",
                                              "position": i, "label": {}} for i in range(start, stop)])
            ids = list(session.scalars(select(Canvas.id).where(Canvas.position >= start, Canvas.position < stop)
                                       .order_by(Canvas.position)))
            hashes = rng.integers(0, 2**63, size=(len(ids), phash.CROP_VARIANTS, words), dtype=np.int64).astype(">u8")
            if original is None:
                original = hashes[0].copy()
                for copy in range(1, 1 + planted):
                    hashes[copy] = original ^ np.uint64(1 << (copy * 7))  # a few bits apart
            session.execute(insert(PerceptualHash), [
                {"canvas_id": canvas_id, "region_id": None, "derivative_sha256": f"{canvas_id:064x}",
                 "algorithm": HASH_ALGORITHM, "phash64": 0, "crop_hashes": row.tobytes(), "created_at": utcnow()}
                for canvas_id, row in zip(ids, hashes)])
            if start == 0:
                first = ids[0]
    factory.kw["bind"].dispose()
    return first


def measure(path: Path, canvas_id: int, queries: int) -> dict:
    from manuscripts_search.embedding import perceptual_hashes
    from manuscripts_search.store.db import session_scope
    from tests.helpers.worker_catalogue import migrated_factory

    factory = migrated_factory(f"sqlite:///{path}")
    timings = []
    for _ in range(1 + queries):
        started = time.perf_counter()
        with session_scope(factory) as session:
            hits = perceptual_hashes.find_near_duplicates(session, canvas_id=canvas_id, limit=12)
        timings.append(time.perf_counter() - started)
    factory.kw["bind"].dispose()
    return {"first_query_s": round(timings[0], 3), "next_queries_median_s": round(statistics.median(timings[1:]), 4),
            "hits": len(hits), "database_reads": perceptual_hashes.loads}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="100000,1000000", help="catalogue sizes, comma-separated")
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--keep", help="directory for the catalogues (reused when present)")
    args = parser.parse_args(argv)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="msearch-dup-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    for count in (int(n) for n in args.n.split(",")):
        path = folder / f"hashes-{count}.sqlite3"
        started = time.perf_counter()
        if path.exists():
            path.unlink()
        first = build(path, count)
        built = time.perf_counter() - started
        import subprocess

        # Each size in a fresh process: the first query there is the cold one.
        code = (f"import sys, json; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
                f"from duplicates import measure; from pathlib import Path; "
                f"print(json.dumps(measure(Path({str(path)!r}), {first}, {args.queries})))")
        output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        result = output.strip().splitlines()[-1]
        print(f"{count} canvases (built in {built:.0f} s, {os.path.getsize(path) / 2**20:.0f} MiB): {result}",
              flush=True)
        if not args.keep:
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
