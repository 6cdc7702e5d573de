"""Benchmark of region methods (issue 13): the multi-scale grid, content-aware proposals, both.

Synthetic manuscript pages (tests/helpers/synthetic_pages.py: a textured support, rows of
pseudo-text with rubrics, 1-3 coloured shapes of the tiny CLIP's vocabulary anywhere, margins
included, at 3-15 % of the page width, pages 1,000-3,000 px wide) are served by the tests' IIIF
Image API 3 server on 127.0.0.1 (tests/helpers/iiif_server.py) as one Presentation 3 manifest. For
each method, in a fresh data directory and SQLite database, the product does the work:
``msearch harvest URL --regions METHOD`` (canvas images, regions planned and fetched as crops),
``msearch embed`` (the embed worker; it updates the index), and the queries go through the
product's visual search (``search.signals.visual_ranking`` on the saved index). The model is the
tests' tiny CLIP trained on crops WITH clutter (``train_tiny_clip(clutter=...)``: shapes among
pseudo-text on the support, off-centre, partly cut off), kept under ``--workdir`` and reused.

For each shape query ("a red circle", ...) over all pages:

- ``localisation_recall_at_5``: one of the top 5 region hits covers a true box of that shape (IoU
  >= 0.5, or contains it while the shape fills >= 25 % of the region);
- ``canvas_recall_at_10``: of the pages holding that shape (at most 10), the share among the top 10
  canvases of the visual ranking (a canvas scored by the best of its canvas and region vectors);
- ``shapes_covered``: the share of true shapes that one of their page's regions covers (what the
  method offers the model, whatever the model makes of it);
- ``vectors_per_canvas`` (canvas vector included), ``harvest_s_per_canvas`` (images, proposals,
  region crops over HTTP) and ``embed_s_per_canvas`` (the embed command, index update included),
  on this machine; the load average at start and end is in the JSON (a shared machine).

Run: ``.venv/bin/python bench/regions.py [--pages 120 | --quick] [--json PATH] [--workdir DIR]
[--clutter 0.8] [--methods grid,content,both]``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.synthetic_pages import covers, render_page  # noqa: E402

METHODS = ("grid", "content", "both")
QUICK_PAGES = 40
DEFAULT_PAGES = 120
# The model: the tests' tiny CLIP, trained longer and mostly on cluttered crops.
CLIP_RECIPE = {"steps": 900, "clutter": 0.8, "pool_per_class": 240, "seed": 0}


def tiny_clip(workdir: Path, recipe: dict, log) -> Path:
    """The tiny CLIP of ``recipe`` under ``workdir``, trained once per recipe and reused."""
    from tests.helpers.model_factory import train_tiny_clip

    name = "clip-" + "-".join(f"{k}{v}" for k, v in sorted(recipe.items()))
    path = workdir / name
    if (path / "recipe.json").exists():
        return path
    started = time.perf_counter()
    partial = workdir / (name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    train_tiny_clip(partial, **recipe)
    (partial / "recipe.json").write_text(json.dumps(recipe), encoding="utf-8")
    partial.rename(path)  # only a finished model is ever reused
    log(f"trained the tiny CLIP in {time.perf_counter() - started:.0f} s: {path}")
    return path


def make_pages(pages: int, seed: int):
    """The pages and their shapes, one at a time (a 3,000-pixel page is 40 MB of pixels)."""
    rng = np.random.default_rng(seed)
    for i in range(pages):
        width = int(rng.integers(1000, 3001))
        yield render_page(seed * 100_000 + i, width, int(width * rng.uniform(1.25, 1.45)))


def publish(server, pages) -> tuple[str, list]:
    """The pages as canvases of one Presentation 3 manifest, each image behind an Image API 3
    level 2 service; returns the manifest URL and the book: each page's (size, shapes)."""
    base = server.base_url
    canvases, book = [], []
    for i, (page, shapes) in enumerate(pages):
        server.add_image(f"p{i}", page)
        width, height = page.size
        book.append((page.size, shapes))
        canvases.append({
            "id": f"{base}/canvas/p{i}", "type": "Canvas", "label": {"en": [f"page {i}"]},
            "width": width, "height": height,
            "items": [{"id": f"{base}/page/p{i}", "type": "AnnotationPage", "items": [{
                "id": f"{base}/anno/p{i}", "type": "Annotation", "motivation": "painting",
                "target": f"{base}/canvas/p{i}",
                "body": {"id": f"{base}/iiif3/p{i}/full/max/0/default.jpg", "type": "Image",
                         "format": "image/jpeg", "width": width, "height": height,
                         "service": [{"id": f"{base}/iiif3/p{i}", "type": "ImageService3",
                                      "profile": "level2"}]}}]}]})
    url = server.add_json("/manifest.json", {
        "@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/manifest.json",
        "type": "Manifest", "label": {"en": ["Synthetic pages"]}, "items": canvases})
    return url, book


