"""Benchmark of the embedding worker: items/s of the whole pipeline against the model's raw
forward pass, at the same batch size, on the same machine, in the same run.

Measured, for each model:

1. raw: ``encode_prepared`` (the model's image tower + L2 normalisation) on batches of images
   already decoded and preprocessed into tensors;
2. pipeline over HTTP: ``embed_pending`` on N canvases whose images are fetched from a server
   that adds ``--latency`` (default 50 ms) to every response (a separate process, so it does
   not share the GIL), through the harvester's ``Fetcher``; everything the worker does is in
   the time: claiming in the database, fetching, decoding, perceptual hashing, preprocessing,
   batched inference, writing vectors and hashes (SQLite);
3. pipeline from the derivative store: the same, reading the JPEG derivatives from disk (what
   ``msearch embed`` does after ``msearch harvest``);
4. the per-item CPU work alone (decode, perceptual hashes, preprocessing) on the worker's thread
   pool, no model: the other half that bounds the pipeline. "ratio" is pipeline / raw forward (the
   issue's figure); "of the slower half" is pipeline / min(raw forward, CPU work), how close the
   pipeline comes to the bound its slower half sets.

Models: the tiny CLIP of the tests (``train_tiny_clip`` architecture, 1 training step) and a
full-size SigLIP 2 base architecture with random weights (SiglipConfig: 768 wide, 12 layers,
patch 16 at 224 px, text vocabulary 256,000 like google/siglip2-base-patch16-224), both saved in
Hugging Face format and loaded through ``load_vision_language_encoder``, as a real model is.

The three are measured in interleaved rounds (``--rounds``, default 3) and medians reported, so a
change in the machine's load from other processes hits all alike. "model busy" is the share of
the pipeline's wall time spent inside the model: how well decoding and I/O hide behind it.

Run: ``.venv/bin/python bench/embed.py [--models tiny,siglip2-base] [--items 512,32]
[--batch-size 16] [--threads 8] [--latency 0.05] [--rounds 3] [--json out.json]``;
``bench/embed.py --engine ray [...]`` runs bench/embed_ray.py (the Ray engine next to the local one).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MSEARCH_ALLOW_HOSTS", "127.0.0.1")  # the image server below; SSRF guard otherwise


def _serve(port_queue, stop_event, images_dir: str, latency: float) -> None:
    """Child process: ``/image/<n>.jpg`` from ``images_dir``, each after ``latency`` seconds."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    folder = Path(images_dir)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802 - name fixed by http.server
            time.sleep(latency)
            path = folder / Path(self.path).name
            if not path.is_file():
                self.send_error(404)
                return
            body = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port_queue.put(server.server_address[1])
    stop_event.wait()
    server.shutdown()


def build_tiny_clip(path: Path) -> Path:
    from tests.helpers.model_factory import train_tiny_clip

    return train_tiny_clip(path, steps=1)


