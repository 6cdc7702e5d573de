"""The Ray engine next to the local engine: same catalogue, same model, same machine, same run.

For each model, N canvases whose derivatives are real corpus images at derivative size (448 px)
are embedded twice from the derivative store into a SQLite database: by the local worker
(``embed_pending``, its decoding threads and batched inference) and, after the vectors and
hashes are deleted, by the Ray engine (``embed_with_ray``: claim actor → CPU preparation actors
→ model actor → writer actor) on a local Ray with all the machine's CPUs. Timings cover
everything from the first claim to the last write. Each Ray run also starts its actors and
loads the model in them: that fixed cost is measured by a first Ray run of one batch; the
second run embeds the rest, and the steady rate is (rest - one batch) / (its time - the first
run's time). Ray's own start-up is timed apart. The vectors of both engines are compared item
for item.

Models and images come from bench/embed.py (the tiny CLIP of the tests and a full-size SigLIP 2
base architecture with random weights).

Run: ``.venv/bin/python bench/embed_ray.py [--models tiny,siglip2-base] [--items 512,64]
[--batch-size 16] [--threads 2] [--json out.json]`` (needs the [ray] extra).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _embed_bench():
    """bench/embed.py as a module (its model builders and corpus images)."""
    spec = importlib.util.spec_from_file_location("embed_bench", ROOT / "bench" / "embed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vectors(factory, space):
    from manuscripts_search.store.vector_codec import decode_vector
    from tests.helpers.worker_catalogue import vector_rows

    return {(row.canvas_id, row.region_id): decode_vector(row.vector, row.dim) for row in vector_rows(factory, space)}


def bench_model(name: str, items: int, batch_size: int, threads: int, ray_started_s: float) -> dict:
    import numpy as np
    from sqlalchemy import delete

    from manuscripts_search.store.db import session_scope
    from manuscripts_search.distributed.embed_stages import StoreImages
    from manuscripts_search.distributed.ray_embed import RayEmbedOptions, embed_with_ray
    from manuscripts_search.embedding.registry import choose_torch_threads, resolve_image_encoder
    from manuscripts_search.models import Embedding, PerceptualHash
    from manuscripts_search.embedding.worker import WorkerOptions, embed_pending
    from tests.helpers.worker_catalogue import build_catalogue, migrated_factory

    bench = _embed_bench()
    with tempfile.TemporaryDirectory(prefix=f"embed-ray-{name}-") as workdir:
        work = Path(workdir)
        model_dir = bench.MODELS[name](work / "model")
        resolved = resolve_image_encoder(str(model_dir), fallback=False)
        encoder = resolved.encoder
        import torch

        torch.set_num_threads(choose_torch_threads(encoder) or os.cpu_count())
        factory = migrated_factory(f"sqlite:///{work / 'bench.sqlite3'}")
        catalogue = build_catalogue(factory, work, bench.corpus_images(items))

        local = embed_pending(factory, encoder, catalogue.store, WorkerOptions(batch_size=batch_size, threads=threads))
        local_vectors = _vectors(factory, encoder.space_id)
        with session_scope(factory) as session:
            session.execute(delete(Embedding))
            session.execute(delete(PerceptualHash))

        # Ray's fixed cost (actors started, model loaded in them) is measured with a run of one
        # batch, then the rest is embedded; the difference gives the steady rate.
        images = StoreImages(str(catalogue.store.root))
        started = time.perf_counter()
        first = embed_with_ray(factory, resolved, images, RayEmbedOptions(batch_size=batch_size, limit=batch_size))
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        rest = embed_with_ray(factory, resolved, images, RayEmbedOptions(batch_size=batch_size))
        rest_s = time.perf_counter() - started
        ray_vectors = _vectors(factory, encoder.space_id)
        assert local.embedded == first.embedded + rest.embedded == items, (local.as_dict(), rest.as_dict())
        difference = max(float(np.max(np.abs(ray_vectors[key] - vector))) for key, vector in local_vectors.items())
        factory.kw["bind"].dispose()
    result = {"model": name, "items": items, "batch_size": batch_size, "cpus": os.cpu_count(),
              "local_s": round(local.seconds, 2), "local_items_per_s": round(items / local.seconds, 2),
              "ray_one_batch_s": round(first_s, 2), "ray_rest_items": rest.embedded, "ray_rest_s": round(rest_s, 2),
              "ray_items_per_s": round(rest.embedded / rest_s, 2),
              "ray_steady_items_per_s": round((rest.embedded - first.embedded) / max(rest_s - first_s, 1e-9), 2),
              "ray_start_s": round(ray_started_s, 2), "max_abs_vector_difference": difference}
    print(json.dumps(result), flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny,siglip2-base")
    parser.add_argument("--items", default="512,64", help="items per model, in --models order")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="decoding threads of the local worker")
    parser.add_argument("--json", dest="json_path", help="also write the results here")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    counts = [int(c) for c in args.items.split(",")]
    if len(counts) != len(models):
        parser.error("--items needs one count per model")

    import ray

    started = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    ray_started_s = time.perf_counter() - started
    try:
        results = [bench_model(name, count, args.batch_size, args.threads, ray_started_s)
                   for name, count in zip(models, counts)]
    finally:
        ray.shutdown()
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