def _msearch(runner, env, *args) -> dict:
    from manuscripts_search.cli import cli

    result = runner.invoke(cli, [*args, "--json"], env=env, catch_exceptions=False)
    if result.exit_code != 0:
        raise SystemExit(f"msearch {' '.join(args)} failed ({result.exit_code}): {result.output[-2000:]}")
    return json.loads(result.stdout)


def measure(method: str, manifest_url: str, book, queries, model_dir: Path, workdir: Path, log) -> dict:
    from click.testing import CliRunner
    from sqlalchemy import func, select

    from manuscripts_search.config import load_config
    from manuscripts_search.embedding.encoders import load_vision_language_encoder
    from manuscripts_search.models import Canvas, Embedding, Region
    from manuscripts_search.search.engine import load_index
    from manuscripts_search.search.signals import visual_ranking
    from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope
    from tests.helpers.model_factory import caption

    data = workdir / "runs" / method
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    env = {"MSEARCH_DATA_DIR": str(data), "MSEARCH_DB": f"sqlite:///{data / 'msearch.sqlite3'}",
           "MSEARCH_ALLOW_HOSTS": "127.0.0.1", "MSEARCH_MODEL": str(model_dir)}
    runner = CliRunner()
    started = time.perf_counter()
    harvest = _msearch(runner, env, "harvest", manifest_url, "--regions", method, "--no-progress")
    harvested = time.perf_counter()
    embedded = _msearch(runner, env, "embed", "--no-progress")
    done = time.perf_counter()
    if harvest["regions"]["failures"] or embedded.get("failed"):
        raise SystemExit(f"{method}: failures in harvest or embed: {harvest['regions']} {embedded}")
    log(f"{method}: harvest {harvested - started:.1f} s ({harvest['regions']['planned']} regions), "
        f"embed {done - harvested:.1f} s")

    config = load_config(env)
    encoder = load_vision_language_encoder(str(model_dir), device="cpu")
    engine = make_engine(env["MSEARCH_DB"])
    with session_scope(make_sessionmaker(engine)) as session:
        index = load_index(config.index_dir, encoder.space_id)
        page_of = {canvas_id: int(iiif_id.rsplit("/p", 1)[1])
                   for canvas_id, iiif_id in session.execute(select(Canvas.id, Canvas.iiif_id))}
        vectors = session.scalar(select(func.count()).select_from(Embedding).where(Embedding.stale.is_(False)))
        boxes: dict[int, list] = {}
        for canvas_id, *box in session.execute(select(Region.canvas_id, Region.x, Region.y, Region.w, Region.h)):
            boxes.setdefault(page_of[canvas_id], []).append(tuple(box))
        covered = sum(any(covers(box, shape.box) for box in boxes.get(page, []))
                      for page, (_, shapes) in enumerate(book) for shape in shapes)
        localised, canvas_recalls = 0, []
        for (colour, shape), vector in zip(queries, encoder.encode_texts([caption(c, s) for c, s in queries])):
            truth = {i: [s.box for s in shapes if (s.colour, s.shape) == (colour, shape)]
                     for i, (_, shapes) in enumerate(book)}
            truth = {i: boxes for i, boxes in truth.items() if boxes}
            ranking = visual_ranking(session, index, np.asarray(vector, np.float32), depth=max(50, len(book)))
            regions = sorted(((region.score, page_of[c.canvas_id], tuple(map(int, region.xywh.split(","))))
                              for c in ranking.canvases for region in c.regions), key=lambda r: -r[0])
            localised += any(covers(box, t) for _, page, box in regions[:5] for t in truth.get(page, []))
            top_pages = {page_of[c.canvas_id] for c in ranking.canvases[:10]}
            canvas_recalls.append(len(top_pages & set(truth)) / min(10, len(truth)))
    engine.dispose()
    return {
        "localisation_recall_at_5": round(localised / len(queries), 3),
        "canvas_recall_at_10": round(float(np.mean(canvas_recalls)), 3),
        "shapes_covered": round(covered / sum(len(shapes) for _, shapes in book), 3),
        "vectors_per_canvas": round(vectors / len(book), 2),
        "harvest_s_per_canvas": round((harvested - started) / len(book), 3),
        "embed_s_per_canvas": round((done - harvested) / len(book), 3),
    }


