"""A catalogue of synthetic vectors for the shard tests: manifests of canvases, each canvas with a
page vector and a few region vectors, drawn around cluster centres so that queries have real
neighbours. Written straight into the database (what `msearch embed` would leave) and indexed by
the real index code."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from manuscripts_search.models import Canvas, Embedding, Manifest, Region
from manuscripts_search.store.db import session_scope
from manuscripts_search.store.vector_codec import decode_vector, encode_vector

SPACE = "tests/sharded@synthetic"
DIM = 32


@dataclass
class ShardedCatalogue:
    factory: object
    space: str = SPACE
    dim: int = DIM
    manifests: list[int] = field(default_factory=list)
    canvases: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    vectors: dict[int, np.ndarray] = field(default_factory=dict)  # label -> unit vector (as stored)
    canvas_of: dict[int, int] = field(default_factory=dict)  # label -> canvas id
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(7))
    centres: np.ndarray = None

    def queries(self, count: int) -> np.ndarray:
        picks = self.centres[self.rng.integers(0, len(self.centres), count)]
        queries = picks + 0.3 * self.rng.standard_normal(picks.shape).astype(np.float32)
        return queries / np.linalg.norm(queries, axis=1, keepdims=True)

    def exact_top(self, query: np.ndarray, k: int, labels=None) -> list[int]:
        """The exact top ``k`` labels (ties by label) among ``labels`` (default: all live)."""
        pool = np.array(sorted(labels if labels is not None else self.vectors), dtype=np.int64)
        matrix = np.stack([self.vectors[int(label)] for label in pool])
        scores = matrix @ query
        order = sorted(range(len(pool)), key=lambda i: (-round(float(scores[i]), 6), int(pool[i])))
        return [int(pool[i]) for i in order[:k]]

    def add_manifest(self, canvases: int, regions_per_canvas: int = 3) -> int:
        with session_scope(self.factory) as session:
            number = len(self.manifests)
            manifest = Manifest(url=f"https://shards.test/m{number}/manifest.json",
                                iiif_id=f"https://shards.test/m{number}/manifest.json", iiif_version=3,
                                label={"en": [f"Manuscript {number}"]})
            session.add(manifest)
            session.flush()
            self.manifests.append(manifest.id)
            # Rows are added in batches (three round trips per manifest, not eight per canvas).
            pages = [Canvas(manifest_id=manifest.id, iiif_id=f"https://shards.test/m{number}/c{position}",
                            position=position, label={"none": [f"f. {position + 1}"]}, width=1000, height=1400)
                     for position in range(canvases)]
            session.add_all(pages)
            session.flush()
            regions = {(page.id, n): Region(canvas_id=page.id, x=100 * n, y=100, w=200, h=200)
                       for page in pages for n in range(1, regions_per_canvas + 1)}
            session.add_all(regions.values())
            session.flush()
            rows = []
            for page in pages:
                self.canvases.append(page.id)
                centre = self.centres[self.rng.integers(0, len(self.centres))]
                for region_number in range(regions_per_canvas + 1):
                    vector = centre + 0.5 * self.rng.standard_normal(self.dim).astype(np.float32)
                    vector /= np.linalg.norm(vector)
                    region = regions.get((page.id, region_number))
                    rows.append(Embedding(space=self.space, model_id="synthetic", model_revision="1",
                                          canvas_id=page.id, region_id=region.id if region else None,
                                          dim=self.dim, vector=encode_vector(vector)))
            session.add_all(rows)
            session.flush()
            for row in rows:
                # What the index holds: the stored (float16) vector, normalised.
                stored = decode_vector(row.vector, self.dim)
                self.vectors[row.id] = stored / np.linalg.norm(stored)
                self.canvas_of[row.id] = row.canvas_id
                self.labels.append(row.id)
        return self.manifests[-1]

    def make_stale(self, labels: list[int]) -> None:
        from sqlalchemy import update

        with session_scope(self.factory) as session:
            session.execute(update(Embedding).where(Embedding.id.in_(labels)).values(stale=True))
        for label in labels:
            self.vectors.pop(label, None)


def build_sharded_catalogue(factory, manifests: int = 6, canvases: int = 30, regions: int = 3,
                            clusters: int = 24) -> ShardedCatalogue:
    catalogue = ShardedCatalogue(factory)
    centres = catalogue.rng.standard_normal((clusters, DIM)).astype(np.float32)
    catalogue.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
    for _ in range(manifests):
        catalogue.add_manifest(canvases, regions)
    return catalogue