def build_siglip2_base(path: Path) -> Path:
    """SigLIP 2 base, patch 16, 224 px: the architecture of google/siglip2-base-patch16-224 with
    random weights (no hub here). The tokenizer is the tests' word-level one: only images are timed."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor

    from tests.helpers.model_factory import build_caption_tokenizer

    config = SiglipConfig(text_config={"vocab_size": 256_000, "max_position_embeddings": 64, "pad_token_id": 0,
                                       "eos_token_id": 1, "bos_token_id": 2},
                          vision_config={"image_size": 224, "patch_size": 16})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SiglipModel(config)
    processor = SiglipProcessor(image_processor=SiglipImageProcessorPil(size={"height": 224, "width": 224}),
                                tokenizer=build_caption_tokenizer(add_bos=False, pad_with_eos=True))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    return path


MODELS = {"tiny": build_tiny_clip, "siglip2-base": build_siglip2_base}
DEFAULT_ITEMS = {"tiny": 512, "siglip2-base": 32}  # a few seconds per run on a 2-core CPU
DEFAULT_TORCH_THREADS = None  # torch's own choice at start (one per core), set in main()


def corpus_images(count: int, long_edge: int = 448):
    """``count`` derivative-sized images cycling through the corpus (each copy shifted a little,
    so that no two files are identical)."""
    from tests.helpers.worker_catalogue import corpus_image_names, load_corpus_image

    names = corpus_image_names()
    base = [load_corpus_image(name, long_edge) for name in names]
    images = []
    for index in range(count):
        image = base[index % len(base)]
        shift = index // len(base)
        images.append((f"{names[index % len(base)]} #{index}",
                       image.crop((shift, 0, image.width, image.height)) if shift else image))
    return images


def time_raw(encoder, images, batch_size: int, items: int) -> float:
    """Items/s of encode_prepared on already-prepared batches (decoded and preprocessed beforehand)."""
    from manuscripts_search.embedding.worker import _Stages

    stages = _Stages(encoder)
    prepared = [stages.prepare(image) for image in images[:batch_size]]
    stages.encode(prepared, batch_size)  # warm-up
    batches = max(1, round(items / batch_size))
    started = time.perf_counter()
    for _ in range(batches):
        stages.encode(prepared, batch_size)
    return batches * batch_size / (time.perf_counter() - started)


def time_cpu_stages(encoder, images, threads: int) -> float:
    """Items/s of the worker's per-item CPU work alone, on its thread pool: decode the JPEG
    derivative (at reduced scale, as the worker does), hash it, preprocess it for the model. The
    pipeline cannot beat this, whatever the model: with a tiny model it is the real ceiling."""
    import io
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from manuscripts_search.embedding.perceptual_hashes import image_hashes
    from manuscripts_search.embedding.worker import _Stages

    stages = _Stages(encoder)
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        encoded.append(buffer.getvalue())

    def work(body: bytes):
        with Image.open(io.BytesIO(body)) as image:
            image.draft("RGB", (stages.decode_side, stages.decode_side))
            image.load()
            image = image.convert("RGB")
        image_hashes(image)
        return stages.prepare(image)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(work, encoded[:threads]))  # warm-up
        started = time.perf_counter()
        list(pool.map(work, encoded))
    return len(encoded) / (time.perf_counter() - started)


def run_pipeline(encoder, images, batch_size: int, threads: int, latency: float, over_http: bool,
                 decode_processes: int = 0) -> dict:
    from sqlalchemy import select

    from harvest.http import Fetcher
    from harvest.politeness import PolitenessPolicy
    from manuscripts_search.store.db import session_scope
    from manuscripts_search.models import Canvas
    from manuscripts_search.embedding.worker import WorkerOptions, _Stages, embed_pending
    from tests.helpers.worker_catalogue import build_catalogue, migrated_factory

    with tempfile.TemporaryDirectory(prefix="msearch-bench-") as scratch:
        scratch = Path(scratch)
        factory = migrated_factory(f"sqlite:///{scratch / 'bench.sqlite3'}")
        stop = multiprocessing.Event()
        server = None
        try:
            base_url = "http://127.0.0.1:1"
            if over_http:
                ports = multiprocessing.Queue()
                served = scratch / "served"
                served.mkdir()
                server = multiprocessing.Process(target=_serve, args=(ports, stop, str(served), latency), daemon=True)
                server.start()
                base_url = f"http://127.0.0.1:{ports.get(timeout=30)}"
            catalogue = build_catalogue(factory, scratch / "data", images, manifest_url=base_url)
            with session_scope(factory) as session:
                canvases = {c.id: (c.image_url, c.derivative_sha256) for c in session.scalars(select(Canvas))}
            decode_side = _Stages(encoder).decode_side
            if over_http:
                for url, sha in canvases.values():  # what the server hands out: the derivatives
                    (served / Path(url).name).write_bytes(catalogue.store.read(sha))
                fetcher = Fetcher("manuscripts-search-bench", timeout=30, retries=0,
                                  policy=PolitenessPolicy(max_per_host=threads))

                def load(item):
                    """Fetch the canvas image over HTTP, then decode it as the worker's own loader does."""
                    import io

                    from PIL import Image

                    body = fetcher.get(canvases[item.canvas_id][0], expect="image").body
                    with Image.open(io.BytesIO(body)) as image:
                        image.draft("RGB", (decode_side, decode_side))
                        image.load()
                        return image.convert("RGB")
            else:
                load = None  # the worker's own loader: derivatives from the store
            options = WorkerOptions(batch_size=batch_size, threads=threads, prefetch_batches=4, regions=False,
                                    decode_processes=decode_processes)
            report = embed_pending(factory, encoder, catalogue.store, options, load_image=load)
            assert report.embedded == len(images) and not report.failed, report.as_dict()
            return {"items": report.embedded, "seconds": round(report.seconds, 3),
                    "items_per_second": report.embedded / report.seconds,
                    "model_seconds": round(report.model_seconds, 3)}
        finally:
            stop.set()
            if server is not None:
                server.join(timeout=10)
            factory.kw["bind"].dispose()


