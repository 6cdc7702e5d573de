"""Benchmark of region methods (issue 13): the multi-scale grid, content-aware proposals, both.

A small version of the issue's bench: synthetic manuscript pages (tests/helpers/synthetic_pages.py:
a textured support, rows of pseudo-text with rubrics, 1-3 coloured shapes of the tiny CLIP's
vocabulary anywhere, margins included, at 3-15 % of the page width, pages 1,000-3,000 px wide).
Boxes are planned as harvest plans them (the grid from the canvas size; proposals from the
448-pixel canvas derivative), each region is cropped from the page and encoded with the tiny CLIP
of the tests (``train_tiny_clip``, trained on isolated shapes, not on clutter), and for each shape
query ("a red circle", ...) over all pages:

- ``localisation_recall_at_5``: one of the top 5 region hits covers a true box of that shape (IoU
  >= 0.5, or contains it while the shape fills >= 25 % of the region);
- ``canvas_recall_at_10``: of the pages holding that shape (at most 10), the share among the top 10
  pages, a page scored by the best of its canvas vector and its region vectors;
- ``vectors_per_canvas`` (canvas vector included) and ``embed_s_per_canvas`` (proposals + crops +
  encoding, this machine).

Not in this version (the issue's full bench): harvesting through a local IIIF server and the
product's embed worker and index; a CLIP trained on cluttered crops. Run:
``.venv/bin/python bench/regions.py [--pages 40] [--json PATH]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harvest.region_proposals import propose_regions  # noqa: E402
from harvest.regions import RegionGrid  # noqa: E402
from manuscripts_search.embedding.encoders import load_vision_language_encoder  # noqa: E402
from tests.helpers.model_factory import caption, train_tiny_clip  # noqa: E402
from tests.helpers.synthetic_pages import covers, render_page  # noqa: E402

METHODS = ("grid", "content", "both")


def _boxes(method: str, page, derivative) -> list[tuple[int, int, int, int]]:
    grid = RegionGrid().boxes(*page.size) if method in ("grid", "both") else []
    content = [p.box for p in propose_regions(derivative, canvas_size=page.size)] if method != "grid" else []
    return list(dict.fromkeys(grid + content))


def run(pages: int, seed: int = 0) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        encoder = load_vision_language_encoder(str(train_tiny_clip(Path(tmp) / "clip")), device="cpu")
    rng = np.random.default_rng(seed)
    book = []
    for i in range(pages):
        width = int(rng.integers(1000, 3001))
        page, shapes = render_page(seed * 100_000 + i, width, int(width * rng.uniform(1.25, 1.45)))
        derivative = page.copy()
        derivative.thumbnail((448, 448))
        book.append((page, derivative, shapes))
    queries = sorted({(s.colour, s.shape) for _, _, shapes in book for s in shapes})
    query_vectors = encoder.encode_texts([caption(c, s) for c, s in queries])
    canvas_vectors = encoder.encode_images([d for _, d, _ in book])
    results = {}
    for method in METHODS:
        started = time.perf_counter()
        regions = []  # (page index, box)
        crops = []
        for index, (page, derivative, _shapes) in enumerate(book):
            for box in _boxes(method, page, derivative):
                x, y, w, h = box
                crop = page.crop((x, y, x + w, y + h))
                crop.thumbnail((448, 448))
                regions.append((index, box))
                crops.append(crop)
        region_vectors = encoder.encode_images(crops) if crops else np.zeros((0, canvas_vectors.shape[1]))
        elapsed = time.perf_counter() - started
        localised, canvas_recalls = 0, []
        for (colour, shape), q in zip(queries, query_vectors):
            truth = {i: [s.box for s in shapes if (s.colour, s.shape) == (colour, shape)]
                     for i, (_, _, shapes) in enumerate(book)}
            truth = {i: boxes for i, boxes in truth.items() if boxes}
            scores = region_vectors @ q
            top = np.argsort(-scores)[:5]
            localised += any(any(covers(regions[r][1], t) for t in truth.get(regions[r][0], [])) for r in top)
            page_scores = canvas_vectors @ q
            for r, score in zip(range(len(regions)), scores):
                page_scores[regions[r][0]] = max(page_scores[regions[r][0]], score)
            top_pages = set(np.argsort(-page_scores)[:10].tolist())
            canvas_recalls.append(len(top_pages & set(truth)) / min(10, len(truth)))
        results[method] = {
            "localisation_recall_at_5": round(localised / len(queries), 3),
            "canvas_recall_at_10": round(float(np.mean(canvas_recalls)), 3),
            "vectors_per_canvas": round(1 + len(regions) / len(book), 2),
            "embed_s_per_canvas": round(elapsed / len(book), 4),
        }
    return {"pages": pages, "queries": len(queries), "shapes": sum(len(s) for _, _, s in book), "methods": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    result = run(args.pages, args.seed)
    print(f"{args.pages} pages, {result['shapes']} shapes, {result['queries']} queries")
    print(f"{'method':8} {'loc@5':>6} {'canvas@10':>9} {'vectors/canvas':>14} {'embed s/canvas':>14}")
    for method, row in result["methods"].items():
        print(f"{method:8} {row['localisation_recall_at_5']:6.3f} {row['canvas_recall_at_10']:9.3f} "
              f"{row['vectors_per_canvas']:14.2f} {row['embed_s_per_canvas']:14.4f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
