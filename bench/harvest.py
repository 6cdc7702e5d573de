"""Benchmark of the harvester against a plain sequential loop, and of an unchanged re-harvest
against the first harvest.

A server in its own process (so that it does not share the GIL with the harvester) serves
``--manifests`` generated IIIF v3 manifests (default 1,000) listed by one collection, each with
``--canvases`` canvases whose images have their own Image API 3 service (info.json + a small
JPEG), and adds ``--latency`` (default 100 ms) to every response, as a distant server would.
The ETag of every document lets conditional requests be answered with 304.

Measured:
1. a plain sequential loop: GET each manifest URL and decode its JSON, one after another;
2. the harvester (``harvest_sources``: fetch, parse, store in SQLite) over the collection,
   manifests only - manifests/s against (1);
3. the same harvest again, nothing changed (one 304 per document);
4. a fresh full harvest with canvas images (the derivative per canvas, as ``msearch harvest``
   does by default), then that again with nothing changed.

Run: ``.venv/bin/python bench/harvest.py [--manifests 1000] [--canvases 8] [--latency 0.1]
[--workers 16 --per-host 8] [--skip-sequential] [--json out.json]``
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _serve(port_queue, stop_event, manifests: int, canvases: int, latency: float) -> None:
    """Child process: the generated IIIF site."""
    from PIL import Image

    from tests.helpers.scripted_server import Reply, ScriptedServer, json_reply

    server = ScriptedServer(latency=latency)
    base = server.base_url
    buffer = io.BytesIO()
    Image.new("RGB", (96, 128), (140, 90, 40)).save(buffer, "JPEG", quality=85)
    jpeg = buffer.getvalue()
    for m in range(manifests):
        items = []
        for c in range(canvases):
            service = f"{base}/iiif/{m}-{c}"
            items.append({
                "id": f"{base}/m/{m}/canvas/{c}", "type": "Canvas", "width": 1200, "height": 1600,
                "label": {"none": [f"f. {c + 1}r"]},
                "items": [{"id": f"{base}/m/{m}/page/{c}", "type": "AnnotationPage", "items": [{
                    "id": f"{base}/m/{m}/anno/{c}", "type": "Annotation", "motivation": "painting",
                    "target": f"{base}/m/{m}/canvas/{c}",
                    "body": {"id": f"{service}/full/max/0/default.jpg", "type": "Image", "format": "image/jpeg",
                             "service": [{"id": service, "type": "ImageService3", "profile": "level2"}]}}]}]})
        server.add_json(f"/m/{m}.json", {
            "@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/m/{m}.json",
            "type": "Manifest", "label": {"en": [f"Generated manuscript {m}"]},
            "metadata": [{"label": {"en": ["Shelfmark"]}, "value": {"none": [f"MS {m}"]}}],
            "items": items})
    server.add_json("/collection.json", {
        "@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/collection.json",
        "type": "Collection", "label": {"en": ["Generated"]},
        "items": [{"id": f"{base}/m/{m}.json", "type": "Manifest"} for m in range(manifests)]})

    def images(request):
        path = request.path
        if not path.startswith("/iiif/"):
            return Reply(404, b"not found")
        service = base + path.rsplit("/info.json", 1)[0] if path.endswith("/info.json") else None
        if service:
            return json_reply({"@context": "http://iiif.io/api/image/3/context.json", "id": service,
                               "type": "ImageService3", "protocol": "http://iiif.io/api/image",
                               "profile": "level2", "width": 1200, "height": 1600})(request)
        return Reply(200, jpeg, {"Content-Type": "image/jpeg", "ETag": '"img"'})

    server.fallback = images
    port_queue.put(base)
    stop_event.wait()
    server.close()


def sequential_loop(urls: list[str]) -> float:
    import urllib3

    pool = urllib3.PoolManager()
    started = time.perf_counter()
    for url in urls:
        response = pool.request("GET", url)
        json.loads(response.data)
    return time.perf_counter() - started



def harvest_once(base: str, db_path: Path, data_dir: Path, workers: int, per_host: int, images: bool) -> dict:
    from harvest.http import Fetcher
    from harvest.images import InfoCache, fetch_canvas_derivatives
    from harvest.manifests import HarvestOptions, harvest_sources
    from harvest.politeness import PolitenessPolicy
    from manuscripts_search.store.db import make_engine, make_sessionmaker, upgrade_database
    from manuscripts_search.store.derivatives import DerivativeStore

    engine = make_engine(f"sqlite:///{db_path}")
    upgrade_database(engine)
    factory = make_sessionmaker(engine)
    fetcher = Fetcher("manuscripts-search-bench", timeout=30, retries=2,
                      policy=PolitenessPolicy(max_per_host=per_host))
    started = time.perf_counter()
    report = harvest_sources([f"{base}/collection.json"], factory, fetcher,
                             options=HarvestOptions(workers=workers))
    manifest_seconds = time.perf_counter() - started
    fetched = 0
    if images:
        image_report = fetch_canvas_derivatives(factory, fetcher, DerivativeStore(data_dir / "derivatives"),
                                                long_edge=448, threads=workers,
                                                infos=InfoCache(fetcher, factory))
        fetched = image_report.fetched
        assert not image_report.failures, image_report.failures[:3]
    total = time.perf_counter() - started
    fetcher.close()
    engine.dispose()
    assert not report.failures, report.failures[:3]
    return {"seconds": round(total, 2), "manifest_seconds": round(manifest_seconds, 2),
            "manifests": len(report.manifests), "new": report.new, "unchanged": report.unchanged,
            "images": fetched, "requests": fetcher.stats.get("requests", 0),
            "status_304": fetcher.stats.get("status:304", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifests", type=int, default=1000)
    parser.add_argument("--canvases", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--per-host", type=int, default=8)
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument("--skip-images", action="store_true")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    port_queue, stop_event = context.Queue(), context.Event()
    server = context.Process(target=_serve, args=(port_queue, stop_event, args.manifests, args.canvases, args.latency),
                             daemon=True)
    server.start()
    base = port_queue.get(timeout=120)
    figures: dict = {"manifests": args.manifests, "canvases_per_manifest": args.canvases,
                     "latency_s": args.latency, "workers": args.workers, "per_host": args.per_host}
    try:
        urls = [f"{base}/m/{m}.json" for m in range(args.manifests)]
        if not args.skip_sequential:
            seconds = sequential_loop(urls)
            figures["sequential"] = {"seconds": round(seconds, 2),
                                     "manifests_per_s": round(args.manifests / seconds, 1)}
            print(f"sequential loop: {seconds:.1f} s, {args.manifests / seconds:.1f} manifests/s", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            first = harvest_once(base, tmp / "a.sqlite3", tmp / "a", args.workers, args.per_host, images=False)
            again = harvest_once(base, tmp / "a.sqlite3", tmp / "a", args.workers, args.per_host, images=False)
            figures["harvest_manifests"] = {"first": first, "unchanged": again,
                                            "manifests_per_s": round(args.manifests / first["seconds"], 1),
                                            "reharvest_speedup": round(first["seconds"] / again["seconds"], 1)}
            print(f"harvester, manifests only: first {first['seconds']} s "
                  f"({args.manifests / first['seconds']:.1f} manifests/s), unchanged re-harvest {again['seconds']} s "
                  f"({again['status_304']} x 304)", flush=True)
            if "sequential" in figures:
                figures["speedup_vs_sequential"] = round(
                    figures["harvest_manifests"]["manifests_per_s"] / figures["sequential"]["manifests_per_s"], 1)
                print(f"  -> {figures['speedup_vs_sequential']}x the sequential loop", flush=True)
            if not args.skip_images:
                full = harvest_once(base, tmp / "b.sqlite3", tmp / "b", args.workers, args.per_host, images=True)
                full_again = harvest_once(base, tmp / "b.sqlite3", tmp / "b", args.workers, args.per_host, images=True)
                speedup = round(full["seconds"] / full_again["seconds"], 1)
                figures["harvest_with_images"] = {"first": full, "unchanged": full_again,
                                                  "reharvest_speedup": speedup}
                print(f"harvester with images: first {full['seconds']} s ({full['images']} images, "
                      f"{full['requests']} requests), unchanged re-harvest {full_again['seconds']} s "
                      f"({full_again['requests']} requests) -> "
                      f"{figures['harvest_with_images']['reharvest_speedup']}x faster", flush=True)
    finally:
        stop_event.set()
        server.join(timeout=10)
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