def run(pages: int, seed: int, workdir: Path, methods=METHODS, recipe=CLIP_RECIPE, log=print) -> dict:
    from tests.helpers.iiif_server import IIIFTestServer

    load_start = os.getloadavg()
    started = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir = tiny_clip(workdir, recipe, log)
    server = IIIFTestServer()
    try:
        manifest_url, book = publish(server, make_pages(pages, seed))
        queries = sorted({(s.colour, s.shape) for _, shapes in book for s in shapes})
        results = {method: measure(method, manifest_url, book, queries, model_dir, workdir, log)
                   for method in methods}
    finally:
        server.close()
    return {"pages": pages, "seed": seed, "queries": len(queries), "shapes": sum(len(s) for _, s in book),
            "model": recipe, "wall_s": round(time.perf_counter() - started, 1),
            "load_average_start": [round(v, 2) for v in load_start],
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
            "cpus": os.cpu_count(), "methods": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--pages", type=int, default=DEFAULT_PAGES)
    size.add_argument("--quick", action="store_true", help=f"{QUICK_PAGES} pages: a few minutes on two cores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of " + ", ".join(METHODS))
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "msearch-bench-regions",
                        help="the trained model (reused) and each method's data directory")
    parser.add_argument("--clutter", type=float, default=CLIP_RECIPE["clutter"],
                        help="share of the model's training crops cut from a cluttered page (0: shapes on grey, "
                        "the tests' default model's kind)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    if not 0 <= args.clutter <= 1:
        parser.error("--clutter must be between 0 and 1")
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if not methods or set(methods) - set(METHODS):
        parser.error(f"--methods must name some of {', '.join(METHODS)}")
    pages = QUICK_PAGES if args.quick else args.pages
    if pages < 1:
        parser.error("--pages must be at least 1")
    result = run(pages, args.seed, args.workdir, methods, {**CLIP_RECIPE, "clutter": args.clutter},
                 log=lambda line: print(line, file=sys.stderr))
    print(f"{pages} pages, {result['shapes']} shapes, {result['queries']} queries, {result['wall_s']} s; "
          f"load average {result['load_average_start'][0]} -> {result['load_average_end'][0]} "
          f"on {result['cpus']} CPUs")
    print(f"{'method':8} {'loc@5':>6} {'canvas@10':>9} {'covered':>7} {'vectors/canvas':>14} "
          f"{'harvest s/canvas':>16} {'embed s/canvas':>14}")
    for method, row in result["methods"].items():
        print(f"{method:8} {row['localisation_recall_at_5']:6.3f} {row['canvas_recall_at_10']:9.3f} "
              f"{row['shapes_covered']:7.3f} {row['vectors_per_canvas']:14.2f} "
              f"{row['harvest_s_per_canvas']:16.3f} {row['embed_s_per_canvas']:14.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
