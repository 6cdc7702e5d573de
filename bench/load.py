"""Load test of the production server: gunicorn (web/gunicorn_conf.py) serving text, image and
metadata search over an index of ≥ 100 000 vectors, hit by 50 concurrent clients for 60 s.

The catalogue is synthetic but goes through the real models and index APIs: manifests and
canvases in the database, one 768-d embedding row per canvas (unit vectors around cluster
centres, like bench/search.py), the index of ``--layout`` (default ``hnsw``) saved by
:class:`VectorIndex`, and the full-text documents made by :func:`sync_documents`. The model is a
tiny CLIP in Hugging Face format built here (768-d projection, so vectors match the index),
loaded by the app through its real path: so the figures measure serving, index and database
costs, not the encoder's (a SigLIP 2 base forward pass on CPU adds its own latency per text or
image query).

Three request kinds, round-robin per client:
  text      GET  /api/search?q=<words>&signal=visual    (text tower → k-NN)
  image     POST /api/search  image=<PNG upload>          (image tower → k-NN)
  metadata  GET  /api/search?q=<word>&signal=fulltext   (full text over labels and metadata)

Also measured: memory per worker (RSS and PSS: whether the index is loaded once per process,
and what preloading in the master shares), and, with ``--reload-at``, a graceful index reload
under load (the index files are replaced while clients keep searching).

Run: ``.venv/bin/python bench/load.py [--vectors 100000] [--duration 60] [--clients 50]
[--workers 2] [--threads 8] [--preload] [--reload-at 30] [--layout ivfpq] [--json out.json]``
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DIM = 768
CANVASES_PER_MANIFEST = 100
WORDS = ["dragon", "margin", "psalter", "initial", "gold", "saint", "lion", "bird", "map", "musical", "hours",
         "crucifixion", "annunciation", "bestiary", "herbal", "astronomy", "calendar", "king", "queen", "ship"]


# -- the catalogue -----------------------------------------------------------------------------------

def build_model(path: Path) -> Path:
    """A tiny CLIP with a 768-d projection, saved in Hugging Face format."""
    from transformers import CLIPModel

    from tests.helpers.model_factory import _clip_config, _clip_processor, _save, _seeded_model

    model = _seeded_model(CLIPModel, _clip_config(hidden=32, layers=2, heads=2, projection_dim=DIM), seed=7)
    return _save(model, _clip_processor(), path)


def clustered_vectors(count: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((max(8, count // 500), DIM)).astype(np.float32)
    sizes = rng.zipf(1.3, len(centres)).astype(np.float64)
    which = rng.choice(len(centres), size=count, p=sizes / sizes.sum())
    vectors = centres[which] + 0.35 * rng.standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build_catalogue(workdir: Path, vectors: int, layout: str = "hnsw") -> dict:
    """Database, index and model under ``workdir`` (reused when already built for ``vectors``
    and ``layout``)."""
    marker = workdir / "catalogue.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("vectors") == vectors and info.get("layout", "hnsw") == layout:
            print(f"reusing the catalogue in {workdir}", flush=True)
            return info
    import sqlalchemy as sa

    from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
    from manuscripts_search.search.documents import sync_documents
    from manuscripts_search.embedding.encoders import load_vision_language_encoder
    from manuscripts_search.index.layouts import new_index
    from manuscripts_search.models import Canvas, Embedding, Manifest, Source, utcnow
    from manuscripts_search.store.vector_codec import encode_vector

    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    model_dir = build_model(workdir / "model")
    encoder = load_vision_language_encoder(str(model_dir), device="cpu")
    db_url = f"sqlite:///{data_dir / 'msearch.sqlite3'}"
    engine = make_engine(db_url)
    upgrade_database(engine)
    rng = np.random.default_rng(0)
    manifests = -(-vectors // CANVASES_PER_MANIFEST)
    started = time.perf_counter()
    with engine.begin() as connection:
        source = sa.insert(Source).values(url="https://bench.example/collection.json", kind="collection",
                                          added_at=utcnow())
        source_id = connection.execute(source).inserted_primary_key[0]
        now = utcnow()
        connection.execute(sa.insert(Manifest), [{
            "id": m + 1, "url": f"https://bench.example/m/{m}.json", "iiif_id": f"https://bench.example/m/{m}.json",
            "source_id": source_id, "iiif_version": 3,
            "label": {"en": [f"{rng.choice(WORDS)} {rng.choice(WORDS)} manuscript {m}"]}, "summary": {},
            "metadata_entries": [{"label": {"en": ["Subject"]}, "value": {"en": [" ".join(rng.choice(WORDS, 4))]}}],
            "providers": [{"id": "https://bench.example/library", "label": {"en": ["Bench Library"]}}],
            "homepage": [], "see_also": [], "warnings": [], "canvas_count": CANVASES_PER_MANIFEST,
            "image_canvas_count": CANVASES_PER_MANIFEST, "fetched_at": now} for m in range(manifests)])
        canvas_rows = []
        for number in range(vectors):
            m, position = divmod(number, CANVASES_PER_MANIFEST)
            canvas_rows.append({
                "id": number + 1, "manifest_id": m + 1, "iiif_id": f"https://bench.example/m/{m}/c{position}",
                "position": position, "label": {"none": [f"f. {position + 1}r"]}, "width": 2000, "height": 3000,
                "service_id": f"https://bench.example/iiif/{m}-{position}", "service_api_version": 3,
                "service_level": 2, "image_width": 2000, "image_height": 3000})
        for start in range(0, len(canvas_rows), 20_000):
            connection.execute(sa.insert(Canvas), canvas_rows[start:start + 20_000])
    vectors_array = clustered_vectors(vectors, rng)
    with engine.begin() as connection:
        for start in range(0, vectors, 10_000):
            connection.execute(sa.insert(Embedding), [{
                "id": number + 1, "space": encoder.space_id, "model_id": encoder.model_id,
                "model_revision": encoder.revision, "canvas_id": number + 1, "region_id": None, "dim": DIM,
                "vector": encode_vector(vectors_array[number]), "stale": False, "created_at": now}
                for number in range(start, min(vectors, start + 10_000))])
    print(f"database: {manifests} manifests, {vectors} canvases and embeddings in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    with session_scope(make_sessionmaker(engine)) as session:
        documents = sync_documents(session)
    print(f"full-text documents: {documents.total} in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    index = new_index(encoder.space_id, DIM, capacity=vectors, layout=layout)
    if not index.is_trained:  # IVF: train() learns the quantisers from a sample it draws itself
        index.train(vectors_array)
    for start in range(0, vectors, 20_000):
        block = np.arange(start + 1, min(vectors, start + 20_000) + 1)
        index.add(block, vectors_array[start:start + len(block)])
    index.save(data_dir / "index")
    print(f"{layout} index of {len(index)} vectors built and saved in {time.perf_counter() - started:.0f} s",
          flush=True)
    engine.dispose()
    info = {"vectors": vectors, "manifests": manifests, "data_dir": str(data_dir), "db_url": db_url,
            "model_dir": str(model_dir), "space": encoder.space_id, "layout": layout}
    marker.write_text(json.dumps(info))
    return info


# -- the server --------------------------------------------------------------------------------------

def production_app():
    """``web:create_app()`` with the production modules wired as create_app wires them (health,
    request-id logging, rate limit); applied here only where this checkout's create_app does not
    yet, so the benchmark always measures the production configuration."""
    from web import create_app, health, logging_setup, ratelimit

    app = create_app()
    if "health" not in app.blueprints:
        logging_setup.init_app(app)
        ratelimit.init_app(app)
        app.register_blueprint(health.bp)
    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(info: dict, port: int, workers: int, threads: int, preload: bool, log_path: Path):
    env = {**os.environ, "MSEARCH_DATA_DIR": info["data_dir"], "MSEARCH_DB": info["db_url"],
           "MSEARCH_MODEL": info["model_dir"], "MSEARCH_DEVICE": "cpu", "MSEARCH_SEARCH_RATE_LIMIT": "off",
           "MSEARCH_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    flags = ["-b", f"127.0.0.1:{port}", "-w", str(workers), "--threads", str(threads), "--log-level", "warning"]
    if preload:
        flags.append("--preload")
    log = open(log_path, "w")
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(REPO / "web" / "gunicorn_conf.py"),
                                *flags, "bench.load:production_app()"], cwd=REPO, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}; see {log_path}")
        try:
            status, _body = request("GET", port, "/healthz")
            if status == 200:
                return process
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"gunicorn did not answer /healthz within 180 s; see {log_path}")


def stop_server(process) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def memory_of(pid: int) -> dict:
    """RSS and PSS in MB (PSS shares copy-on-write pages among the processes that map them)."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss", "Shared_Clean", "Private_Dirty"):
            values[name.lower()] = int(rest.split()[0]) / 1024
    return values