def bench_model(name: str, items: int, batch_size: int, threads: int, latency: float, rounds: int,
                decode_processes: int = 0) -> dict:
    """``rounds`` rounds of raw / pipeline over HTTP / pipeline from the store, interleaved so that
    a change in the machine's load (other processes) hits all three alike; medians reported."""
    import statistics

    import torch

    from manuscripts_search.embedding.registry import choose_torch_threads, resolve_image_encoder

    with tempfile.TemporaryDirectory(prefix=f"msearch-bench-{name}-") as scratch:
        started = time.perf_counter()
        model_dir = MODELS[name](Path(scratch) / name)
        built = time.perf_counter() - started
        encoder = resolve_image_encoder(str(model_dir), fallback=False).encoder
        # As `msearch embed` chooses (one process per model there; here the previous model's choice
        # must not carry over).
        torch.set_num_threads(choose_torch_threads(encoder) or DEFAULT_TORCH_THREADS)
        parameters = sum(p.numel() for p in encoder.model.vision_model.parameters())
        images = corpus_images(items)
        measured = {"raw": [], "cpu": [], "http": [], "store": []}
        if decode_processes:
            measured["processes"] = []
        for _ in range(rounds):
            measured["raw"].append({"items_per_second": time_raw(encoder, [im for _, im in images], batch_size, items)})
            measured["cpu"].append({"items_per_second": time_cpu_stages(encoder, [im for _, im in images], threads)})
            measured["http"].append(run_pipeline(encoder, images, batch_size, threads, latency, over_http=True))
            measured["store"].append(run_pipeline(encoder, images, batch_size, threads, latency, over_http=False))
            if decode_processes:
                measured["processes"].append(run_pipeline(encoder, images, batch_size, threads, latency,
                                                          over_http=False, decode_processes=decode_processes))
            print(f"  {name} round: " + ", ".join(f"{kind} {runs[-1]['items_per_second']:.2f}/s"
                                                   for kind, runs in measured.items()), flush=True)

    def median(kind: str, key: str = "items_per_second") -> float:
        return statistics.median(run[key] for run in measured[kind])

    raw, cpu = median("raw"), median("cpu")
    ceiling = min(raw, cpu)  # the slower of the two halves bounds the pipeline
    result = {"model": name, "image_tower_parameters": parameters, "device": encoder.device,
              "torch_threads": torch.get_num_threads(), "batch_size": batch_size, "threads": threads,
              "latency_s": latency, "items_per_run": items, "rounds": rounds, "build_s": round(built, 1),
              "raw_items_per_second": round(raw, 2),
              "raw_runs": [round(run["items_per_second"], 2) for run in measured["raw"]],
              "cpu_stages_items_per_second": round(cpu, 2),
              "cpu_stages_runs": [round(run["items_per_second"], 2) for run in measured["cpu"]]}
    for kind in [kind for kind in ("http", "store", "processes") if kind in measured]:
        busy = statistics.median(run["model_seconds"] / run["seconds"] for run in measured[kind])
        result[f"pipeline_{kind}"] = {
            "items_per_second": round(median(kind), 2), "ratio": round(median(kind) / raw, 3),
            "ratio_to_slower_half": round(median(kind) / ceiling, 3),
            "model_busy_fraction": round(busy, 3),
            "runs": [round(run["items_per_second"], 2) for run in measured[kind]]}
    return result


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--engine" in argv:  # `--engine ray`: the Ray engine next to the local one (bench/embed_ray.py)
        at = argv.index("--engine")
        engine = argv[at + 1] if at + 1 < len(argv) else ""
        del argv[at:at + 2]
        if engine == "ray":
            import importlib.util

            spec = importlib.util.spec_from_file_location("embed_ray_bench", Path(__file__).with_name("embed_ray.py"))
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.main(argv)
        if engine != "local":
            raise SystemExit(f"--engine must be local or ray, not {engine!r}")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny,siglip2-base")
    parser.add_argument("--items", default=None,
                        help="items per run, one number or one per model in --models order "
                             f"(default: {', '.join(f'{k} {v}' for k, v in DEFAULT_ITEMS.items())})")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=8, help="fetching/decoding threads of the worker")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the image server adds per response")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the measurements")
    parser.add_argument("--decode-processes", type=int, default=0,
                        help="also time the pipeline from the store decoding in this many processes")
    parser.add_argument("--json", dest="json_path", help="also write the results here")
    args = parser.parse_args(argv)
    import torch

    global DEFAULT_TORCH_THREADS
    DEFAULT_TORCH_THREADS = torch.get_num_threads()
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    counts = [int(count) for count in args.items.split(",")] if args.items else \
        [DEFAULT_ITEMS.get(name, 32) for name in names]
    counts += [counts[-1]] * (len(names) - len(counts))
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {', '.join(MODELS)}")
    results = {"cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(), "models": []}
    for name, count in zip(names, counts):
        result = bench_model(name, count, args.batch_size, args.threads, args.latency, args.rounds,
                             args.decode_processes)
        results["models"].append(result)
        print(f"{name}: raw forward {result['raw_items_per_second']:.2f} items/s; per-item CPU work alone "
              f"{result['cpu_stages_items_per_second']:.2f} items/s; "
              f"pipeline over HTTP {result['pipeline_http']['items_per_second']:.2f} items/s "
              f"(ratio {result['pipeline_http']['ratio']:.3f}, of the slower half "
              f"{result['pipeline_http']['ratio_to_slower_half']:.3f}, model busy "
              f"{result['pipeline_http']['model_busy_fraction']:.0%}); "
              f"from the store {result['pipeline_store']['items_per_second']:.2f} items/s "
              f"(ratio {result['pipeline_store']['ratio']:.3f}, of the slower half "
              f"{result['pipeline_store']['ratio_to_slower_half']:.3f}, model busy "
              f"{result['pipeline_store']['model_busy_fraction']:.0%}); medians of {args.rounds} rounds; "
              f"batch {args.batch_size}, {result['torch_threads']} torch thread(s), {args.threads} worker "
              f"threads, {result['device']}", flush=True)
        if "pipeline_processes" in result:
            print(f"{name}: from the store, decoding in {args.decode_processes} process(es): "
                  f"{result['pipeline_processes']['items_per_second']:.2f} items/s (ratio "
                  f"{result['pipeline_processes']['ratio']:.3f}, of the slower half "
                  f"{result['pipeline_processes']['ratio_to_slower_half']:.3f})", flush=True)
    results["load_average_at_end"] = os.getloadavg()
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