# -- the clients --------------------------------------------------------------------------------------

def request(method: str, port: int, path: str, body: bytes | None = None, headers: dict | None = None,
            connection: http.client.HTTPConnection | None = None, timeout: float = 60) -> tuple[int, bytes]:
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        if own:
            connection.close()


def query_image(seed: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.effect_noise((224, 224), 30 + seed % 50).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def multipart(image: bytes) -> tuple[bytes, dict]:
    boundary = "benchboundary7"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def make_requests(seed: int):
    rng = random.Random(seed)
    images = [multipart(query_image(seed * 10 + i)) for i in range(5)]
    while True:
        words = " ".join(rng.sample(WORDS, 3))
        yield "text", "GET", "/api/search?" + urlencode({"q": words, "signal": "visual", "k": 20}), None, {}
        body, headers = rng.choice(images)
        yield "image", "POST", "/api/search", body, headers
        metadata_query = urlencode({"q": rng.choice(WORDS), "signal": "fulltext", "k": 20})
        yield "metadata", "GET", "/api/search?" + metadata_query, None, {}


def client_loop(port: int, seed: int, stop_at: float, results: list, lock: threading.Lock) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    local = []
    for kind, method, path, body, headers in make_requests(seed):
        if time.monotonic() >= stop_at:
            break
        started = time.monotonic()
        try:
            status, payload = request(method, port, path, body, headers, connection=connection)
            ok = status == 200 and payload.startswith(b"{")
        except (OSError, http.client.HTTPException) as error:
            status, ok = repr(error)[:80], False
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        local.append((kind, started, time.monotonic() - started, status, ok))
    connection.close()
    with lock:
        results.extend(local)


def replace_index_files(info: dict) -> float:
    """Save the index again (new files, atomically, as `msearch index` does after a rebuild);
    returns the seconds it took."""
    from manuscripts_search.index.layouts import open_index

    started = time.perf_counter()
    index = open_index(Path(info["data_dir"]) / "index", info["space"])
    index.save(Path(info["data_dir"]) / "index")
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def summarise(results: list, duration: float) -> list[dict]:
    rows = []
    for kind in ("text", "image", "metadata", "all"):
        chosen = [r for r in results if kind == "all" or r[0] == kind]
        latencies = [r[2] * 1000 for r in chosen if r[4]]
        rows.append({"kind": kind, "requests": len(chosen), "rps": len(chosen) / duration,
                     "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
                     "max_ms": max(latencies) if latencies else float("nan"),
                     "errors": sum(1 for r in chosen if not r[4])})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'kind':<9} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7}")
    for row in rows:
        print(f"{row['kind']:<9} {row['requests']:>9} {row['rps']:>8.1f} {row['p50_ms']:>8.1f} "
              f"{row['p99_ms']:>8.1f} {row['max_ms']:>8.1f} {row['errors']:>7}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--preload", action="store_true", help="gunicorn --preload (indexes loaded in the master)")
    parser.add_argument("--reload-at", type=float, default=None, help="replace the index files after this many seconds")
    parser.add_argument("--layout", default="hnsw", help="index layout (manuscripts_search.index.layouts)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/msearch-load"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    info = build_catalogue(args.workdir, args.vectors, args.layout)
    port = free_port()
    log_path = args.workdir / "gunicorn.log"
    process = start_server(info, port, args.workers, args.threads, args.preload, log_path)
    report: dict = {"vectors": args.vectors, "layout": info.get("layout", "hnsw"), "clients": args.clients,
                    "duration_s": args.duration, "workers": args.workers, "threads": args.threads,
                    "preload_index": args.preload}
    try:
        master_memory = memory_of(process.pid)
        idle = {pid: memory_of(pid) for pid in worker_pids(process.pid)}
        # Warm up: every worker loads the model and the index on its first searches.
        warm: list = []
        warm_lock = threading.Lock()
        warmers = [threading.Thread(target=client_loop, args=(port, 1000 + i, time.monotonic() + 8, warm, warm_lock))
                   for i in range(args.workers * args.threads)]
        for thread in warmers:
            thread.start()
        for thread in warmers:
            thread.join()
        warmed = {pid: memory_of(pid) for pid in worker_pids(process.pid)}
        results: list = []
        lock = threading.Lock()
        started = time.monotonic()
        stop_at = started + args.duration
        clients = [threading.Thread(target=client_loop, args=(port, i, stop_at, results, lock))
                   for i in range(args.clients)]
        for thread in clients:
            thread.start()
        reload_info = None
        if args.reload_at is not None:
            time.sleep(max(0.0, started + args.reload_at - time.monotonic()))
            reload_started = time.monotonic()
            save_s = replace_index_files(info)
            reload_info = {"at_s": reload_started - started, "save_s": save_s}
        for thread in clients:
            thread.join()
        elapsed = time.monotonic() - started
        loaded = {pid: memory_of(pid) for pid in worker_pids(process.pid)}
        _status, health = request("GET", port, "/healthz")
        report["health_after"] = json.loads(health)
    finally:
        stop_server(process)
    rows = summarise(results, elapsed)
    report["table"] = rows
    report["memory_mb"] = {"master": master_memory, "workers_idle": idle, "workers_warm": warmed,
                           "workers_after_load": loaded}
    print(f"\n{args.clients} clients for {elapsed:.0f} s against gunicorn ({args.workers} workers × "
          f"{args.threads} threads{', index preloaded' if args.preload else ''}), "
          f"{info['vectors']} vectors of {DIM} dimensions, {info['manifests']} manifests:")
    print_table(rows)
    print("\nmemory per worker (MB): idle → after warm-up → after the run (RSS / PSS)")
    for pid in loaded:
        before, warm_mem, after = idle.get(pid, {}), warmed.get(pid, {}), loaded[pid]
        print(f"  pid {pid}: {before.get('rss', 0):.0f}/{before.get('pss', 0):.0f} → "
              f"{warm_mem.get('rss', 0):.0f}/{warm_mem.get('pss', 0):.0f} → {after['rss']:.0f}/{after['pss']:.0f}")
    print(f"  master: {master_memory['rss']:.0f}/{master_memory['pss']:.0f}")
    if reload_info is not None:
        window = [r for r in results if reload_info["at_s"] - 1 <= r[1] - started <= reload_info["at_s"] + 10]
        before = [r for r in results if r[1] - started < reload_info["at_s"] - 1 and r[4]]
        reload_info.update({
            "requests_in_window": len(window), "errors_in_window": sum(1 for r in window if not r[4]),
            "p50_ms_in_window": percentile([r[2] * 1000 for r in window if r[4]], 50),
            "max_ms_in_window": max((r[2] * 1000 for r in window if r[4]), default=float("nan")),
            "p50_ms_before": percentile([r[2] * 1000 for r in before], 50),
            "reloads_seen_by_one_worker": sum(i.get("reloads", 0) for i in report["health_after"]["indexes"])})
        report["reload"] = reload_info
        print(f"\nindex files replaced at {reload_info['at_s']:.1f} s (save took {reload_info['save_s']:.1f} s): "
              f"{reload_info['requests_in_window']} requests in the 11 s around it, "
              f"{reload_info['errors_in_window']} errors, p50 {reload_info['p50_ms_in_window']:.0f} ms "
              f"(before: {reload_info['p50_ms_before']:.0f} ms), slowest {reload_info['max_ms_in_window']:.0f} ms; "
              f"a worker's /healthz reports {reload_info['reloads_seen_by_one_worker']} reload(s)")
    errors = [r for r in results if not r[4]]
    if errors:
        print(f"\nfirst errors: {[(r[0], r[3]) for r in errors[:5]]}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
